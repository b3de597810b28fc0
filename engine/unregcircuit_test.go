package engine

import (
	"testing"

	"github.com/ispmux/ispmux/classifier"
)

// circuitVLANs are the access VLANs of circuitRig's port: nine circuits.
var circuitVLANs = []uint16{0, 10, 11, 12, 13, 14, 15, 16, 17}

// circuitRig is a rig of one access port (port 0, VLANs circuitVLANs),
// with only sub1 registered (SetAdmitted): every other MAC's DHCP is
// unregistered. The circuit buckets of VLANs 10 and 11 are kept apart
// (the seed redrawn until neither of 11's two is one of 10's), so that
// the tests do not depend on the seed drawn. The source MACs and VLANs of
// the frames punted are appended to the slice returned.
func circuitRig(t *testing.T) (*rig, *[]punted) {
	t.Helper()
	addrs := map[uint16]uint32{}
	for _, v := range circuitVLANs {
		addrs[v] = ip("100.64.0.1")
	}
	r := rigOf(t, []PortConfig{{Name: "acc", MAC: accMAC, AccessVLANs: circuitVLANs, AccessAddrs: addrs}}, 64)
	r.addWorker(1)
	if err := r.c.SetAdmitted([]uint64{sub1}); err != nil {
		t.Fatal(err)
	}
	for {
		a, b := r.proc.circuitSlots(0, 10)
		c, d := r.proc.circuitSlots(0, 11)
		if c != a && c != b && d != a && d != b {
			break
		}
		r.proc.circuitSeed++
	}
	got := new([]punted)
	r.c.OnPunt = func(p *Punted) {
		var pkt classifier.Packet
		pkt.Decode(p.Frame())
		*got = append(*got, punted{pkt.Src, pkt.VLAN & 0xfff})
	}
	return r, got
}

// punted is a punted frame's source MAC and VLAN.
type punted struct {
	mac  uint64
	vlan uint16
}

// madeUp is the DISCOVER of the i-th made-up MAC on vlan.
func madeUp(t testing.TB, vlan uint16, i int) []byte {
	return udpFrame(t, 0x026600000000|uint64(vlan)<<20|uint64(i), broadcastMAC, vlan, "0.0.0.0", "255.255.255.255", 64, 68, 67)
}

// TestUnregisteredFloodOneCircuit: an attacker on one circuit (VLAN 10)
// sending DISCOVERs from 2,000 made-up MACs spends that circuit's share
// of the port's sample and no more (the rest unregistered_dhcp_circuit):
// a new device on another circuit of the port (VLAN 11) still reaches the
// proxy, to be onboarded, while a new device on the flood's own circuit
// does not (the flood costs its circuit). Before, the flood took the
// port's whole sample (unregBurst) and the other circuit's new device was
// dropped (unregistered_dhcp) for as long as it lasted.
func TestUnregisteredFloodOneCircuit(t *testing.T) {
	r, got := circuitRig(t)
	const n = 2000
	for i := 0; i < n; i += 50 {
		fs := make([][]byte, 50)
		for k := range fs {
			fs[k] = madeUp(t, 10, i+k)
		}
		r.send(0, fs...)
	}
	flood := len(*got)
	if flood < unregCircuitBurst || flood > unregCircuitBurst+2 {
		t.Errorf("%d of the flood's %d made-up MACs punted, want about %d (its circuit's share)", flood, n, unregCircuitBurst)
	}
	if d := r.dropCount(0, classifier.ReasonUnregisteredDHCPCircuit); d != uint64(n-flood) {
		t.Errorf("unregistered_dhcp_circuit %d, want %d (the flood past its circuit's share)", d, n-flood)
	}
	if d := r.dropCount(0, classifier.ReasonUnregisteredDHCP); d != 0 {
		t.Errorf("unregistered_dhcp %d: the flood reached the port's sample past its circuit's share", d)
	}
	newcomer := uint64(0x02cc00000011)
	r.send(0, udpFrame(t, newcomer, broadcastMAC, 11, "0.0.0.0", "255.255.255.255", 64, 68, 67))
	if len(*got) != flood+1 || (*got)[flood] != (punted{newcomer, 11}) {
		t.Errorf("the new device on VLAN 11 not punted during VLAN 10's flood: punted %v after the flood (drops: unregistered_dhcp %d, unregistered_dhcp_circuit %d)",
			(*got)[flood:], r.dropCount(0, classifier.ReasonUnregisteredDHCP), r.dropCount(0, classifier.ReasonUnregisteredDHCPCircuit))
	}
	// Its REQUEST too (a DORA's second message, still unregistered).
	r.send(0, udpFrame(t, newcomer, broadcastMAC, 11, "0.0.0.0", "255.255.255.255", 64, 68, 67))
	if len(*got) != flood+2 {
		t.Errorf("the new device's second message not punted: %v", (*got)[flood:])
	}
	// A new device on the flood's own circuit waits for the flood.
	r.send(0, udpFrame(t, 0x02cc00000010, broadcastMAC, 10, "0.0.0.0", "255.255.255.255", 64, 68, 67))
	for _, p := range *got {
		if p.mac == 0x02cc00000010 {
			t.Errorf("a new device on the flooding circuit punted (its circuit's share is spent)")
		}
	}
}

