package subscribers

import (
	"errors"
	"slices"
	"testing"
	"unsafe"
)

// TestSyncRegistrationsDiff: the diff names every put (with the record it
// replaced) and deletion, and with keepOthers an API-registered MAC is
// held, not taken over.
func TestSyncRegistrationsDiff(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	m := func(b byte) MAC { return MAC{2, 0, 0, 0, 0, b} }
	if err := s.PutRegistration(Registration{MAC: m(9), ISP: "a", CustomerID: "api-9", Source: "api"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SyncRegistrationsDiff("config", []Registration{
		{MAC: m(1), ISP: "a", CustomerID: "c1"}, {MAC: m(2), ISP: "a", CustomerID: "c2"},
	}, true); err != nil {
		t.Fatal(err)
	}
	d, err := s.SyncRegistrationsDiff("config", []Registration{
		{MAC: m(3), ISP: "b", CustomerID: "c3"},                // new
		{MAC: m(2), ISP: "b", CustomerID: "c2"},                // changed
		{MAC: m(9), ISP: "a", CustomerID: "cfg-9"},             // the API's: held
		{MAC: m(1), ISP: "a", CustomerID: "c1", Blocked: true}, // changed
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	if d.Added != 1 || d.Changed != 2 || d.Removed != 0 || len(d.Deleted) != 0 {
		t.Errorf("diff counts %+v", d)
	}
	var puts []MAC
	for _, p := range d.Puts {
		puts = append(puts, p.New.MAC)
		if p.New.MAC == m(2) && (p.Old == nil || p.Old.ISP != "a") {
			t.Errorf("put of m2: old %+v", p.Old)
		}
		if p.New.MAC == m(3) && p.Old != nil {
			t.Errorf("new MAC with an old record %+v", p.Old)
		}
	}
	if !slices.Equal(puts, []MAC{m(1), m(2), m(3)}) {
		t.Errorf("puts %v, want m1 m2 m3 in MAC order", puts)
	}
	if len(d.Held) != 1 || d.Held[0].New.MAC != m(9) || d.Held[0].Old.Source != "api" {
		t.Errorf("held %+v", d.Held)
	}
	if r, _ := s.Registration(m(9)); r.Source != "api" || r.CustomerID != "api-9" {
		t.Errorf("held MAC was written: %+v", r)
	}
	d, err = s.SyncRegistrationsDiff("config", []Registration{{MAC: m(3), ISP: "b", CustomerID: "c3"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if d.Removed != 2 || len(d.Deleted) != 2 || d.Deleted[0].MAC != m(1) || d.Deleted[1].CustomerID != "c2" || len(d.Puts) != 0 {
		t.Errorf("removal diff %+v", d)
	}
	// Without keepOthers the API's MAC is taken over (SyncRegistrations).
	if _, _, _, err := s.SyncRegistrations("config", []Registration{{MAC: m(9), ISP: "a", CustomerID: "cfg-9"}}); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.Registration(m(9)); r.Source != "config" {
		t.Errorf("SyncRegistrations did not take over: %+v", r)
	}
}

// TestForEachRegistrationAndSummary: the stream sees every registration
// in MAC order with shared name strings; the summary counts customers per
// ISP and lists the suspended ones; CheckCustomers finds the absent, and
// the limits of those from another source.
func TestForEachRegistrationAndSummary(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	var w TenantWrite
	for i := range 50 {
		isp := []string{"alpha", "beta"}[i%2]
		id := "c" + string(rune('A'+i))
		st := StatusActive
		if i == 7 {
			st = StatusSuspended
		}
		w.PutCustomers = append(w.PutCustomers, Customer{ISP: isp, ID: id, Status: st, Source: "api"})
		w.PutRegistrations = append(w.PutRegistrations, Registration{MAC: MAC{2, 1, 0, 0, byte(50 - i), 1}, ISP: isp, CustomerID: id, Source: "api"})
	}
	if _, err := s.ApplyTenant(w); err != nil {
		t.Fatal(err)
	}
	var macs []MAC
	ptrs := map[string]map[*byte]bool{}
	err := s.ForEachRegistration(func(r *Registration) error {
		macs = append(macs, r.MAC)
		if ptrs[r.ISP] == nil {
			ptrs[r.ISP] = map[*byte]bool{}
		}
		ptrs[r.ISP][unsafe.StringData(r.ISP)] = true
		return nil
	})
	for isp, p := range ptrs {
		if len(p) != 1 {
			t.Errorf("ISP %q: %d copies of the string, want 1 shared", isp, len(p))
		}
	}
	if err != nil || len(macs) != 50 || !slices.IsSortedFunc(macs, func(a, b MAC) int { return slices.Compare(a[:], b[:]) }) {
		t.Fatalf("stream: %d MACs sorted=%v err %v", len(macs), slices.IsSortedFunc(macs, func(a, b MAC) int { return slices.Compare(a[:], b[:]) }), err)
	}
	stop := errors.New("stop")
	n := 0
	if err := s.ForEachRegistration(func(*Registration) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("fn's error: %v after %d", err, n)
	}
	sum, err := s.CustomerSummary()
	if err != nil {
		t.Fatal(err)
	}
	if sum.PerISP["alpha"] != 25 || sum.PerISP["beta"] != 25 || sum.Registrations != 50 {
		t.Errorf("summary %+v", sum)
	}
	if len(sum.Suspended) != 1 || sum.Suspended[0] != (CustomerKey{"beta", "cH"}) {
		t.Errorf("suspended %+v", sum.Suspended)
	}
	keys := []CustomerKey{{"beta", "cH"}, {"alpha", "nope"}, {"zeta", "cA"}, {"alpha", "cA"}}
	chk, err := s.CheckCustomers(keys, "api")
	if err != nil || !slices.Equal(chk.Missing, []CustomerKey{{"alpha", "nope"}, {"zeta", "cA"}}) || chk.Limits != nil {
		t.Errorf("check against api: %+v, %v", chk, err)
	}
	chk, err = s.CheckCustomers(keys, "config")
	if err != nil || len(chk.Limits) != 2 || chk.Limits[CustomerKey{"beta", "cH"}] != 0 {
		t.Errorf("check against config: %+v, %v", chk, err)
	}
	if _, ok := chk.Limits[CustomerKey{"alpha", "cA"}]; !ok {
		t.Errorf("check against config: alpha/cA, an api customer, has no limit: %+v", chk)
	}
}

// TestSyncRecordsLeftAndEvents: SyncRegistrationsWith writes the sync's
// events in its own transaction, and records the customers its devices
// left (removed, or moved to another customer) until a TenantWrite with
// ClearSyncLeft clears them: a later sync returns them again meanwhile.
func TestSyncRecordsLeftAndEvents(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	m := func(b byte) MAC { return MAC{2, 0, 0, 0, 0, b} }
	opts := SyncOptions{KeepOthers: true, RecordLeft: true, Events: func(d SyncDiff) []Event {
		var evs []Event
		for _, o := range d.Deleted {
			evs = append(evs, Event{Kind: EventDeviceDetached, MAC: o.MAC, ISP: o.ISP, Customer: o.CustomerID})
		}
		return evs
	}}
	if _, err := s.SyncRegistrationsWith("config", []Registration{
		{MAC: m(1), ISP: "a", CustomerID: "c1"}, {MAC: m(2), ISP: "a", CustomerID: "c2"}, {MAC: m(3), ISP: "a", CustomerID: "c3"},
	}, opts); err != nil {
		t.Fatal(err)
	}
	// m(2) removed, m(3) moved to customer c4: c2 and c3 were left.
	d, err := s.SyncRegistrationsWith("config", []Registration{{MAC: m(1), ISP: "a", CustomerID: "c1"}, {MAC: m(3), ISP: "a", CustomerID: "c4"}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := []CustomerKey{{ISP: "a", ID: "c2"}, {ISP: "a", ID: "c3"}}
	if !slices.Equal(d.Left, want) {
		t.Fatalf("left %v, want %v", d.Left, want)
	}
	if len(d.Events) != 1 || d.Events[0].Seq == 0 || d.Events[0].MAC != m(2) {
		t.Fatalf("events %+v", d.Events)
	}
	if evs, err := s.Events(0, 0); err != nil || len(evs) != 1 || evs[0].Seq != d.Events[0].Seq {
		t.Fatalf("stored events %+v %v", evs, err)
	}
	// Not cleared (the follow-up never came): the next sync has them.
	d, err = s.SyncRegistrationsWith("config", []Registration{{MAC: m(1), ISP: "a", CustomerID: "c1"}, {MAC: m(3), ISP: "a", CustomerID: "c4"}}, opts)
	if err != nil || !slices.Equal(d.Left, want) || len(d.Events) != 0 {
		t.Fatalf("after an uncleared sync: left %v events %v %v", d.Left, d.Events, err)
	}
	if _, err := s.ApplyTenant(TenantWrite{ClearSyncLeft: "config"}); err != nil {
		t.Fatal(err)
	}
	d, err = s.SyncRegistrationsWith("config", []Registration{{MAC: m(1), ISP: "a", CustomerID: "c1"}, {MAC: m(3), ISP: "a", CustomerID: "c4"}}, opts)
	if err != nil || len(d.Left) != 0 {
		t.Fatalf("after ClearSyncLeft: left %v %v", d.Left, err)
	}
}
