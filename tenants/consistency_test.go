package tenants

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// TestClaimAfterPasswordChange: a claim checks the password outside the
// writer lock and attaches under it only if the customer still holds the
// hash it checked: a password change (the ISP revoking a leaked one)
// committed in between stops a claim made with the old password (before,
// the device was attached).
func TestClaimAfterPasswordChange(t *testing.T) {
	r := newRig(t)
	if _, err := r.ten.CreateCustomer(ctx, op, "beta", CustomerInput{ID: "c-1", Password: "old-leaked-pass", DeviceLimit: 2}); err != nil {
		t.Fatal(err)
	}
	r.ten.mu.Lock() // another writer's change in progress
	updated := make(chan error, 1)
	go func() {
		pw := "new-secret-pass"
		_, err := r.ten.UpdateCustomer(ctx, beta, "beta", "c-1", CustomerPatch{Password: &pw})
		updated <- err
	}()
	time.Sleep(500 * time.Millisecond) // hashed, waiting for the lock
	claimed := make(chan error, 1)
	go func() {
		_, err := r.ten.Claim(ctx, Actor{Kind: ActorClaim, Name: "installer"},
			ClaimRequest{ISP: "beta", CustomerID: "c-1", Password: "old-leaked-pass", MAC: "02:00:00:00:04:01"})
		claimed <- err
	}()
	time.Sleep(500 * time.Millisecond) // verified, waiting for the lock
	r.ten.mu.Unlock()
	if err := <-updated; err != nil {
		t.Fatal(err)
	}
	err := <-claimed
	evs := r.events("beta")
	upd, clm := -1, -1
	for i, e := range evs {
		switch e.Kind {
		case "customer-updated":
			upd = i
		case "claimed":
			clm = i
		}
	}
	if clm >= 0 && upd >= 0 && upd > clm {
		t.Skip("the claim took the lock first: not the interleaving under test")
	}
	if err == nil {
		t.Errorf("claim with the old password attached the device after the password change was committed: events %v", kinds(evs))
	}
}

