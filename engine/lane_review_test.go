package engine

// Tests of the lane's stop-49 changes (lane.go's header), from their
// review: an uplink's readiness taken from its header's length
// (fib.Uplink.L2Len) through every way an uplink stops being ready, and
// laneKeys's 8-byte MAC loads against classifier.MAC for random MACs.

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/fib"
)

// TestLaneUplinkReadiness walks alpha's uplink (ISP 0, port 1) through the
// ways it stops being ready and becomes ready again: resolved, its link
// down (the next hop withdrawn), resolved again, a new next hop, the old
// one back (unresolved: Configure keeps no resolution across a gateway
// change), resolved, its gateway's MAC changed, the ISP removed
// (fib.Uplinks.Configure of Uplink{}: Control has no call for it, and a
// reload only warns of an ISP gone from the file) and a late ARP reply. Beta (ISP 1) stays resolved throughout. At each
// step the lane agrees with the general way, decides a subscriber's frame
// to the ISP exactly when its uplink is configured and resolved, and
// addresses it to the gateway's current MAC.
func TestLaneUplinkReadiness(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	seeds := laneSeeds(t)[:3] // to alpha, to beta, tagged to beta
	isp := []uint8{0, 1, 1}
	alpha := fib.Uplink{Port: 1, MAC: upaMAC, Addr: ip("192.0.2.2"), PrefixLen: 24, Gateway: ip("192.0.2.1")}
	check := func(what string) {
		t.Helper()
		set := r.s.Up.Load()
		for i, s := range seeds {
			up := set.Get(isp[i])
			ready := up.Configured && up.Resolved
			lane := checkLaneAgrees(t, r, s.port, [][]byte{s.frame})
			if fwd := lane.out[0].Action == datapath.Forward; fwd != ready {
				t.Errorf("%s: seed %d forwarded %v, its uplink ready %v: %+v", what, i, fwd, ready, lane.out[0])
			}
			if got := laneDecides(r, s.port, s.frame); got != ready {
				t.Errorf("%s: seed %d: the lane decided %v, its uplink ready %v", what, i, got, ready)
			}
			if ready && fib.MAC(lane.out[0].Hdr[:6]) != up.GatewayMAC {
				t.Errorf("%s: seed %d sent to % x, the gateway is %012x", what, i, lane.out[0].Hdr[:6], up.GatewayMAC)
			}
		}
	}
	want := func(what string, ready bool) {
		t.Helper()
		if up := r.s.Up.Load().Get(0); (up.Configured && up.Resolved) != ready {
			t.Fatalf("%s: alpha configured %v resolved %v, want ready %v", what, up.Configured, up.Resolved, ready)
		}
		check(what)
	}
	want("resolved", true)
	if got := r.c.LinkDown(1); len(got) != 1 || got[0] != 0 {
		t.Fatalf("LinkDown(1) withdrew %v, want [0]", got)
	}
	want("link down", false)
	r.learn(1, 0, gwaMAC)
	want("resolved again", true)
	moved := alpha
	moved.Gateway = ip("192.0.2.3")
	r.c.ConfigureISP(0, moved)
	want("new next hop", false)
	r.c.ConfigureISP(0, alpha)
	want("old next hop back", false)
	r.learn(1, 0, gwaMAC)
	want("resolved once more", true)
	r.learn(1, 0, gwaMAC+1)
	want("gateway's MAC changed", true)
	r.s.Up.Configure(0, fib.Uplink{})
	want("removed", false)
	r.learn(1, 0, gwaMAC)
	want("removed, a late ARP reply", false)
}

// TestLaneKeysMACs checks laneKeys's MACs, each read in one 8-byte load,
// against classifier.MAC's over random MACs (each byte 0x00, 0xff, 0x01
// or random; the destination the port's MAC or it with one byte changed),
// on the access port (untagged and on VLAN 100) and on beta's uplink port
// (VLAN 201, and untagged, which that port does not carry), whose MAC's
// last byte is not 0: the lane takes exactly the frames to the port's MAC
// from a unicast MAC not 0 on a VLAN the port carries, keyed by
// classifier.Key of the source or fib.Key of the destination address. The
// frames are laneMinFrame bytes long, each slice's capacity its length.
func TestLaneKeysMACs(t *testing.T) {
	r := newRig(t, 64)
	p := r.s.NewProcessor()
	rng := rand.New(rand.NewPCG(49, 6170))
	randMAC := func() [6]byte {
		var m [6]byte
		for i := range m {
			m[i] = []byte{0, 0xff, 0x01, byte(rng.Uint32())}[rng.IntN(4)]
		}
		return m
	}
	for _, c := range []struct {
		port uint8
		vlan uint16 // the tag's VID, besides untagged frames
		role uint8  // the role of a frame the lane takes
	}{{0, 100, roleLaneUp}, {2, 201, roleLaneDown}} {
		pt := &r.s.ports[c.port]
		var portMAC [6]byte
		fib.PutMAC(portMAC[:], pt.mac)
		took := 0
		for range 10_000 {
			var frames [][]byte
			for range 8 {
				dst := portMAC
				if rng.IntN(2) == 0 {
					dst[rng.IntN(6)] ^= byte(1 + rng.IntN(255))
				}
				src := randMAC()
				if rng.IntN(8) == 0 {
					src = [6]byte{}
				}
				f := make([]byte, 0, laneMinFrame)
				f = append(f, dst[:]...)
				f = append(f, src[:]...)
				if rng.IntN(2) == 0 {
					f = append(f, 0x81, 0x00, byte(c.vlan>>8), byte(c.vlan))
				}
				f = append(f, 0x08, 0x00, 0x45)
				for len(f) < laneMinFrame {
					f = append(f, byte(rng.Uint32()))
				}
				frames = append(frames, f[:laneMinFrame:laneMinFrame])
			}
			p.laneKeys(pt, c.port, frames)
			for i, f := range frames {
				d, s := classifier.MAC(f[0:6]), classifier.MAC(f[6:12])
				l3, vlan := 14, uint16(0)
				if f[12] == 0x81 {
					l3, vlan = 18, c.vlan
				}
				want := d == pt.mac && s != 0 && !classifier.IsMulticastMAC(s) && pt.role[vlan] != roleNone
				if got := p.role[i] == c.role; got != want || !want && p.role[i] != roleNone {
					t.Fatalf("port %d, % x: laneKeys gave role %d, want the lane's %v", c.port, f, p.role[i], want)
				}
				if !want {
					continue
				}
				took++
				key, k := p.macKeys[i], classifier.Key(c.port, vlan, s)
				if c.role == roleLaneDown {
					key, k = p.fibKeys[i], fib.Key(pt.isp[vlan], binary.BigEndian.Uint32(f[l3+16:]))
				}
				if key != k {
					t.Fatalf("port %d, % x: key %#x, want %#x", c.port, f, key, k)
				}
			}
		}
		if took < 5_000 {
			t.Fatalf("port %d: laneKeys took %d frames: the test does not reach it", c.port, took)
		}
	}
}
