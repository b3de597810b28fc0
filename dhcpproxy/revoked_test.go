package dhcpproxy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/subscribers"
)

// TestRevokedDeviceNAKed: a device whose ISP deleted it (its binding
// revoked, its registration gone) is unknown to ispmux, but its client
// still holds the address: its REQUEST for it is NAKed (revoked_nak), so
// it drops the address and starts over, instead of keeping it, its
// traffic dropped, until its lease ran out (a field trial: a removed
// [[subscriber]] entry's client kept its address, REQUESTs unanswered).
// Once only: the client starts over; another address, another MAC or a
// MAC never bound gets silence, as an unknown MAC does.
func TestRevokedDeviceNAKed(t *testing.T) {
	r, _ := boundAtAlpha(t)
	if ok, err := r.store.DeleteRegistration(subscribers.MAC(mac(s1))); err != nil || !ok {
		t.Fatalf("DeleteRegistration: %v, %v", ok, err)
	}
	r.p.RevalidateMACs([]uint64{s1MAC})
	r.p.committing.Wait()
	r.p.expire(time.Now()) // the RELEASE intent sent
	r.snd.take()
	if n := r.p.Counters()["binding_revoked"]; n != 1 {
		t.Fatalf("binding_revoked %d, want 1 (counters %v)", n, r.p.Counters())
	}
	s1IP := netip.MustParseAddr(s1Addr)
	naks := func(m *dhcpv4.DHCPv4, unicast bool) int {
		t.Helper()
		if unicast {
			r.fromClientUnicast(m, netip.MustParseAddr(strings.Split(m.ClientIPAddr.String(), "/")[0]))
		} else {
			r.fromClient(m)
		}
		n := 0
		for _, m := range r.serve(func(*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return nil }) {
			if m.MessageType() != dhcpv4.MessageTypeNak {
				t.Fatalf("the unknown device was sent %v", m.MessageType())
			}
			n++
		}
		return n
	}
	// Another address first: silence, and the revoked one still known.
	if n := naks(renewOf(t, s1, netip.MustParseAddr("100.64.0.250")), true); n != 0 {
		t.Errorf("a REQUEST for another address: %d NAKs, want silence", n)
	}
	if n := naks(initReboot(t, "02:00:00:00:01:09", s1IP), false); n != 0 {
		t.Errorf("an unknown MAC asking for the revoked address: %d NAKs, want silence", n)
	}
	if n := naks(renewOf(t, s1, s1IP), true); n != 1 {
		t.Errorf("the revoked device's renewal: %d NAKs, want 1 (counters %v)", n, r.p.Counters())
	}
	if n := r.p.Counters()["revoked_nak"]; n != 1 {
		t.Errorf("revoked_nak %d, want 1", n)
	}
	if n := naks(initReboot(t, s1, s1IP), false); n != 0 {
		t.Errorf("its second REQUEST: %d NAKs, want silence (it was told once)", n)
	}
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 100)
	said := false
	for _, e := range evs {
		said = said || e.Kind == subscribers.EventUnknown && strings.Contains(e.Reason, "NAKed")
	}
	if !said {
		t.Errorf("no unknown event says the REQUEST was NAKed: %v", evs)
	}
}

// TestRevokedAddrsBounded: the memory of revoked addresses holds at most
// maxRevoked, forgets an entry past its time at the tick, and an entry
// past its time NAKs nothing.
func TestRevokedAddrsBounded(t *testing.T) {
	var ra revokedAddrs
	now := time.Now()
	ip := netip.MustParseAddr("100.64.0.1")
	for i := range maxRevoked + 10 {
		ra.note(subKey{mac: uint64(i)}, ip, now.Add(time.Minute))
	}
	if n := ra.len(); n != maxRevoked {
		t.Errorf("%d remembered, want %d at most", n, maxRevoked)
	}
	for range maxRevoked/revokedPruneBudget + 1 {
		ra.prune(now.Add(2 * time.Minute))
	}
	if n := ra.len(); n != 0 {
		t.Errorf("%d remembered past their time after the ticks, want 0", n)
	}
	ra.note(subKey{mac: 1}, ip, now.Add(time.Minute))
	if ra.take(subKey{mac: 1}, ip, now.Add(2*time.Minute)) {
		t.Error("an entry past its time NAKs")
	}
}