// TestSyncConfigHeldCustomer: a configuration entry held back (the API
// attached its MAC) makes no configuration customer (before, it made one
// that no sync ever removed and the API refused to delete: read-only).
func TestSyncConfigHeldCustomer(t *testing.T) {
	r := newRig(t)
	if _, err := r.ten.CreateCustomer(ctx, op, "beta", CustomerInput{ID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.AttachDevice(ctx, op, "beta", DeviceInput{MAC: "02:00:00:00:03:07", CustomerID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	m := subscribers.MAC{2, 0, 0, 0, 3, 7}
	rep, err := r.ten.SyncConfig([]ConfigDevice{{MAC: m, ISP: "alpha", CustomerID: "k-9"}})
	if err != nil || len(rep.Conflicts) != 1 {
		t.Fatalf("sync: %+v %v", rep, err)
	}
	// The entry leaves the file; two more reloads.
	for range 2 {
		if _, err := r.ten.SyncConfig(nil); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := r.store.Customer("alpha", "k-9"); err == nil {
		t.Errorf("customer alpha/k-9 (source %s) kept, though no configuration entry names it and no device uses it; counts %+v",
			c.Source, r.ten.Counts()["alpha"])
	}
	// A config customer left without devices (its entry gone, another
	// one's device detached through... here: made by a sync, its device
	// then moved by a sync to another customer) may be deleted.
	if _, err := r.ten.SyncConfig([]ConfigDevice{{MAC: subscribers.MAC{2, 0, 0, 0, 3, 8}, ISP: "alpha", CustomerID: "k-10"},
		{MAC: subscribers.MAC{2, 0, 0, 0, 3, 9}, ISP: "alpha", CustomerID: "k-10"}}); err != nil {
		t.Fatal(err)
	}
	if err := r.ten.DeleteCustomer(ctx, op, "alpha", "k-10"); !errors.Is(err, ErrConflict) {
		t.Errorf("deleting a config customer with devices: %v", err)
	}
	r.consistent()
}

// consistent checks that the registry, the admission set and the counts
// agree with the store.
func (r *rig) consistent() {
	r.t.Helper()
	n := 0
	devs := map[string]int{}
	perCust := map[subscribers.CustomerKey]int{}
	err := r.store.ForEachRegistration(func(g *subscribers.Registration) error {
		n++
		devs[g.ISP]++
		mac := binding.MAC48(g.MAC)
		e, ok := r.reg.Lookup(mac)
		if !ok {
			r.t.Errorf("store has %s (%s/%s), registry does not", macString(g.MAC), g.ISP, g.CustomerID)
			return nil
		}
		if e.ISP != g.ISP || e.CustomerID != g.CustomerID || e.Access != g.Access || e.Blocked != g.Blocked || e.Source != g.Source {
			r.t.Errorf("%s: store %+v, registry %+v", macString(g.MAC), *g, e)
		}
		if !r.adm.has(mac) {
			r.t.Errorf("%s not admitted", macString(g.MAC))
		}
		if g.CustomerID != "" {
			perCust[subscribers.CustomerKey{ISP: g.ISP, ID: g.CustomerID}]++
			c, err := r.store.Customer(g.ISP, g.CustomerID)
			if err != nil {
				r.t.Errorf("%s: customer %s/%s: %v", macString(g.MAC), g.ISP, g.CustomerID, err)
			} else if susp := c.Status == string(StatusSuspended); susp != e.Suspended() {
				r.t.Errorf("%s: customer %s/%s status %s, registry suspended %v", macString(g.MAC), g.ISP, g.CustomerID, c.Status, e.Suspended())
			}
		}
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	if r.reg.Len() != n {
		r.t.Errorf("registry holds %d MACs, store %d", r.reg.Len(), n)
	}
	cs, err := r.store.AllCustomers()
	if err != nil {
		r.t.Fatal(err)
	}
	custs := map[string]int{}
	for _, c := range cs {
		custs[c.ISP]++
		if c.Source != SourceConfig && perCust[subscribers.CustomerKey{ISP: c.ISP, ID: c.ID}] > c.DeviceLimit {
			r.t.Errorf("customer %s/%s: %d devices, limit %d", c.ISP, c.ID, perCust[subscribers.CustomerKey{ISP: c.ISP, ID: c.ID}], c.DeviceLimit)
		}
	}
	for isp, got := range r.ten.Counts() {
		if got.Customers != custs[isp] || got.Devices != devs[isp] {
			r.t.Errorf("counts of %s: %d customers %d devices; store %d, %d", isp, got.Customers, got.Devices, custs[isp], devs[isp])
		}
	}
}

// TestConcurrentWritersConsistent runs every writer concurrently (8
// goroutines, 300 random calls each) and checks the store, the registry,
// the admission set, the suspension flags, the device limits and the
// counts agree.
func TestConcurrentWritersConsistent(t *testing.T) {
	r := newRig(t)
	isps := []string{"alpha", "beta"}
	macOf := func(i int) string { return fmt.Sprintf("02:00:00:00:00:%02x", i) }
	custOf := func(i int) string { return fmt.Sprintf("c-%d", i) }
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(g), 1))
			for range 300 {
				isp := isps[rnd.IntN(2)]
				c := custOf(rnd.IntN(6))
				m := macOf(rnd.IntN(20))
				switch rnd.IntN(10) {
				case 0:
					st := []Status{StatusActive, StatusSuspended}[rnd.IntN(2)]
					r.ten.CreateCustomer(ctx, op, isp, CustomerInput{ID: c, Status: st, DeviceLimit: 2})
				case 1:
					st := []Status{StatusActive, StatusSuspended}[rnd.IntN(2)]
					r.ten.UpdateCustomer(ctx, op, isp, c, CustomerPatch{Status: &st})
				case 2:
					r.ten.DeleteCustomer(ctx, op, isp, c)
				case 3, 4:
					r.ten.AttachDevice(ctx, op, isp, DeviceInput{MAC: m, CustomerID: c})
				case 5:
					r.ten.DetachDevice(ctx, op, "", m)
				case 6:
					r.ten.Move(ctx, op, m, MoveRequest{ISP: isp, CustomerID: c, Immediate: rnd.IntN(2) == 0})
				case 7:
					r.ten.Block(ctx, op, m, rnd.IntN(2) == 0)
				case 8:
					var ins []CustomerInput
					for range 3 {
						st := []Status{StatusActive, StatusSuspended}[rnd.IntN(2)]
						ins = append(ins, CustomerInput{ID: custOf(rnd.IntN(6)), Status: st, DeviceLimit: 2})
					}
					r.ten.ImportCustomers(ctx, op, isp, 1, ins)
				case 9:
					var devs []ConfigDevice
					for i := range rnd.IntN(4) {
						mm, _ := parseMAC(macOf(20 + i))
						devs = append(devs, ConfigDevice{MAC: mm, ISP: isps[rnd.IntN(2)], CustomerID: fmt.Sprintf("k-%d", rnd.IntN(3))})
					}
					if rnd.IntN(3) == 0 {
						mm, _ := parseMAC(m)
						devs = append(devs, ConfigDevice{MAC: mm, ISP: isp, CustomerID: c})
					}
					r.ten.SyncConfig(devs)
				}
			}
		})
	}
	wg.Wait()
	r.consistent()
}

// TestImportSuspendEvent: suspending a customer through an import line
// ends its bindings as PATCH does, and records a suspended event naming
// it, as PATCH does (before, only the batch's customer-updated, naming no
// customer).
func TestImportSuspendEvent(t *testing.T) {
	r := newRig(t)
	if _, err := r.ten.CreateCustomer(ctx, op, "beta", CustomerInput{ID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.AttachDevice(ctx, op, "beta", DeviceInput{MAC: "02:00:00:00:05:01", CustomerID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	r.px.take()
	if res := r.ten.ImportCustomer(ctx, beta, "beta", 1, CustomerInput{ID: "c-1", Status: StatusSuspended}); res.Result != "updated" {
		t.Fatalf("import: %+v", res)
	}
	if got := r.px.take(); len(got) != 1 {
		t.Fatalf("revalidated %v", got)
	}
	for _, e := range r.events("beta") {
		if e.Kind == "suspended" && e.CustomerID == "c-1" {
			return
		}
	}
	t.Errorf("c-1 suspended by an import, its binding ended, but no suspended event: %v", kinds(r.events("beta")))
}

// TestImportSuspendsInOneRevalidation: an import suspending many customers
// has their devices revalidated in one call, whose revocations the proxy
// runs side by side; one call per customer ran them one durable
// transaction after the other (a trial's 50k-line suspension: 160 s; a
// review found the proxy's fan-out never reached by the import).
func TestImportSuspendsInOneRevalidation(t *testing.T) {
	r := newRig(t)
	var ins []CustomerInput
	for i := range 5 {
		id := fmt.Sprintf("c-%d", i)
		if _, err := r.ten.CreateCustomer(ctx, op, "beta", CustomerInput{ID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ten.AttachDevice(ctx, op, "beta", DeviceInput{MAC: fmt.Sprintf("02:00:00:00:06:%02x", i), CustomerID: id}); err != nil {
			t.Fatal(err)
		}
		ins = append(ins, CustomerInput{ID: id, Status: StatusSuspended})
	}
	r.px.take()
	r.px.mu.Lock()
	r.px.calls = 0
	r.px.mu.Unlock()
	for _, res := range r.ten.ImportCustomers(ctx, beta, "beta", 1, ins) {
		if res.Result != "updated" {
			t.Fatalf("import: %+v", res)
		}
	}
	r.px.mu.Lock()
	calls := r.px.calls
	r.px.mu.Unlock()
	if got := r.px.take(); len(got) != 5 || calls != 1 {
		t.Errorf("revalidated %d MACs in %d calls, want 5 in 1", len(got), calls)
	}
}

// TestSyncConfigEvents: a configuration sync that attaches, moves and
// removes devices records their events by the configuration, as the API's
// own changes do (before, none: an ISP never heard that a reload moved its
// customer's device away). A sync of more than syncEventMax changes
// records one event per ISP and kind, with the count.
func TestSyncConfigEvents(t *testing.T) {
	r := newRig(t)
	m := subscribers.MAC{2, 0, 0, 0, 3, 1}
	if _, err := r.ten.SyncConfig([]ConfigDevice{{MAC: m, ISP: "alpha", CustomerID: "k-1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.SyncConfig([]ConfigDevice{{MAC: m, ISP: "beta", CustomerID: "k-2"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.SyncConfig(nil); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"alpha": {"device-attached", "moved"}, "beta": {"device-attached", "device-detached"}}
	for isp, kinds := range want {
		var got []string
		for _, e := range r.events(isp) {
			if e.MAC == "02:00:00:00:03:01" {
				if e.Actor != "config" {
					t.Errorf("%s: %s by %q", isp, e.Kind, e.Actor)
				}
				got = append(got, e.Kind)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(kinds) {
			t.Errorf("%s's events of the device: %v, want %v", isp, got, kinds)
		}
	}
	// A large sync: one event per ISP and kind.
	var devs []ConfigDevice
	for i := range syncEventMax + 1 {
		devs = append(devs, ConfigDevice{MAC: subscribers.MAC{2, 1, 0, byte(i >> 16), byte(i >> 8), byte(i)}, ISP: []string{"alpha", "beta"}[i%2]})
	}
	before := len(r.events("alpha")) + len(r.events("beta"))
	if _, err := r.ten.SyncConfig(devs); err != nil {
		t.Fatal(err)
	}
	if n := len(r.events("alpha")) + len(r.events("beta")) - before; n != 2 {
		t.Errorf("a sync of %d additions recorded %d events, want one per ISP", len(devs), n)
	}
}

// TestSyncConfigDeviceLimit: a configuration entry naming an API
// customer is held to that customer's device limit as an API attach is:
// entries past it are not applied and are reported (before, a reload
// attached them all, past the limit the ISP set; the flake of
// TestConcurrentWritersConsistent). An entry the customer already has
// keeps its place ahead of new ones.
func TestSyncConfigDeviceLimit(t *testing.T) {
	r := newRig(t)
	if _, err := r.ten.CreateCustomer(ctx, op, "beta", CustomerInput{ID: "c-1", DeviceLimit: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.AttachDevice(ctx, op, "beta", DeviceInput{MAC: "02:00:00:00:04:01", CustomerID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	m := func(b byte) subscribers.MAC { return subscribers.MAC{2, 0, 0, 0, 4, b} }
	rep, err := r.ten.SyncConfig([]ConfigDevice{{MAC: m(2), ISP: "beta", CustomerID: "c-1"}})
	if err != nil || len(rep.Conflicts) != 0 || rep.Added != 1 {
		t.Fatalf("sync within the limit: %+v %v", rep, err)
	}
	// m(3) comes first in the file, but m(2) is already the customer's:
	// m(2) stays, m(3) is refused.
	rep, err = r.ten.SyncConfig([]ConfigDevice{{MAC: m(3), ISP: "beta", CustomerID: "c-1"}, {MAC: m(2), ISP: "beta", CustomerID: "c-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Conflicts) != 1 || !strings.Contains(rep.Conflicts[0], "02:00:00:00:04:03") || !strings.Contains(rep.Conflicts[0], "device limit") {
		t.Errorf("conflicts %q, want one naming 02:00:00:00:04:03 and the device limit", rep.Conflicts)
	}
	devs, err := r.store.DevicesOf("beta", "c-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 {
		t.Errorf("customer beta/c-1 (limit 2) has %d devices: %v", len(devs), devs)
	}
	if _, err := r.store.Registration(m(3)); err == nil {
		t.Errorf("02:00:00:00:04:03 registered past the limit")
	}
	if _, err := r.store.Registration(m(2)); err != nil {
		t.Errorf("02:00:00:00:04:02, the customer's config device within the limit, lost: %v", err)
	}
	r.consistent()
}

// TestImportEventPerCustomer: an import's creates, reactivations and other
// changes each have the customer's own event, as a POST or PATCH gives
// it. Before, a batch had one customer-updated event naming no customer
// ("import lines 1..3: 2 created, 1 updated"): an ISP mirroring its
// customers from the feed could not tell which ones another client's
// import created or gave service back (a trial).
func TestImportEventPerCustomer(t *testing.T) {
	r := newRig(t)
	if _, err := r.ten.CreateCustomer(ctx, op, "beta", CustomerInput{ID: "c-old", Status: StatusSuspended}); err != nil {
		t.Fatal(err)
	}
	before := len(r.events("beta"))
	res := r.ten.ImportCustomers(ctx, beta, "beta", 1, []CustomerInput{
		{ID: "c-new1"}, {ID: "c-new2", DeviceLimit: 3}, {ID: "c-old", Status: StatusActive, DeviceLimit: 2},
	})
	for _, x := range res {
		if x.Error != "" {
			t.Fatalf("import: %+v", res)
		}
	}
	got := map[string]string{}
	for _, e := range r.events("beta")[before:] {
		if e.CustomerID == "" {
			t.Errorf("an import event naming no customer: %+v", e)
			continue
		}
		got[e.CustomerID] = e.Kind + ": " + e.Reason
	}
	want := map[string]string{
		"c-new1": "customer-created: status active (import line 1)",
		"c-new2": "customer-created: status active (import line 2)",
		"c-old":  "reactivated: status active, device limit 2 (import line 3)",
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: event %q, want %q", id, got[id], w)
		}
	}
}
