package subscribers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestEventsOf: an ISP's events are exactly its own, in order, paged
// without looking at other ISPs' events, and trimming drops their index
// entries.
func TestEventsOf(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, EventRetention: 50})
	var all []Event
	for i := range 40 {
		isp := []string{"alpha", "beta", "alp", ""}[i%4]
		e, err := s.AddEvent(Event{Kind: EventBound, ISP: isp, MAC: mac(i), Actor: "a", RequestID: fmt.Sprint("r", i)})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}
	// Through the other writers too.
	e, err := s.CommitBindingEvent(testBinding(1), Event{Kind: EventRenewed, ISP: "beta"})
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, e)
	res, err := s.ApplyTenant(TenantWrite{Events: []Event{{Kind: EventClaimed, ISP: "alpha"}, {Kind: EventClaimRefused, ISP: "beta"}}})
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, res.Events...)

	of := func(isp string, evs []Event) []Event {
		var r []Event
		for _, e := range evs {
			if e.ISP == isp {
				e.Time = e.Time.UTC().Round(0)
				r = append(r, e)
			}
		}
		return r
	}
	for _, isp := range []string{"alpha", "beta", "alp", "gamma"} {
		want := of(isp, all)
		got, err := s.EventsOf(isp, 0, 0)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("EventsOf(%q) = %d events, %v; want %d", isp, len(got), err, len(want))
		}
		// Paged by 3 from each event's ISPSeq.
		var paged []Event
		for after := uint64(0); ; {
			page, err := s.EventsOf(isp, after, 3)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			paged = append(paged, page...)
			after = page[len(page)-1].ISPSeq
		}
		if !slices.Equal(paged, want) {
			t.Errorf("EventsOf(%q) paged = %d events, want %d", isp, len(paged), len(want))
		}
	}
	if got, _ := s.EventsOf("", 0, 0); len(got) != len(all) {
		t.Errorf("EventsOf(\"\") = %d, want all %d", len(got), len(all))
	}

	// Trim by count: 10 more events drop the oldest beyond 50, with
	// their index entries.
	for i := range 10 {
		e, err := s.AddEvent(Event{Kind: EventBound, ISP: "alpha", MAC: mac(100 + i)})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}
	kept := all[len(all)-50:]
	if got, _ := s.EventsOf("alpha", 0, 0); !slices.Equal(got, of("alpha", kept)) {
		t.Errorf("EventsOf(alpha) after trimming = %d, want %d", len(got), len(of("alpha", kept)))
	}
	checkEventIndex(t, s)

	// Trim by age.
	e, err = s.AddEvent(Event{Kind: EventBound, ISP: "beta", Time: time.Now().Add(DefaultEventMaxAge + time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.EventsOf("alpha", 0, 0); len(got) != 0 {
		t.Errorf("EventsOf(alpha) after age trimming = %d, want 0", len(got))
	}
	if got, _ := s.EventsOf("beta", 0, 0); len(got) != 1 || got[0].Seq != e.Seq {
		t.Errorf("EventsOf(beta) after age trimming = %+v", got)
	}
	checkEventIndex(t, s)
}

// TestChangeFeed: every write of a customer or registration is in the
// feed, in order; deleting what is not there is not; the feed is trimmed
// by count and by age.
func TestChangeFeed(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, ChangeRetention: 20})
	type want struct {
		kind ChangeKind
		op   ChangeOp
		key  string
	}
	var wants []want
	dev := func(op ChangeOp, i int) { m := mac(i); wants = append(wants, want{ChangeDevice, op, string(m[:])}) }
	cust := func(op ChangeOp, isp, id string) {
		wants = append(wants, want{ChangeCustomer, op, string(customerKey(isp, id))})
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutRegistration(reg(1, "alpha", "c-1")))
	dev(ChangePut, 1)
	_, err := s.DeleteRegistration(mac(1))
	must(err)
	dev(ChangeDelete, 1)
	_, err = s.DeleteRegistration(mac(1)) // not there: no change
	must(err)
	_, _, _, err = s.SyncRegistrations(SourceConfig, []Registration{reg(3, "a", "c"), reg(2, "a", "c")})
	must(err)
	dev(ChangePut, 2)
	dev(ChangePut, 3)
	_, _, _, err = s.SyncRegistrations(SourceConfig, []Registration{reg(3, "a", "c")}) // 3 unchanged: no change
	must(err)
	dev(ChangeDelete, 2)
	_, err = s.ApplyTenant(TenantWrite{
		PutCustomers:        []Customer{testCustomer("beta", 2), testCustomer("alpha", 1)},
		DeleteCustomers:     []CustomerKey{{"alpha", "nobody"}},
		PutRegistrations:    []Registration{reg(5, "alpha", "c-1")},
		DeleteRegistrations: []MAC{mac(3)},
	})
	must(err)
	dev(ChangeDelete, 3)
	cust(ChangePut, "alpha", testCustomer("alpha", 1).ID)
	cust(ChangePut, "beta", testCustomer("beta", 2).ID)
	dev(ChangePut, 5)
	_, err = s.ApplyTenant(TenantWrite{DeleteCustomers: []CustomerKey{{"beta", testCustomer("beta", 2).ID}}})
	must(err)
	cust(ChangeDelete, "beta", testCustomer("beta", 2).ID)
	// Events and bindings are not in the feed.
	_, err = s.AddEvent(Event{Kind: EventBound})
	must(err)
	must(s.CommitBinding(testBinding(1)))

	cs, err := s.Changes(0, 0)
	if err != nil || len(cs) != len(wants) {
		t.Fatalf("Changes = %d, %v; want %d", len(cs), err, len(wants))
	}
	for i, c := range cs {
		w := wants[i]
		if c.Seq != uint64(i+1) || c.Kind != w.kind || c.Op != w.op || string(c.Key) != w.key || c.Time.IsZero() {
			t.Errorf("change %d = %+v, want %+v", i, c, w)
		}
	}
	if cs[6].ISP != "alpha" || cs[6].CustomerID != testCustomer("alpha", 1).ID || cs[7].MAC != (MAC{}) {
		t.Errorf("customer change fields: %+v", cs[6])
	}
	if seq, err := s.ChangeSeq(); err != nil || seq != uint64(len(wants)) {
		t.Errorf("ChangeSeq = %d, %v", seq, err)
	}
	if cs, _ := s.Changes(7, 2); len(cs) != 2 || cs[0].Seq != 8 {
		t.Errorf("Changes(7, 2) = %+v", cs)
	}

	// Trim by count to 20.
	var w TenantWrite
	for i := range 30 {
		w.PutRegistrations = append(w.PutRegistrations, reg(100+i, "alpha", "c-1"))
	}
	_, err = s.ApplyTenant(w)
	must(err)
	cs, _ = s.Changes(0, 0)
	last, _ := s.ChangeSeq()
	if len(cs) != 20 || cs[0].Seq != last-19 {
		t.Errorf("after 30 more: %d changes from %d, want 20 from %d", len(cs), cs[0].Seq, last-19)
	}

	// Trim by age: a change written at a time far in the future drops
	// every older one... the feed uses the writer's clock, so age it by
	// rewriting the stored times instead.
	s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketChanges)
		var keys [][]byte
		var vals [][]byte
		bk.ForEach(func(k, v []byte) error {
			c, _ := decodeChange(k, v)
			c.Time = c.Time.Add(-DefaultChangeMaxAge - time.Hour)
			keys, vals = append(keys, slices.Clone(k)), append(vals, encodeChange(&c))
			return nil
		})
		for i := range keys {
			bk.Put(keys[i], vals[i])
		}
		return nil
	})
	must(s.PutRegistration(reg(1, "beta", "c-9")))
	cs, _ = s.Changes(0, 0)
	if len(cs) != 1 || cs[0].Seq != last+1 {
		t.Errorf("after age trimming: %+v, want only %d", cs, last+1)
	}
}

