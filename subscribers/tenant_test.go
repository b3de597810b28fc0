package subscribers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func testCustomer(isp string, i int) Customer {
	return Customer{ISP: isp, ID: fmt.Sprintf("c-%04d", i), PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
		Status: StatusActive, DeviceLimit: 1 + i%3, Source: SourceAPI}
}

func TestCustomerRoundTrip(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	created := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	c := testCustomer("alpha", 1)
	c.Created, c.Updated = created, created.Add(time.Hour)
	if _, err := s.ApplyTenant(TenantWrite{PutCustomers: []Customer{c}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Customer("alpha", c.ID)
	if err != nil || got != c {
		t.Fatalf("Customer = %+v, %v; want %+v", got, err, c)
	}
	if _, err := s.Customer("beta", c.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Customer of another ISP: %v, want ErrNotFound", err)
	}
	// A rewrite with zero times keeps Created and sets Updated.
	c2 := c
	c2.Created, c2.Updated = time.Time{}, time.Time{}
	c2.Status = StatusSuspended
	before := time.Now()
	if _, err := s.ApplyTenant(TenantWrite{PutCustomers: []Customer{c2}}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Customer("alpha", c.ID)
	if got.Created != created || got.Updated.Before(before) || got.Status != StatusSuspended {
		t.Errorf("after rewrite: %+v; want Created kept, Updated now, suspended", got)
	}
	// Bad customers are refused, and nothing of the write is stored.
	for _, bad := range []Customer{
		{ISP: "", ID: "x", Status: StatusActive, Source: SourceAPI},
		{ISP: "alpha", ID: "", Status: StatusActive, Source: SourceAPI},
		{ISP: "alpha", ID: string(make([]byte, 256)), Status: StatusActive, Source: SourceAPI},
		{ISP: "alpha", ID: "a\x00b", Status: StatusActive, Source: SourceAPI},
		{ISP: "al\x00pha", ID: "a", Status: StatusActive, Source: SourceAPI},
		{ISP: "alpha", ID: "a", Status: "gone", Source: SourceAPI},
		{ISP: "alpha", ID: "a", Status: StatusActive, Source: ""},
		{ISP: "alpha", ID: "a", Status: StatusActive, Source: SourceAPI, DeviceLimit: -1},
	} {
		_, err := s.ApplyTenant(TenantWrite{PutCustomers: []Customer{testCustomer("alpha", 9), bad}})
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ApplyTenant(%+v): %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := s.Customer("alpha", testCustomer("alpha", 9).ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused write stored a customer: %v", err)
	}
	// Delete.
	res, err := s.ApplyTenant(TenantWrite{DeleteCustomers: []CustomerKey{{"alpha", c.ID}, {"alpha", "nobody"}}})
	if err != nil || len(res.Events) != 0 {
		t.Fatal(res, err)
	}
	if _, err := s.Customer("alpha", c.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted customer: %v", err)
	}
}

// TestCustomersPages walks the pages of every page size and checks that
// each customer comes exactly once, in order, and that a page of one ISP
// has only that ISP's.
func TestCustomersPages(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	var w TenantWrite
	for i := range 25 {
		w.PutCustomers = append(w.PutCustomers, testCustomer("alpha", i), testCustomer("beta", i))
	}
	w.PutCustomers = append(w.PutCustomers, testCustomer("alp", 1)) // a prefix of another ISP's name
	if _, err := s.ApplyTenant(w); err != nil {
		t.Fatal(err)
	}
	all, err := s.AllCustomers()
	if err != nil || len(all) != 51 {
		t.Fatalf("AllCustomers = %d, %v", len(all), err)
	}
	for _, isp := range []string{"", "alpha", "beta", "alp", "gamma"} {
		var want []Customer
		for _, c := range all {
			if isp == "" || c.ISP == isp {
				want = append(want, c)
			}
		}
		for _, limit := range []int{0, 1, 2, 7, 25, 26, 100} {
			var got []Customer
			after := ""
			for pages := 0; ; pages++ {
				cs, next, err := s.Customers(isp, after, limit)
				if err != nil {
					t.Fatalf("Customers(%q, %q, %d): %v", isp, after, limit, err)
				}
				if limit > 0 && len(cs) > limit {
					t.Fatalf("page of %d > limit %d", len(cs), limit)
				}
				got = append(got, cs...)
				if next == "" {
					break
				}
				if pages > 100 {
					t.Fatal("no end")
				}
				after = next
			}
			if !slices.Equal(got, want) {
				t.Errorf("Customers(%q) by %d: %d customers, want %d", isp, limit, len(got), len(want))
			}
		}
	}
	// A cursor of another ISP, or garbage, is refused.
	_, next, _ := s.Customers("alpha", "", 3)
	if _, _, err := s.Customers("beta", next, 3); !errors.Is(err, ErrInvalid) {
		t.Errorf("Customers with another ISP's cursor: %v, want ErrInvalid", err)
	}
	if _, _, err := s.Customers("alpha", "!!", 3); !errors.Is(err, ErrInvalid) {
		t.Errorf("Customers with a bad cursor: %v, want ErrInvalid", err)
	}
	// The cursor survives the deletion of the page's last customer.
	cs, next, _ := s.Customers("alpha", "", 3)
	if _, err := s.ApplyTenant(TenantWrite{DeleteCustomers: []CustomerKey{{"alpha", cs[2].ID}}}); err != nil {
		t.Fatal(err)
	}
	cs2, _, err := s.Customers("alpha", next, 1)
	if err != nil || len(cs2) != 1 || cs2[0].ID != testCustomer("alpha", 3).ID {
		t.Errorf("page after a deleted cursor = %+v, %v", cs2, err)
	}
}

func reg(i int, isp, cust string) Registration {
	return Registration{MAC: mac(i), ISP: isp, CustomerID: cust, Source: SourceAPI}
}

func macsOf(rs []Registration) []MAC {
	var m []MAC
	for _, r := range rs {
		m = append(m, r.MAC)
	}
	return m
}

// checkIndex checks that the devices-by-customer index holds exactly one
// entry per registration, under its ISP and customer.
func checkIndex(t *testing.T, s *Store) {
	t.Helper()
	rs, err := s.Registrations()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, r := range rs {
		want[string(deviceIndexKey(r.ISP, r.CustomerID, r.MAC))] = true
	}
	got := map[string]bool{}
	s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDeviceIndex).ForEach(func(k, _ []byte) error {
			got[string(k)] = true
			return nil
		})
	})
	for k := range got {
		if !want[k] {
			t.Errorf("stale index key %q", k)
		}
	}
	for k := range want {
		if !got[k] {
			t.Errorf("missing index key %q", k)
		}
	}
}

func TestDevicesIndex(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	// Through every writer.
	if err := s.PutRegistration(reg(1, "alpha", "c-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyTenant(TenantWrite{PutRegistrations: []Registration{reg(2, "alpha", "c-1"), reg(3, "alpha", "c-2"), reg(4, "beta", "c-1")}}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.SyncRegistrations(SourceConfig, []Registration{reg(5, "alpha", "c-2"), reg(6, "beta", "c-9")}); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, s)
	d, err := s.DevicesOf("alpha", "c-1")
	if err != nil || !slices.Equal(macsOf(d), []MAC{mac(1), mac(2)}) {
		t.Errorf("DevicesOf(alpha, c-1) = %x, %v", macsOf(d), err)
	}
	if d, err := s.DevicesOf("alpha", "c-"); err != nil || len(d) != 0 {
		t.Errorf("DevicesOf(alpha, c-) = %x, %v; want none (not a prefix match)", macsOf(d), err)
	}

	// Moves: to another customer, to another ISP; each leaves no stale key.
	before := s.mustReg(t, mac(1))
	time.Sleep(time.Millisecond)
	if err := s.PutRegistration(reg(1, "alpha", "c-2")); err != nil {
		t.Fatal(err)
	}
	if after := s.mustReg(t, mac(1)); !after.Created.After(before.Created) {
		t.Errorf("a move to another customer kept Created: %v → %v (Registration.Created)", before.Created, after.Created)
	}
	if _, err := s.ApplyTenant(TenantWrite{PutRegistrations: []Registration{reg(2, "beta", "c-1")}}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.SyncRegistrations(SourceConfig, []Registration{reg(5, "beta", "c-9"), reg(6, "beta", "c-9")}); err != nil {
		t.Fatal(err)
	}
	// Two puts of one MAC in one write: the later counts, no stale key.
	if _, err := s.ApplyTenant(TenantWrite{PutRegistrations: []Registration{reg(7, "alpha", "c-7"), reg(7, "alpha", "c-8")}}); err != nil {
		t.Fatal(err)
	}
	// Deleted and put in one write: put.
	if _, err := s.ApplyTenant(TenantWrite{DeleteRegistrations: []MAC{mac(3)}, PutRegistrations: []Registration{reg(3, "gamma", "c-3")}}); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, s)
	if d, _ := s.DevicesOf("alpha", "c-1"); len(d) != 0 {
		t.Errorf("DevicesOf(alpha, c-1) after the moves = %x, want none", macsOf(d))
	}
	if d, _ := s.DevicesOf("alpha", "c-8"); !slices.Equal(macsOf(d), []MAC{mac(7)}) {
		t.Errorf("DevicesOf(alpha, c-8) = %x", macsOf(d))
	}
	if d, _ := s.DevicesOf("beta", "c-9"); !slices.Equal(macsOf(d), []MAC{mac(5), mac(6)}) {
		t.Errorf("DevicesOf(beta, c-9) = %x", macsOf(d))
	}

	// Deletes, through every writer.
	if _, err := s.DeleteRegistration(mac(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyTenant(TenantWrite{DeleteRegistrations: []MAC{mac(2), mac(99)}}); err != nil {
		t.Fatal(err)
	}
	if _, _, removed, err := s.SyncRegistrations(SourceConfig, []Registration{reg(6, "beta", "c-9")}); err != nil || removed != 1 {
		t.Fatal(removed, err)
	}
	checkIndex(t, s)
	rs, _ := s.Registrations()
	if !slices.Equal(macsOf(rs), []MAC{mac(3), mac(4), mac(6), mac(7)}) {
		t.Errorf("Registrations = %x", macsOf(rs))
	}
}

func (s *Store) mustReg(t *testing.T, m MAC) Registration {
	t.Helper()
	r, err := s.Registration(m)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDevicesPages(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	var w TenantWrite
	for i := range 60 {
		isp := []string{"alpha", "beta", "alp"}[i%3]
		w.PutRegistrations = append(w.PutRegistrations, reg(1000-i, isp, fmt.Sprintf("c-%d", i%4)))
	}
	if _, err := s.ApplyTenant(w); err != nil {
		t.Fatal(err)
	}
	all, _ := s.Registrations()
	for _, q := range []struct{ isp, cust string }{{"", ""}, {"alpha", ""}, {"beta", ""}, {"alp", ""}, {"alpha", "c-1"}, {"alp", "c-0"}, {"beta", "c-9"}} {
		var want []Registration
		for _, r := range all {
			if (q.isp == "" || r.ISP == q.isp) && (q.cust == "" || r.CustomerID == q.cust) {
				want = append(want, r)
			}
		}
		if q.isp != "" {
			slices.SortStableFunc(want, func(a, b Registration) int {
				if a.CustomerID != b.CustomerID {
					if a.CustomerID < b.CustomerID {
						return -1
					}
					return 1
				}
				return 0
			})
		}
		for _, limit := range []int{0, 1, 3, 20, 21, 100} {
			var got []Registration
			after := ""
			for pages := 0; ; pages++ {
				rs, next, err := s.Devices(q.isp, q.cust, after, limit)
				if err != nil {
					t.Fatalf("Devices(%q, %q, %q, %d): %v", q.isp, q.cust, after, limit, err)
				}
				if limit > 0 && len(rs) > limit {
					t.Fatalf("page of %d > limit %d", len(rs), limit)
				}
				got = append(got, rs...)
				if next == "" {
					break
				}
				if pages > 100 {
					t.Fatal("no end")
				}
				after = next
			}
			if !slices.Equal(got, want) {
				t.Errorf("Devices(%q, %q) by %d = %x\nwant %x", q.isp, q.cust, limit, macsOf(got), macsOf(want))
			}
		}
	}
	if _, _, err := s.Devices("", "c-1", "", 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Devices without ISP with a customer: %v, want ErrInvalid", err)
	}
	_, next, _ := s.Devices("", "", "", 2)
	if len(next) != 12 {
		t.Errorf("all-ISP cursor %q, want 12 hex digits", next)
	}
	if _, _, err := s.Devices("", "", "zz", 2); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad MAC cursor: %v, want ErrInvalid", err)
	}
	_, next, _ = s.Devices("alpha", "", "", 2)
	if _, _, err := s.Devices("beta", "", next, 2); !errors.Is(err, ErrInvalid) {
		t.Errorf("another ISP's cursor: %v, want ErrInvalid", err)
	}
}

// TestApplyTenantAtomic: a write that ends a binding with its intent,
// moves a device, deletes a customer and records events commits all of
// it, with IDs and sequence numbers assigned in order.
func TestApplyTenantAtomic(t *testing.T) {
	numberFromOne(t)
	s, _ := openTest(t, Options{NoSync: true})
	b := testBinding(1)
	b.ISP = "alpha"
	if err := s.CommitBinding(b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyTenant(TenantWrite{
		PutCustomers:     []Customer{testCustomer("alpha", 1), testCustomer("beta", 2)},
		PutRegistrations: []Registration{reg(1, "alpha", testCustomer("alpha", 1).ID)},
	}); err != nil {
		t.Fatal(err)
	}
	in := &Intent{Kind: IntentRelease, ISP: "alpha", MAC: b.MAC, Access: b.Access, VLAN: b.VLAN, IP: b.IP, Message: []byte{1, 2, 3}}
	res, err := s.ApplyTenant(TenantWrite{
		DeleteCustomers:  []CustomerKey{{"alpha", testCustomer("alpha", 1).ID}},
		PutRegistrations: []Registration{reg(1, "beta", testCustomer("beta", 2).ID)},
		EndBindings:      []EndBindingOp{{Access: b.Access, VLAN: b.VLAN, MAC: b.MAC, Intent: in}, {Access: "nowhere", MAC: mac(5)}},
		Events: []Event{
			{Kind: EventMoved, MAC: b.MAC, ISP: "alpha", Customer: testCustomer("alpha", 1).ID, Actor: "operator", RequestID: "r-1"},
			{Kind: EventMoved, MAC: b.MAC, ISP: "beta", Customer: testCustomer("beta", 2).ID, Actor: "operator", RequestID: "r-1"},
			{Kind: EventCustomerDeleted, ISP: "alpha", Customer: testCustomer("alpha", 1).ID, Actor: "operator", RequestID: "r-1"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Intents) != 2 || res.Intents[0].ID != 1 || res.Intents[0].Created.IsZero() || res.Intents[1].ID != 0 {
		t.Errorf("Intents = %+v", res.Intents)
	}
	if !slices.Equal(res.Ended, []bool{true, false}) {
		t.Errorf("Ended = %v", res.Ended)
	}
	if len(res.Events) != 3 || res.Events[0].Seq != 1 || res.Events[2].Seq != 3 || res.Events[1].ISP != "beta" || res.Events[0].Time.IsZero() {
		t.Errorf("Events = %+v", res.Events)
	}
	if _, err := s.Binding(b.Access, b.VLAN, b.MAC); !errors.Is(err, ErrNotFound) {
		t.Errorf("binding after the write: %v", err)
	}
	if ins, _ := s.Intents(); len(ins) != 1 || ins[0].ID != 1 {
		t.Errorf("Intents = %+v", ins)
	}
	if r := s.mustReg(t, mac(1)); r.ISP != "beta" {
		t.Errorf("registration = %+v", r)
	}
	evs, _ := s.Events(0, 0)
	if !slices.EqualFunc(evs, res.Events, func(a, b Event) bool { b.Time, b.ISPSeq = b.Time.UTC().Round(0), 0; return a == b }) {
		t.Errorf("stored events = %+v\nwant %+v", evs, res.Events)
	}
	if evs[0].Actor != "operator" || evs[0].RequestID != "r-1" {
		t.Errorf("event actor/request id lost: %+v", evs[0])
	}
	checkIndex(t, s)

	// A bad part refuses the whole write.
	_, err = s.ApplyTenant(TenantWrite{
		PutRegistrations: []Registration{reg(9, "alpha", "c")},
		EndBindings:      []EndBindingOp{{Access: "", MAC: mac(9)}},
	})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("bad end binding: %v", err)
	}
	_, err = s.ApplyTenant(TenantWrite{PutRegistrations: []Registration{reg(9, "alpha", "c")}, Events: []Event{{}}})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("event without kind: %v", err)
	}
	if _, err := s.Registration(mac(9)); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused write stored its registration: %v", err)
	}
}

// TestWatch: a committed change reaches a watcher; the channel closes when
// ctx ends.
func TestWatch(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	if err := s.PutRegistration(reg(1, "alpha", "c-1")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := s.Watch(ctx, 0)
	c := recvChange(t, ch)
	if c.Seq != 1 || c.Kind != ChangeDevice || c.Op != ChangePut || c.MAC != mac(1) {
		t.Errorf("first change = %+v", c)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.ApplyTenant(TenantWrite{PutCustomers: []Customer{testCustomer("alpha", 1)}, DeleteRegistrations: []MAC{mac(1)}})
	}()
	c = recvChange(t, ch)
	if c.Seq != 2 || c.Kind != ChangeDevice || c.Op != ChangeDelete || c.MAC != mac(1) {
		t.Errorf("second change = %+v", c)
	}
	c = recvChange(t, ch)
	if c.Seq != 3 || c.Kind != ChangeCustomer || c.Op != ChangePut || c.ISP != "alpha" || c.CustomerID != testCustomer("alpha", 1).ID {
		t.Errorf("third change = %+v", c)
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Error("a change after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after cancel")
	}
}

func recvChange(t *testing.T, ch <-chan Change) Change {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no change within 5s")
	}
	return Change{}
}
