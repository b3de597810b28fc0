package dhcpproxy

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

const (
	s2    = "02:00:00:00:01:02"
	s2MAC = 0x020000000102
	s3    = "02:00:00:00:01:03" // registered by a test, after the rig's s1 and s2
)

// squatWith has subscriber holder bind on r with owner's hardware client
// identifier (01 and owner's MAC), and returns it.
func squatWith(t *testing.T, r *prig, holder, owner string) []byte {
	t.Helper()
	id := append([]byte{1}, mac(owner)...)
	if got := r.doraWithID(holder, id, anyKea(time.Hour), anyKea(time.Hour)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("%s's DORA with %s's identifier: %v (counters %v)", holder, owner, got, r.p.Counters())
	}
	r.p.committing.Wait()
	r.snd.take()
	return id
}

// register registers m at alpha for customer, now (after every earlier
// registration).
func (r *prig) register(m, customer string) {
	r.t.Helper()
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), CustomerID: customer, ISP: "alpha", Source: "api"}); err != nil {
		r.t.Fatal(err)
	}
}

// askWithOwnID has m send a DISCOVER with its hardware identifier id and
// returns what went to the ISP, as "TYPE mac" in order.
func (r *prig) askWithOwnID(m string, id []byte) []string {
	r.t.Helper()
	r.fromClient(discover(r.t, dhcpv4.WithHwAddr(mac(m)), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, id)))
	r.p.committing.Wait()
	r.p.notes.wait()
	var up []string
	for _, s := range r.snd.take() {
		if s.port == upPort {
			msg := dhcpOf(s.frame)
			up = append(up, msg.MessageType().String()+" "+net.HardwareAddr(msg.ClientHWAddr).String())
		}
	}
	return up
}

// lastRejected is the newest rejected event of m.
func (r *prig) lastRejected(m string) (subscribers.Event, bool) {
	evs := r.eventsOf(subscribers.EventRejected)
	for i := len(evs) - 1; i >= 0; i-- {
		if binding.MACString(binding.MAC48(evs[i].MAC)) == m {
			return evs[i], true
		}
	}
	return subscribers.Event{}, false
}

// The attack a security review found: s2 holds a lease under the
// identifier 01+s3 (a device behind a MAC-rewriting bridge, or one given
// a cloned identifier), and another subscriber has MAC s3 registered at
// the same ISP afterwards and asks as s3. The reclaim revoked s2's
// binding, and did again at each of s2's rebinds. Now the newer
// registration is refused: s2 keeps its binding, nothing reaches the ISP,
// client_id_reclaim_refused counts it and s3's rejected event names s2.
// The verdict is read from the store, so a restart keeps it, and keeps
// s2's acknowledged binding. Fails without the bound.
func TestClientIDReclaimNewerRegistrationRefused(t *testing.T) {
	r := newPRig(t)
	id := squatWith(t, r, s2, s3)
	r.register(s3, "c-s3") // the attacker's registration, after s2 bound
	if up := r.askWithOwnID(s3, id); len(up) != 0 {
		t.Errorf("s3's DISCOVER: to the ISP %v, want nothing (s2 keeps the identifier)", up)
	}
	if !r.tab.isBound(s2MAC) {
		t.Error("s2's binding revoked by a newer registration of the MAC its identifier names")
	}
	if c := r.p.Counters(); c["client_id_reclaim_refused"] != 1 || c["client_id_reclaimed"] != 0 || c["binding_revoked"] != 0 {
		t.Errorf("counters %v, want one client_id_reclaim_refused and nothing revoked", c)
	}
	if e, ok := r.lastRejected(s3); !ok || !strings.Contains(e.Reason, s2) || !strings.Contains(e.Reason, "not before the holder") {
		t.Errorf("s3's rejected event %+v, want one naming s2 and the registrations' order", e)
	}

	// A restart on the same store: s2's binding is back, and s3 is still
	// refused.
	r.tab = &fakeTables{bound: map[uint64]binding.Binding{}, store: r.store}
	r.p = New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil)
	if _, err := r.p.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.p.Lease(accPort, 0, s2MAC); !ok {
		t.Fatal("after a restart, s2's binding is gone")
	}
	if up := r.askWithOwnID(s3, id); len(up) != 0 || !r.tab.isBound(s2MAC) {
		t.Errorf("after a restart, s3's DISCOVER: to the ISP %v, s2 bound %v", up, r.tab.isBound(s2MAC))
	}
	if b, err := r.store.Binding("acc0", 0, [6]byte(mac(s2))); err != nil || !slices.Equal(b.ClientID, id) {
		t.Errorf("s2's stored binding %+v, %v", b, err)
	}
}

