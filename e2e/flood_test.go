package e2e

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/lab"
)

// TestDHCPFlood: while an unregistered subscriber floods DISCOVERs from
// made-up MACs, a registered subscriber on the same access port still
// gets its lease, the flood is counted (unregistered_dhcp past the port's
// sample, unregistered_dhcp_circuit past a circuit's share of it on a port
// of several circuits (acc0 has one), and dhcp_flood for a made-up MAC
// repeated past its own budget), and the event log is not flooded.
func TestDHCPFlood(t *testing.T) {
	r := newRig(t, lab.Options{Subscribers: 5, DHCP: true, LeaseTime: time.Minute})
	r.start()
	s1, s5 := r.sub("s1"), r.sub("s5")
	frames := madeUpDiscovers(t, 2000, 0)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	sent := 0
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			sendRaw(t, s5.NS, s5.If, frames)
			sent += len(frames)
		}
	}()
	time.Sleep(500 * time.Millisecond) // the flood is on
	startClient(t, r.topo.Dhclient(context.Background(), s1))
	_, ok := r.waitAddr(s1, 12*time.Second) // ~2 s here; ~20 s when the flood fills the punt queue
	cancel()
	wg.Wait()
	if !ok {
		t.Fatalf("s1 got no lease during a flood of %d DISCOVERs; status %+v", sent, r.mustStatus().DHCP)
	}
	// Dropped in the datapath: beyond the circuit's share of the port's
	// sample of unregistered MACs (unregistered_dhcp_circuit) or the
	// port's sample itself (unregistered_dhcp), or, for a made-up MAC
	// repeated (the 2000 frames are sent over and over), beyond that MAC's
	// own budget first (dhcp_flood).
	drops := r.drops("acc0", "unregistered_dhcp_circuit") + r.drops("acc0", "unregistered_dhcp") + r.drops("acc0", "dhcp_flood")
	if drops < uint64(sent)/2 {
		t.Errorf("%d of %d flood frames dropped in the datapath (unregistered_dhcp_circuit, unregistered_dhcp, dhcp_flood)", drops, sent)
	}
	if n := len(r.events()); n > 200 {
		t.Errorf("%d events after the flood: the log was flooded", n)
	}
	t.Logf("flood: %d frames sent, %d dropped in the datapath; s1 bound", sent, drops)
}

// madeUpDiscovers is n broadcast DISCOVERs from made-up MACs
// (02:66:00:00:xx:xx), tagged with vlan (0: untagged).
func madeUpDiscovers(t *testing.T, n int, vlan uint16) [][]byte {
	var frames [][]byte
	for i := range n {
		hw := net.HardwareAddr{0x02, 0x66, 0, 0, byte(i >> 8), byte(i)}
		d, err := dhcpv4.NewDiscovery(hw)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, taggedDHCPFrame(t, hw, vlan, d.ToBytes()))
	}
	return frames
}
