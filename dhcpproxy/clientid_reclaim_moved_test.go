package dhcpproxy

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// The gap the age rule left: s2 binds with s3's identifier; s3 is
// registered (another customer) after that; then s2 is moved, still
// bound, to another customer of its ISP (its ISP's move: the binding is
// kept, its registration's Created starts again), renews, and ispmux
// restarts. s3's registration is older than s2's registration now, not
// than s2's hold on the identifier: refused, s2 keeps its binding. The
// binding's start (Since) is carried over by the renewal and read back
// after the restart. Fails without Binding.Since (s3 reclaims: s2's
// RELEASE and s3's DISCOVER go to the ISP).
func TestClientIDReclaimMovedHolderRefused(t *testing.T) {
	r := newPRig(t)
	id := squatWith(t, r, s2, s3)
	first, err := r.store.Binding("acc0", 0, [6]byte(mac(s2)))
	if err != nil || first.Since.IsZero() {
		t.Fatalf("s2's binding %+v, %v: want its start stored", first, err)
	}
	time.Sleep(time.Millisecond) // the times below are each later
	r.register(s3, "c-s3")
	time.Sleep(time.Millisecond)
	r.register(s2, "c-moved") // moved while bound: Created starts again
	if reg, _ := r.store.Registration([6]byte(mac(s2))); !first.Since.Before(reg.Created) {
		t.Fatalf("s2's Created %v, want after its binding's start %v", reg.Created, first.Since)
	}
	if !r.tab.isBound(s2MAC) {
		t.Fatal("s2's binding ended by the move to another customer of its ISP")
	}
	squatWith(t, r, s2, s3) // a renewal relayed to the ISP: the binding rewritten
	renewed, err := r.store.Binding("acc0", 0, [6]byte(mac(s2)))
	if err != nil || !renewed.Updated.After(first.Updated) || !renewed.Since.Equal(first.Since) || renewed.Customer != "c-moved" {
		t.Fatalf("s2's renewed binding %+v, %v: want it rewritten for c-moved with its start %v", renewed, err, first.Since)
	}
	if evs := r.eventsOf("renewed"); len(evs) != 1 {
		t.Fatalf("renewed events %v, want s2's one", evs)
	}

	r.tab = &fakeTables{bound: map[uint64]binding.Binding{}, store: r.store}
	r.p = New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil)
	if _, err := r.p.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	if up := r.askWithOwnID(s3, id); len(up) != 0 {
		t.Errorf("s3's DISCOVER: to the ISP %v, want nothing (s2 bound with the identifier before s3 was registered)", up)
	}
	if !r.tab.isBound(s2MAC) {
		t.Error("s2's binding revoked by a registration made after it bound, before its move")
	}
	if c := r.p.Counters(); c["client_id_reclaim_refused"] != 1 || c["client_id_reclaimed"] != 0 {
		t.Errorf("counters %v, want one client_id_reclaim_refused", c)
	}
	if e, ok := r.lastRejected(s3); !ok || !strings.Contains(e.Reason, s2) || !strings.Contains(e.Reason, "bound with the identifier since") {
		t.Errorf("s3's rejected event %+v, want one naming s2 and its binding's start", e)
	}
	if b, err := r.store.Binding("acc0", 0, [6]byte(mac(s2))); err != nil || !slices.Equal(b.ClientID, id) {
		t.Errorf("s2's stored binding %+v, %v", b, err)
	}
}

// The holder's binding start stands for it only where it is earlier than
// its registration: s3 registered after s2 was, before s2 bound with s3's
// identifier, is refused as it was before Since was stored (holderSince
// takes the earlier: Since alone would let such a registration reclaim
// after any restart of the holder's binding, a lapse or a circuit move).
// Passes without Since too; fails if Since stands alone.
func TestClientIDReclaimRegisteredBeforeBindingRefused(t *testing.T) {
	r := newPRig(t)
	r.register(s3, "c-s3") // after s2's registration
	time.Sleep(time.Millisecond)
	id := squatWith(t, r, s2, s3)
	if up := r.askWithOwnID(s3, id); len(up) != 0 || !r.tab.isBound(s2MAC) {
		t.Errorf("s3's DISCOVER: to the ISP %v, s2 bound %v; want nothing sent, s2 kept", up, r.tab.isBound(s2MAC))
	}
	if e, ok := r.lastRejected(s3); !ok || strings.Contains(e.Reason, "bound with the identifier since") {
		t.Errorf("s3's rejected event %+v, want one counting s2 from its registration", e)
	}
}

func TestHolderSince(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	t1 := t0.Add(time.Hour)
	for _, c := range []struct {
		created, since, want time.Time
		bound                bool
	}{
		{t1, t0, t0, true},                    // moved to its customer while bound
		{t0, t1, t0, false},                   // bound after its registration
		{t0, t0, t0, false},                   // the same instant
		{t1, time.Time{}, t1, false},          // a binding stored before Since: its registration, as before
		{time.Time{}, t0, time.Time{}, false}, // a registration stored before schema 3: before any other
	} {
		if got, bound := holderSince(c.created, c.since); !got.Equal(c.want) || bound != c.bound {
			t.Errorf("holderSince(%v, %v) = %v, %v; want %v, %v", c.created, c.since, got, bound, c.want, c.bound)
		}
	}
}

// bindingSince: a new binding starts now; one going on at its ISP with
// the same identifier (a renewal, another address) keeps its start, a
// zero one (stored before Since) included; another identifier starts
// now; a previous binding the store could not give leaves it not known.
func TestBindingSinceCarriedOver(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	start := now.Add(-48 * time.Hour)
	id := []byte{1, 2, 0, 0, 0, 1, 3}
	prev := subscribers.Binding{ClientID: id, Since: start}
	for _, c := range []struct {
		what   string
		goesOn bool
		prev   subscribers.Binding
		stored bool
		id     []byte
		want   time.Time
	}{
		{"new binding", false, prev, true, id, now},
		{"renewal", true, prev, true, id, start},
		{"renewal of a format 5 binding", true, subscribers.Binding{ClientID: id}, true, id, time.Time{}},
		{"another identifier", true, prev, true, []byte{1, 2, 0, 0, 0, 1, 4}, now},
		{"identifier dropped", true, prev, true, nil, now},
		{"previous binding unreadable", true, subscribers.Binding{}, false, id, time.Time{}},
	} {
		if got := bindingSince(c.goesOn, c.prev, c.stored, c.id, now); !got.Equal(c.want) {
			t.Errorf("%s: %v, want %v", c.what, got, c.want)
		}
	}
}