// A holder of the asker's own customer is not bounded: a device that sat
// behind the customer's MAC-rewriting bridge (bound as the bridge, with
// its own identifier) and is now on the access under its own MAC,
// registered since, takes its identifier back from the bridge's binding
// (nothing is taken from another subscriber); within the holdoff, not
// again. The first reclaim passes without the bound too: it guards
// against the bound refusing this.
func TestClientIDReclaimSameCustomer(t *testing.T) {
	r := newPRig(t)
	id := squatWith(t, r, s2, s3)
	r.register(s3, "c-s2") // s2's customer
	up := r.askWithOwnID(s3, id)
	if len(up) != 2 || up[0] != "RELEASE "+s2 || up[1] != "DISCOVER "+s3 {
		t.Errorf("to the ISP %v, want s2's RELEASE then s3's DISCOVER (counters %v)", up, r.p.Counters())
	}
	if c := r.p.Counters(); c["client_id_reclaimed"] != 1 || c["client_id_reclaim_refused"] != 0 {
		t.Errorf("counters %v", c)
	}
	squatWith(t, r, s2, s3)
	if up := r.askWithOwnID(s3, id); len(up) != 0 || !r.tab.isBound(s2MAC) {
		t.Errorf("second reclaim within the holdoff: to the ISP %v, s2 bound %v", up, r.tab.isBound(s2MAC))
	}
	if c := r.p.Counters(); c["client_id_reclaim_limited"] != 1 {
		t.Errorf("counters %v, want one client_id_reclaim_limited", c)
	}
}

// The race a review found: an older registration reclaims its identifier
// from another customer's binding (TestClientIDOwnerReclaims), and the
// revoked holder binds with it again before the owner's exchange ends
// (its DORA between the owner's DISCOVER and REQUEST). The owner's
// REQUEST reclaims it again and the owner binds: the hold-off, which
// refused that reclaim for an hour (client_id_reclaim_limited), does not
// apply to an asker registered before the holder, so it no longer
// protects a squatter. Past the holdoff nothing changes. Fails without
// the fix (the REQUEST is refused, s2 keeps the identifier).
func TestClientIDReclaimRaceOwnerWins(t *testing.T) {
	r := newPRig(t)
	id := squatWith(t, r, s2, s1) // s1 registered before s2
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, id)))
	got := r.serve(anyKea(time.Hour)) // s2's RELEASE, s1's DISCOVER
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("s1's DISCOVER: %v, want an OFFER (counters %v)", got, r.p.Counters())
	}
	squatWith(t, r, s2, s1) // s2 takes the identifier again meanwhile
	req, _ := dhcpv4.NewRequestFromOffer(got[0], dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, id))
	r.fromClient(req)
	r.p.committing.Wait()
	r.p.notes.wait()
	if got := r.serve(anyKea(time.Hour)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("s1's REQUEST: %v, want an ACK (counters %v)", got, r.p.Counters())
	}
	r.p.committing.Wait()
	if !r.tab.isBound(s1MAC) || r.tab.isBound(s2MAC) {
		t.Errorf("s1 bound %v, s2 bound %v; want the owner bound, the squatter not", r.tab.isBound(s1MAC), r.tab.isBound(s2MAC))
	}
	if c := r.p.Counters(); c["client_id_reclaimed"] != 2 || c["client_id_reclaim_limited"] != 0 {
		t.Errorf("counters %v, want two reclaims and no client_id_reclaim_limited", c)
	}
}

// Of one customer too, an owner registered before the holder is not
// held off: s2, given to s1's customer, squats s1's identifier again at
// once after s1's reclaim, and s1's next message reclaims it again. Fails
// without the fix (client_id_reclaim_limited).
func TestClientIDReclaimSameCustomerOlderOwner(t *testing.T) {
	r := newPRig(t)
	r.register(s2, "c-s1") // s1's customer, after s1
	id := squatWith(t, r, s2, s1)
	for i := range 2 {
		if up := r.askWithOwnID(s1, id); len(up) != 2 || up[0] != "RELEASE "+s2 || up[1] != "DISCOVER "+s1 {
			t.Errorf("reclaim %d: to the ISP %v, want s2's RELEASE then s1's DISCOVER (counters %v)", i, up, r.p.Counters())
		}
		squatWith(t, r, s2, s1)
	}
	if c := r.p.Counters(); c["client_id_reclaimed"] != 2 || c["client_id_reclaim_limited"] != 0 {
		t.Errorf("counters %v, want two reclaims", c)
	}
}

