package tenants

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/crashtest"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

const (
	suspendCrashEnv = "TENANTS_SUSPEND_CRASH_CHILD"
	purgeCrashEnv   = "TENANTS_PURGE_CRASH_CHILD"
)

// runTicks runs the proxy's timers (intents sent, leases expired) for a
// few ticks: 700 ms, and on until no intent is left unsent (at most 30 s
// more), since a loaded machine may not reach the ticks that send them
// in a fixed time (TestCrashMidDeviceImport saw its release intents
// still pending after 700 ms at a load average of 14).
func (r *pinRig) runTicks() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.px.Run(ctx)
	}()
	time.Sleep(700 * time.Millisecond)
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if ins, err := r.st.Intents(); err == nil && len(ins) == 0 {
			break
		}
	}
	cancel()
	<-done
}

// TestCrashMidSuspension: alpha suspends the customer of a bound device
// and ispmux is SIGKILLed once the suspension is durable, before the
// registry knows it and before the device's binding is revoked. Restarted
// (twice), the binding does not forward again: it is revoked at the
// start, with its revoked event ("customer suspended") and one RELEASE to
// alpha on the device's behalf, the first time only; the device's next
// DISCOVER is not relayed (no garden on this access: silence, as for any
// suspended customer).
func TestCrashMidSuspension(t *testing.T) {
	const m = "02:00:00:00:00:07"
	hw := [6]byte(mustMAC(m))
	if path := os.Getenv(suspendCrashEnv); path != "" {
		r := newPinRigAt(t, path)
		if n, err := r.px.Restore(time.Now()); err != nil || n != 1 {
			t.Fatalf("child: restore %d, %v", n, err)
		}
		suspended := StatusSuspended
		_, _ = r.ten.UpdateCustomer(ctx, Actor{Kind: ActorISP, Name: "alpha-token", ISP: "alpha"}, "alpha", "a-1", CustomerPatch{Status: &suspended})
		t.Fatal("child: the failpoint was not hit")
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	// The store the child starts from (a failpoint counts every hit in
	// the process: the child only suspends).
	path := filepath.Join(t.TempDir(), "s.db")
	seed := newPinRigAt(t, path)
	if _, err := seed.ten.CreateCustomer(ctx, op, "alpha", CustomerInput{ID: "a-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := seed.ten.AttachDevice(ctx, op, "alpha", DeviceInput{MAC: m, CustomerID: "a-1"}); err != nil {
		t.Fatal(err)
	}
	if err := seed.st.CommitBinding(subscribers.Binding{MAC: hw, Access: "acc0", ISP: "alpha", Customer: "a-1",
		IP: netip.MustParseAddr("198.51.100.7"), ServerID: netip.MustParseAddr("203.0.113.1"), Relay: netip.MustParseAddr("203.0.113.1"),
		Expires: time.Now().Add(time.Hour), LeaseTime: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := seed.st.Close(); err != nil {
		t.Fatal(err)
	}
	crashtest.KillAt(t, "TestCrashMidSuspension", suspendCrashEnv+"="+path, failpoint.TenantAfterCommit)
	for restart := 1; restart <= 2; restart++ {
		r := newPinRigAt(t, path)
		if n, err := r.px.Restore(time.Now()); err != nil || n != 0 {
			t.Errorf("restart %d: restored %d bindings, %v; want none (the customer is suspended)", restart, n, err)
		}
		r.runTicks()
		if _, err := r.st.Binding("acc0", 0, hw); !errors.Is(err, subscribers.ErrNotFound) {
			t.Errorf("restart %d: the suspended customer's binding is stored: %v", restart, err)
		}
		if r.tab.isBound(mac48(m)) {
			t.Errorf("restart %d: the suspended customer's device forwards", restart)
		}
		sent := r.snd.take(pinUpPort)
		want := 0
		if restart == 1 {
			want = 1
		}
		releases := 0
		for _, mt := range sent {
			if mt == dhcpv4.MessageTypeRelease {
				releases++
			}
		}
		if releases != want || len(sent) != want {
			t.Errorf("restart %d: sent alpha %v, want %d RELEASE", restart, sent, want)
		}
		if ins, _ := r.st.Intents(); len(ins) != 0 {
			t.Errorf("restart %d: intents %+v pending", restart, ins)
		}
		evs, err := r.st.Events(0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var revoked, suspendedEv int
		for _, e := range evs {
			switch e.Kind {
			case subscribers.EventRevoked:
				revoked++
				if !strings.Contains(e.Reason, "customer suspended") {
					t.Errorf("revoked event %+v, want the suspension as its reason", e)
				}
			case subscribers.EventSuspended:
				suspendedEv++
			}
		}
		if revoked != 1 || suspendedEv != 1 {
			t.Errorf("restart %d: %d revoked and %d suspended events, want one each", restart, revoked, suspendedEv)
		}
		if got := r.discover(m, 0); len(got) != 0 {
			t.Errorf("restart %d: the suspended customer's DISCOVER was relayed: %v", restart, got)
		}
		if err := r.st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCrashMidPurge: the operator purges an ISP no longer configured, of
// 1100 customers (three batches), each with a device, and ispmux is
// SIGKILLed after the second batch is durable, before it is published.
// Restarted, the two batches are gone with their devices and their two
// customer-deleted events, the rest are as they were (none half-deleted:
// a device of a purged customer without its customer, or the reverse),
// and the registry loaded from the store agrees; a second purge removes
// the rest and leaves nothing of the ISP.
func TestCrashMidPurge(t *testing.T) {
	const n = 1100
	macOf := func(i int) string { return fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff) }
	if path := os.Getenv(purgeCrashEnv); path != "" {
		// beta is no longer in the configuration.
		st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		ten := New(Config{ISPs: []string{"alpha"}, MaxDevices: 10 * n}, st, registry.New(), &fakeProxy{}, &fakeAdm{set: map[uint64]bool{}}, nil)
		if err := ten.Load(); err != nil {
			t.Fatal(err)
		}
		_, _ = ten.PurgeISP(ctx, op, "beta")
		t.Fatal("child: the failpoint was not hit")
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	// The store the child starts from: beta's customers and devices.
	path := filepath.Join(t.TempDir(), "s.db")
	seed, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	seedTen := New(Config{ISPs: []string{"alpha", "beta"}, MaxDevices: 10 * n}, seed, registry.New(), &fakeProxy{}, &fakeAdm{set: map[uint64]bool{}}, nil)
	if err := seedTen.Load(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("c-%04d", i)
		if _, err := seedTen.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := seedTen.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: macOf(i), CustomerID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if err := seed.Close(); err != nil {
		t.Fatal(err)
	}
	crashtest.KillAt(t, "TestCrashMidPurge", purgeCrashEnv+"="+path, failpoint.TenantAfterCommit+"@2")
	st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := registry.New()
	ten := New(Config{ISPs: []string{"alpha"}, MaxDevices: 10 * n}, st, reg, &fakeProxy{}, &fakeAdm{set: map[uint64]bool{}}, nil)
	if err := ten.Load(); err != nil {
		t.Fatal(err)
	}
	left := n - 2*purgeBatchSize
	cs, _, err := st.Customers("beta", "", 2*n)
	if err != nil || len(cs) != left {
		t.Fatalf("customers after the crash: %d, %v; want %d (two batches of %d purged)", len(cs), err, left, purgeBatchSize)
	}
	kept := map[string]bool{}
	for _, c := range cs {
		kept[c.ID] = true
	}
	for i := range n {
		id := fmt.Sprintf("c-%04d", i)
		reg, err := st.Registration([6]byte(mustMAC(macOf(i))))
		e, inReg := ten.reg.Lookup(mac48(macOf(i)))
		switch {
		case kept[id] && (err != nil || reg.CustomerID != id || !inReg || e.CustomerID != id):
			t.Fatalf("customer %s kept, its device %s: stored %+v %v, registry %+v %v", id, macOf(i), reg, err, e, inReg)
		case !kept[id] && (!errors.Is(err, subscribers.ErrNotFound) || inReg):
			t.Fatalf("customer %s purged, its device %s: stored %+v %v, registry %+v %v", id, macOf(i), reg, err, e, inReg)
		}
	}
	deleted := func() int {
		evs, err := st.Events(0, 10*n)
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for _, e := range evs {
			if e.Kind == subscribers.EventCustomerDeleted && e.ISP == "beta" {
				k++
			}
		}
		return k
	}
	if k := deleted(); k != 2 {
		t.Errorf("%d customer-deleted events after the crash, want 2 (one a batch)", k)
	}
	res, err := ten.PurgeISP(ctx, op, "beta")
	if err != nil || res.Customers != left || res.Devices != left {
		t.Fatalf("the second purge: %+v, %v; want %d customers and devices", res, err, left)
	}
	if cs, _, err := st.Customers("beta", "", 10); err != nil || len(cs) != 0 {
		t.Errorf("beta's customers after the second purge: %d, %v", len(cs), err)
	}
	if ds, _, err := st.Devices("beta", "", "", 10); err != nil || len(ds) != 0 {
		t.Errorf("beta's devices after the second purge: %d, %v", len(ds), err)
	}
	if k := deleted(); k != 3 {
		t.Errorf("%d customer-deleted events in all, want 3", k)
	}
}