// TestWatchSlowReader: a reader that reads nothing while more changes than
// the channel holds are committed still gets every one, in order; one that
// fell behind the retention sees the gap; Close closes the channel.
func TestWatchSlowReader(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, ChangeRetention: 2000})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx, 0)
	const n = 1000
	for i := range n / 100 {
		var w TenantWrite
		for j := range 100 {
			w.PutRegistrations = append(w.PutRegistrations, reg(i*100+j, "alpha", "c"))
		}
		if _, err := s.ApplyTenant(w); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // let the watcher block on the full channel
	for i := range n {
		c := recvChange(t, ch)
		if c.Seq != uint64(i+1) {
			t.Fatalf("change %d has Seq %d", i, c.Seq)
		}
	}

	// A reader that starts behind the retention sees a gap.
	var w TenantWrite
	for j := range 2500 {
		w.PutRegistrations = append(w.PutRegistrations, reg(10000+j, "beta", "c"))
	}
	if _, err := s.ApplyTenant(w); err != nil {
		t.Fatal(err)
	}
	last, _ := s.ChangeSeq()
	late := s.Watch(ctx, 5)
	if c := recvChange(t, late); c.Seq != last-1999 {
		t.Errorf("late reader's first change %d, want %d (a gap: 6.. were trimmed)", c.Seq, last-1999)
	}

	// Close ends the watch.
	idle := s.Watch(ctx, last)
	s.Close()
	select {
	case c, ok := <-idle:
		if ok {
			t.Errorf("a change after Close: %+v", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch channel not closed by Close")
	}
}

// TestBindingsPage: pages cover every binding exactly once, of all ISPs or
// of one.
func TestBindingsPage(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	for i := range 40 {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := s.Bindings()
	for _, isp := range []string{"", "isp-0", "isp-1", "isp-9"} {
		var want []Binding
		for _, b := range all {
			if isp == "" || b.ISP == isp {
				want = append(want, b)
			}
		}
		for _, limit := range []int{0, 1, 3, 20, 40} {
			var got []Binding
			after := ""
			for pages := 0; ; pages++ {
				bs, next, err := s.BindingsPage(isp, after, limit)
				if err != nil {
					t.Fatal(err)
				}
				if limit > 0 && len(bs) > limit {
					t.Fatalf("page of %d > %d", len(bs), limit)
				}
				got = append(got, bs...)
				if next == "" {
					break
				}
				if pages > 100 {
					t.Fatal("no end")
				}
				after = next
			}
			if !slices.EqualFunc(got, want, bindingEqual) {
				t.Errorf("BindingsPage(%q) by %d: %d bindings, want %d", isp, limit, len(got), len(want))
			}
		}
	}
	// Base64 that is no binding's key (no access, VLAN and MAC in it) is
	// a bad cursor too, as a customers' or devices' one of another
	// prefix is: "zzz" answered an empty page, the list's end to a
	// client (a trial), and "AAAA" the first page.
	for _, c := range []string{"%%%", "zzz", "AAAA", "YWNjMAAAAAIAAAABAQAA", "AGFjYzAAAAACAAAAAQE"} {
		if _, _, err := s.BindingsPage("", c, 1); !errors.Is(err, ErrInvalid) {
			t.Errorf("bad cursor %q: %v", c, err)
		}
	}
	if _, _, err := s.BindingsPage("", "YWNjMAAAAAIAAAABAQ", 1); err != nil {
		t.Errorf("a binding key's cursor (acc0, VLAN 0, 02:00:00:00:01:01): %v", err)
	}
}

// TestApplyTenantImportOneTransaction: a 1000-customer import batch is one
// write transaction (one fsync), and every customer is there after it.
func TestApplyTenantImportOneTransaction(t *testing.T) {
	s, _ := openTest(t, Options{})
	var w TenantWrite
	for i := range 1000 {
		w.PutCustomers = append(w.PutCustomers, testCustomer("alpha", 999-i)) // reverse order
	}
	w.Events = []Event{{Kind: EventCustomerCreated, ISP: "alpha", Reason: "import of 1000", Actor: "isp-alpha", RequestID: "r-imp"}}
	before := s.writeTxs.Load()
	start := time.Now()
	if _, err := s.ApplyTenant(w); err != nil {
		t.Fatal(err)
	}
	t.Logf("1000 customers in %v", time.Since(start))
	if n := s.writeTxs.Load() - before; n != 1 {
		t.Errorf("ApplyTenant of 1000 customers took %d write transactions, want 1", n)
	}
	cs, err := s.AllCustomers()
	if err != nil || len(cs) != 1000 {
		t.Fatalf("AllCustomers = %d, %v", len(cs), err)
	}
	ch, _ := s.Changes(0, 0)
	if len(ch) != 1000 {
		t.Errorf("%d changes, want 1000", len(ch))
	}
}

// TestApplyTenantRetried: ApplyTenant writes grouped with failing writes
// (so re-run in other transactions) report exactly what was stored: the
// closures are idempotent.
func TestApplyTenantRetried(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, MaxBatchSize: 5})
	errFail := errors.New("fail")
	const n = 60
	var mu sync.Mutex
	var results []TenantResult
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if i%3 == 0 {
				s.update(func(tx *bolt.Tx) error { return errFail })
				return
			}
			b := testBinding(i)
			if err := s.CommitBinding(b); err != nil {
				t.Error(err)
				return
			}
			res, err := s.ApplyTenant(TenantWrite{
				PutCustomers:     []Customer{testCustomer("alpha", i)},
				PutRegistrations: []Registration{reg(i, "alpha", testCustomer("alpha", i).ID)},
				EndBindings: []EndBindingOp{{Access: b.Access, VLAN: b.VLAN, MAC: b.MAC,
					Intent: &Intent{Kind: IntentRelease, ISP: "alpha", MAC: b.MAC, Access: b.Access, VLAN: b.VLAN, IP: b.IP, Message: []byte{byte(i)}}}},
				Events: []Event{{Kind: EventDeviceAttached, ISP: "alpha", MAC: b.MAC}, {Kind: EventCustomerCreated, ISP: "alpha"}},
			})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			results = append(results, res)
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("%d writes in %d write transactions", n+len(results), s.writeTxs.Load())
	evs, _ := s.Events(0, 0)
	ins, _ := s.Intents()
	bySeq := map[uint64]Event{}
	for _, e := range evs {
		bySeq[e.Seq] = e
	}
	byID := map[uint64]Intent{}
	for _, in := range ins {
		byID[in.ID] = in
	}
	for _, r := range results {
		if !r.Ended[0] {
			t.Errorf("binding of %x not found", r.Intents[0].MAC)
		}
		if in, ok := byID[r.Intents[0].ID]; !ok || in.MAC != r.Intents[0].MAC || in.Message[0] != r.Intents[0].Message[0] {
			t.Errorf("intent %d reported for %x, stored %+v", r.Intents[0].ID, r.Intents[0].MAC, in)
		}
		for _, e := range r.Events {
			if got, ok := bySeq[e.Seq]; !ok || got.Kind != e.Kind || got.MAC != e.MAC {
				t.Errorf("event %d reported as %s %x, stored %+v", e.Seq, e.Kind, e.MAC, got)
			}
		}
	}
	if len(evs) != 2*len(results) || len(ins) != len(results) {
		t.Errorf("%d events and %d intents stored for %d writes", len(evs), len(ins), len(results))
	}
	checkIndex(t, s)
	checkEventIndex(t, s)
}

// TestSyncKeepsTimes: a resync keeps the Updated and Created of unchanged
// registrations and the Created of changed ones that keep their customer;
// one moved to another customer is Created again (Registration.Created).
func TestSyncKeepsTimes(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	if _, _, _, err := s.SyncRegistrations(SourceConfig, []Registration{reg(1, "a", "c"), reg(2, "a", "c")}); err != nil {
		t.Fatal(err)
	}
	r1, r2 := s.mustReg(t, mac(1)), s.mustReg(t, mac(2))
	if r1.Created.IsZero() || r1.Created != r1.Updated {
		t.Errorf("new registration: Created %v, Updated %v", r1.Created, r1.Updated)
	}
	time.Sleep(10 * time.Millisecond)
	pinned := reg(2, "a", "c")
	pinned.Access = "acc0"
	added, changed, removed, err := s.SyncRegistrations(SourceConfig, []Registration{reg(1, "a", "c"), pinned})
	if err != nil || added != 0 || changed != 1 || removed != 0 {
		t.Fatalf("resync: %d %d %d %v", added, changed, removed, err)
	}
	if got := s.mustReg(t, mac(1)); got != r1 {
		t.Errorf("unchanged registration rewritten: %+v → %+v", r1, got)
	}
	if got := s.mustReg(t, mac(2)); got.Created != r2.Created || !got.Updated.After(r2.Updated) {
		t.Errorf("changed registration: %+v (was %+v): want Created kept, Updated later", got, r2)
	}
	time.Sleep(10 * time.Millisecond)
	if _, _, _, err := s.SyncRegistrations(SourceConfig, []Registration{reg(1, "a", "c"), reg(2, "b", "c")}); err != nil {
		t.Fatal(err)
	}
	if got := s.mustReg(t, mac(2)); !got.Created.After(r2.Created) || got.Created != got.Updated {
		t.Errorf("moved registration: %+v (was %+v): want Created the move's", got, r2)
	}
}

// TestIndexesAndCorruptValues: a corrupt registration, event or change is
// reported by the readers that meet it, the others still read; an index
// entry left behind when a corrupt registration is overwritten is skipped;
// Watch goes past a corrupt change.
func TestIndexesAndCorruptValues(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	if _, err := s.ApplyTenant(TenantWrite{PutRegistrations: []Registration{reg(1, "alpha", "c"), reg(2, "alpha", "c")}}); err != nil {
		t.Fatal(err)
	}
	m2 := mac(2)
	putRaw(t, s, bucketRegistrations, m2[:], []byte{3, 0xff})
	d, err := s.DevicesOf("alpha", "c")
	checkCorrupt(t, "DevicesOf", err, bucketRegistrations, m2[:])
	if len(d) != 1 || d[0].MAC != mac(1) {
		t.Errorf("DevicesOf = %x, want the good one", macsOf(d))
	}
	_, _, err = s.Devices("alpha", "", "", 0)
	checkCorrupt(t, "Devices", err, bucketRegistrations, m2[:])
	// Overwritten under another customer: the old entry stays, skipped.
	if err := s.PutRegistration(reg(2, "beta", "x")); err != nil {
		t.Fatal(err)
	}
	if d, err := s.DevicesOf("alpha", "c"); err != nil || len(d) != 1 {
		t.Errorf("DevicesOf after overwrite = %x, %v; want only mac 1 and no error", macsOf(d), err)
	}
	if d, _, err := s.Devices("alpha", "", "", 0); err != nil || len(d) != 1 {
		t.Errorf("Devices(alpha) after overwrite = %x, %v", macsOf(d), err)
	}

	// A corrupt event: EventsOf reports it.
	e, _ := s.AddEvent(Event{Kind: EventBound, ISP: "alpha"})
	s.AddEvent(Event{Kind: EventBound, ISP: "alpha"})
	putRaw(t, s, bucketEvents, seqKey(e.Seq), []byte{3, 0xff})
	evs, err := s.EventsOf("alpha", 0, 0)
	checkCorrupt(t, "EventsOf", err, bucketEvents, seqKey(e.Seq))
	if len(evs) != 1 {
		t.Errorf("EventsOf = %d good, want 1", len(evs))
	}

	// A corrupt change: Changes reports it; Watch skips it and goes on.
	putRaw(t, s, bucketChanges, seqKey(2), []byte{3, 0xff})
	cs, err := s.Changes(0, 0)
	checkCorrupt(t, "Changes", err, bucketChanges, seqKey(2))
	if len(cs) != 2 {
		t.Errorf("Changes = %d good, want 2", len(cs))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx, 0)
	for _, want := range []uint64{1, 3} {
		if c := recvChange(t, ch); c.Seq != want {
			t.Errorf("Watch gave %d, want %d", c.Seq, want)
		}
	}
	if err := s.PutRegistration(reg(3, "a", "c")); err != nil {
		t.Fatal(err)
	}
	if c := recvChange(t, ch); c.Seq != 4 {
		t.Errorf("Watch gave %d, want 4", c.Seq)
	}
}

// TestWaitEvents: a waiter returns at once if there is a newer event,
// else when one is committed (by any writer), with ctx's error when ctx
// ends, and ErrClosed when the store closes.
func TestWaitEvents(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	ctx := context.Background()
	e, _ := s.AddEvent(Event{Kind: EventBound})
	if err := s.WaitEvents(ctx, 0); err != nil {
		t.Errorf("WaitEvents with a newer event: %v", err)
	}
	writers := []func(){
		func() { s.AddEvent(Event{Kind: EventBound}) },
		func() { s.CommitBindingEvent(testBinding(1), Event{Kind: EventBound}) },
		func() { s.EndBinding("acc1", 1, mac(1), nil, Event{Kind: EventExpired}) },
		func() { s.ApplyTenant(TenantWrite{Events: []Event{{Kind: EventClaimed}}}) },
	}
	after := e.Seq
	for i, write := range writers {
		done := make(chan error, 1)
		go func() { done <- s.WaitEvents(ctx, after) }()
		select {
		case err := <-done:
			t.Fatalf("writer %d: WaitEvents returned before the write: %v", i, err)
		case <-time.After(20 * time.Millisecond):
		}
		write()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("writer %d: WaitEvents: %v", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("writer %d: WaitEvents not woken", i)
		}
		after++
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := s.WaitEvents(cctx, after); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitEvents past its deadline: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.WaitEvents(ctx, after) }()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("WaitEvents at Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitEvents not woken by Close")
	}
}
