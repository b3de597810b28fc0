package dhcpproxy

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/subscribers"
)

// anyKea answers every relayed DISCOVER and REQUEST as kea does, whatever
// its subscriber-id, with 100.64.0.102.
func anyKea(lease time.Duration) func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		mt := dhcpv4.MessageTypeOffer
		if m.MessageType() == dhcpv4.MessageTypeRequest {
			mt = dhcpv4.MessageTypeAck
		} else if m.MessageType() != dhcpv4.MessageTypeDiscover {
			return nil
		}
		rep, _ := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(mt),
			dhcpv4.WithYourIP(net.IPv4(100, 64, 0, 102)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispSID.AsSlice()))),
			dhcpv4.WithLeaseTime(uint32(lease/time.Second)),
			dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, m.Options.Get(dhcpv4.OptionRelayAgentInformation)))
		return rep
	}
}

// A neighbour that binds first with a subscriber's hardware client
// identifier (01 and the subscriber's MAC, what busybox udhcpc, OpenWrt
// and Windows send) no longer keeps the subscriber off its ISP: the
// subscriber's own DISCOVER with it revokes the neighbour's binding (its
// lease released to the ISP) and is relayed. Before, it was refused
// (client_id_taken) for as long as the neighbour renewed (a field trial;
// fails without). Another identifier held by another binding is still
// refused (TestClientIDOfAnotherNotRelayed).
func TestClientIDOwnerReclaims(t *testing.T) {
	const s2 = "02:00:00:00:01:02"
	r := newPRig(t)
	ownerID := squat(t, r, s2)
	r.snd.take()
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, ownerID)))
	r.p.notes.wait()
	var release, relayed bool
	for _, s := range r.snd.take() {
		switch m := dhcpOf(s.frame); {
		case m.MessageType() == dhcpv4.MessageTypeRelease && net.HardwareAddr(m.ClientHWAddr).String() == s2:
			if relayed {
				t.Error("s1's DISCOVER went to the ISP before s2's RELEASE")
			}
			release = true
		case m.MessageType() == dhcpv4.MessageTypeDiscover && net.HardwareAddr(m.ClientHWAddr).String() == s1:
			relayed = true
		}
	}
	if !release || !relayed {
		t.Errorf("s2's RELEASE sent %v, s1's DISCOVER relayed %v (counters %v)", release, relayed, r.p.Counters())
	}
	if r.tab.isBound(0x020000000102) {
		t.Error("s2 still bound with s1's identifier")
	}
	evs, _ := r.store.Events(0, 100)
	if e := evs[len(evs)-1]; e.Kind != subscribers.EventRevoked || !strings.Contains(e.Reason, s1) {
		t.Errorf("last event %+v, want s2's revoked naming s1", e)
	}
	if c := r.p.Counters(); c["client_id_reclaimed"] != 1 || c["client_id_taken"] != 0 {
		t.Errorf("counters %v", c)
	}
}

// The owner's retransmissions wait for the holder's RELEASE too: with the
// ISP's router unresolved when the reclaim revoked the holder (the RELEASE
// not queued), a retransmission found the identifier free and went to
// the ISP first, which would then apply the late RELEASE to the owner's
// new lease (a security review; fails without). Once the RELEASE is
// sent, the owner's next DISCOVER is relayed.
func TestClientIDReclaimWaitsForRelease(t *testing.T) {
	for _, startup := range []bool{false, true} {
		const s2 = "02:00:00:00:01:02"
		r := newPRig(t)
		ownerID := squat(t, r, s2)
		r.snd.take()
		if startup {
			r.p.resolved[r.p.isps["alpha"].Index].Store(false)
		}
		setDown := func(down bool) {
			r.tab.mu.Lock()
			r.tab.uplinkDown = down
			r.tab.mu.Unlock()
		}
		setDown(true)
		disc := func() {
			r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, ownerID)))
		}
		disc() // revokes s2; its RELEASE deferred; dropped
		setDown(false)
		disc() // the client's retransmission, before the next tick
		r.p.committing.Wait()
		r.p.flushIntents(time.Now()) // the tick: the RELEASE goes
		disc()                       // the next retransmission
		r.p.committing.Wait()
		var order []string
		for _, s := range r.snd.take() {
			if s.port != upPort {
				continue
			}
			m := dhcpOf(s.frame)
			order = append(order, m.MessageType().String()+" "+net.HardwareAddr(m.ClientHWAddr).String())
		}
		if len(order) < 2 || order[0] != "RELEASE "+s2 || order[len(order)-1] != "DISCOVER "+s1 {
			t.Errorf("startup %v: to the ISP %v, want s2's RELEASE, then s1's DISCOVER", startup, order)
		}
	}
}

// squat has subscriber m bind on r with s1's hardware client identifier
// (01 and s1's MAC), as a neighbour taking it first, and returns it.
func squat(t *testing.T, r *prig, m string) []byte {
	t.Helper()
	ownerID := append([]byte{1}, mac(s1)...)
	if got := r.doraWithID(m, ownerID, anyKea(time.Hour), anyKea(time.Hour)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("%s's DORA with s1's identifier: %v", m, got)
	}
	r.p.committing.Wait()
	return ownerID
}

// TestReclaimHoldoffsPrunePaced: the hold-offs' map is walked for expired
// entries at most once per holdoffPruneEvery, not at every note (k
// reclaims within the hold-off cost k² steps), and an entry kept past its
// hold-off until the next walk holds nothing off.
func TestReclaimHoldoffsPrunePaced(t *testing.T) {
	var r reclaimHoldoffs
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		r.note(uint64(i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	if r.walks != 1 {
		t.Fatalf("1000 notes within a second walked the map %d times, want 1", r.walks)
	}
	// An hour on, before the next walk: the old entries are still in the
	// map but hold nothing off.
	late := t0.Add(reclaimHoldoff + time.Second)
	if _, ok := r.holdoff(5, late); ok {
		t.Fatal("a hold-off an hour old still holds off")
	}
	if until, ok := r.holdoff(5, t0.Add(time.Minute)); !ok || !until.Equal(t0.Add(5*time.Millisecond+reclaimHoldoff)) {
		t.Fatalf("holdoff within the hour = %v %v", until, ok)
	}
	r.note(5000, late)
	if r.walks != 2 || len(r.m) != 1 {
		t.Fatalf("a note an hour on: %d walks, %d entries, want 2 and only its own", r.walks, len(r.m))
	}
	// A clock stepped back walks again rather than waiting.
	r.note(5001, t0)
	if r.walks != 3 {
		t.Fatalf("a note with the clock stepped back: %d walks, want 3", r.walks)
	}
}