// TestUnregisteredPortSampleStillCaps: the circuits' shares do not add up
// past the port's sample: made-up MACs on all nine circuits, each within
// its circuit's share (8 each, 72 in all), reach the proxy only up to the
// port's sample (unregBurst), the rest unregistered_dhcp.
func TestUnregisteredPortSampleStillCaps(t *testing.T) {
	r, got := circuitRig(t)
	var fs [][]byte
	for _, v := range circuitVLANs {
		for i := range 8 {
			fs = append(fs, madeUp(t, v, i))
		}
	}
	r.send(0, fs[:36]...)
	r.send(0, fs[36:]...)
	n := len(*got)
	if n < unregBurst || n > unregBurst+2 {
		t.Errorf("%d of %d punted, want about %d (the port's sample)", n, len(fs), unregBurst)
	}
	if d := r.dropCount(0, classifier.ReasonUnregisteredDHCP); d != uint64(len(fs)-n) {
		t.Errorf("unregistered_dhcp %d, want %d", d, len(fs)-n)
	}
	if d := r.dropCount(0, classifier.ReasonUnregisteredDHCPCircuit); d != 0 {
		t.Errorf("unregistered_dhcp_circuit %d, want 0 (every circuit within its share)", d)
	}
	// A registered subscriber's DHCP is not sampled.
	r.send(0, udpFrame(t, sub1, broadcastMAC, 12, "0.0.0.0", "255.255.255.255", 64, 68, 67))
	if len(*got) != n+1 || (*got)[n].mac != sub1 {
		t.Errorf("the registered subscriber's DISCOVER not punted: %v", (*got)[n:])
	}
}

// TestUnregisteredCircuitAllocs: unregistered DHCP punted, dropped at its
// circuit's share and at the port's sample allocates nothing in the
// worker.
func TestUnregisteredCircuitAllocs(t *testing.T) {
	r, _ := circuitRig(t)
	r.c.OnPunt = nil
	var fs [][]byte
	for _, v := range circuitVLANs {
		for i := range 6 {
			fs = append(fs, madeUp(t, v, i))
		}
	}
	for _, q := range r.q {
		q.Sink = nil
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, f := range fs {
			r.q[0].Inject(f)
		}
		r.w.RunOnce()
		for p := r.s.Punts.Next(); p != nil; p = r.s.Punts.Next() {
			r.s.Punts.Release(p)
		}
	})
	if allocs != 0 {
		t.Errorf("worker iteration sampling unregistered DHCP allocates %.1f times", allocs)
	}
	if r.s.Counters()[0].Punts == 0 || r.dropCount(0, classifier.ReasonUnregisteredDHCP) == 0 ||
		r.dropCount(0, classifier.ReasonUnregisteredDHCPCircuit) == 0 {
		t.Errorf("punted %d, unregistered_dhcp %d, unregistered_dhcp_circuit %d: want every path taken", r.s.Counters()[0].Punts,
			r.dropCount(0, classifier.ReasonUnregisteredDHCP), r.dropCount(0, classifier.ReasonUnregisteredDHCPCircuit))
	}
}

// TestUnregisteredOneCircuitPortHasTheSample: on a port with one access
// circuit (an N:1 access: every subscriber on one VLAN, untagged here),
// there is no other circuit for a share to keep the port's sample for:
// its unregistered DHCP has the port's whole sample (unregBurst at once),
// as before the shares, not the circuit's share of it (16, then 10/s:
// half the rate at which its new devices were onboarded). Fails with the
// share taken on a port of one circuit.
func TestUnregisteredOneCircuitPortHasTheSample(t *testing.T) {
	r := rigOf(t, []PortConfig{{Name: "acc", MAC: accMAC, AccessVLANs: []uint16{0},
		AccessAddrs: map[uint16]uint32{0: ip("100.64.0.1")}}}, 64)
	r.addWorker(1)
	if err := r.c.SetAdmitted([]uint64{sub1}); err != nil {
		t.Fatal(err)
	}
	n := 0
	r.c.OnPunt = func(*Punted) { n++ }
	fs := make([][]byte, 40)
	for i := range fs {
		fs[i] = madeUp(t, 0, i)
	}
	r.send(0, fs...)
	if n < unregBurst || n > unregBurst+2 {
		t.Errorf("%d of %d new devices' DISCOVERs punted on a port of one circuit, want about %d (the port's sample)", n, len(fs), unregBurst)
	}
	if d := r.dropCount(0, classifier.ReasonUnregisteredDHCPCircuit); d != 0 {
		t.Errorf("unregistered_dhcp_circuit %d on a port of one circuit, want 0", d)
	}
	if d := r.dropCount(0, classifier.ReasonUnregisteredDHCP); d != uint64(len(fs)-n) {
		t.Errorf("unregistered_dhcp %d, want %d", d, len(fs)-n)
	}
}