// The hold-off still bounds what the age rule does not decide: a holder
// of the asker's own customer registered before the asker
// (TestClientIDReclaimSameCustomer) is revoked at most once per
// reclaimHoldoff; past it, again. Refused, client_id_reclaim_limited
// counts it and the asker's rejected event names the holder and when.
func TestClientIDReclaimHoldoff(t *testing.T) {
	r := newPRig(t)
	id := squatWith(t, r, s2, s3)
	r.register(s3, "c-s2") // s2's customer, after s2
	if up := r.askWithOwnID(s3, id); len(up) != 2 || up[0] != "RELEASE "+s2 {
		t.Fatalf("first reclaim: to the ISP %v, want s2's RELEASE then s3's DISCOVER", up)
	}
	squatWith(t, r, s2, s3) // s3 never bound: s2 takes the identifier again
	if up := r.askWithOwnID(s3, id); len(up) != 0 {
		t.Errorf("second reclaim at once: to the ISP %v, want nothing", up)
	}
	if !r.tab.isBound(s2MAC) {
		t.Error("s2 revoked twice within the holdoff")
	}
	if c := r.p.Counters(); c["client_id_reclaim_limited"] != 1 || c["client_id_reclaimed"] != 1 {
		t.Errorf("counters %v, want one reclaim and one client_id_reclaim_limited", c)
	}
	if e, ok := r.lastRejected(s3); !ok || !strings.Contains(e.Reason, s2) || !strings.Contains(e.Reason, "revoked by a reclaim") {
		t.Errorf("s3's rejected event %+v, want one naming s2 and the holdoff", e)
	}
	later := time.Now().Add(reclaimHoldoff + time.Minute)
	r.p.now = func() time.Time { return later }
	if up := r.askWithOwnID(s3, id); len(up) != 2 || up[0] != "RELEASE "+s2 || up[1] != "DISCOVER "+s3 {
		t.Errorf("past the holdoff: to the ISP %v, want s2's RELEASE then s3's DISCOVER (counters %v)", up, r.p.Counters())
	}
}

func TestRegisteredBefore(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, c := range []struct {
		a, b time.Time
		want bool
	}{
		{t0, t0.Add(time.Nanosecond), true},
		{t0.Add(time.Nanosecond), t0, false},
		{t0, t0, false},                   // not ordered: refused
		{time.Time{}, t0, true},           // stored before schema 3: before any other
		{t0, time.Time{}, false},          // the holder's before schema 3
		{time.Time{}, time.Time{}, false}, // both: not ordered
	} {
		if got := registeredBefore(c.a, c.b); got != c.want {
			t.Errorf("registeredBefore(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// regErrStore is a store whose registrations cannot be read.
type regErrStore struct{ Store }

func (regErrStore) Registration(subscribers.MAC) (subscribers.Registration, error) {
	return subscribers.Registration{}, errors.New("disk damaged")
}

// A registration the store cannot read refuses the reclaim (its order is
// unknown): the holder keeps its binding, client_id_reclaim_refused
// counts it and the event says why. Fails without the bound.
func TestClientIDReclaimRegistrationUnreadable(t *testing.T) {
	r := newPRig(t)
	id := squatWith(t, r, s2, s1)
	r.p.store = regErrStore{r.p.store}
	if up := r.askWithOwnID(s1, id); len(up) != 0 || !r.tab.isBound(s2MAC) {
		t.Errorf("to the ISP %v, s2 bound %v; want nothing sent, s2 kept", up, r.tab.isBound(s2MAC))
	}
	if c := r.p.Counters(); c["client_id_reclaim_refused"] != 1 {
		t.Errorf("counters %v", c)
	}
	if e, ok := r.lastRejected(s1); !ok || !strings.Contains(e.Reason, "unreadable") || !strings.Contains(e.Reason, s2) {
		t.Errorf("s1's rejected event %+v", e)
	}
}

// A holder whose binding no longer matches its registration (withdrawn
// here) is reclaimed from by any owner, newer or not: its binding is
// ending anyway. Passes without the bound too.
func TestClientIDReclaimStaleHolder(t *testing.T) {
	r := newPRig(t)
	id := squatWith(t, r, s2, s3)
	r.register(s3, "c-s3") // newer than s2
	if _, err := r.store.DeleteRegistration([6]byte(mac(s2))); err != nil {
		t.Fatal(err)
	}
	if up := r.askWithOwnID(s3, id); len(up) != 2 || up[0] != "RELEASE "+s2 || up[1] != "DISCOVER "+s3 {
		t.Errorf("to the ISP %v, want s2's RELEASE then s3's DISCOVER (counters %v)", up, r.p.Counters())
	}
}

// A device moved to another customer after the holder was registered
// (its ISP gave it to another customer, or a claim from the device took
// it) counts as registered at its move: it no longer reclaims its
// identifier from another customer's holder that was there first. Its
// first registration is older than the holder's; the record kept its
// Created through the move, and the reclaim was made. Fails without the
// reset of Created by a move (subscribers).
func TestClientIDReclaimMovedDeviceRefused(t *testing.T) {
	r := newPRig(t)
	id := squatWith(t, r, s2, s1) // s1 registered before s2
	r.register(s1, "c-new")       // s1 given to another customer since
	if up := r.askWithOwnID(s1, id); len(up) != 0 || !r.tab.isBound(s2MAC) {
		t.Errorf("s1's DISCOVER: to the ISP %v, s2 bound %v; want nothing sent, s2 kept", up, r.tab.isBound(s2MAC))
	}
	if c := r.p.Counters(); c["client_id_reclaim_refused"] != 1 || c["client_id_reclaimed"] != 0 {
		t.Errorf("counters %v, want one client_id_reclaim_refused", c)
	}
}
