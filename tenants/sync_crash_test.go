package tenants

import (
	"testing"

	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// TestCrashMidSyncConfig: a reload removes configuration device m(2), the
// last device of configuration customer k-2, which the file no longer
// names. SyncConfig writes this in two transactions: the registrations,
// then the customer records. ispmux is killed between the two (no
// failpoint there; the state is made here by the first transaction alone,
// with SyncConfig's own options, as the crash leaves it), and restarted
// with the same file. The start's sync found nothing to change in the
// registrations, so it neither removed k-2 nor recorded m(2)'s
// device-detached (the sync's events were in the second transaction): k-2
// stayed for good (a configuration customer with no device, counted,
// read-only to the ISP's API) and the event log lacked the change that
// happened. The events are now in the first transaction, which also
// records the customers left (SyncDiff.Left) until the second clears them.
func TestCrashMidSyncConfig(t *testing.T) {
	r := newRig(t)
	m := func(b byte) subscribers.MAC { return subscribers.MAC{2, 0, 0, 0, 1, b} }
	first := []ConfigDevice{{MAC: m(1), ISP: "alpha", CustomerID: "k-1"}, {MAC: m(2), ISP: "alpha", CustomerID: "k-2"}}
	if _, err := r.ten.SyncConfig(first); err != nil {
		t.Fatal(err)
	}
	// The reload's first transaction, then the crash.
	reload := []subscribers.Registration{{MAC: m(1), CustomerID: "k-1", ISP: "alpha", Source: SourceConfig}}
	if _, err := r.store.SyncRegistrationsWith(SourceConfig, reload, configSyncOptions()); err != nil {
		t.Fatal(err)
	}
	// Restart: a new service on the same store, the same file.
	ten := New(Config{ISPs: []string{"alpha", "beta"}, MaxDevices: 100}, r.store, registry.New(), &fakeProxy{}, &fakeAdm{set: map[uint64]bool{}}, nil)
	if _, err := ten.SyncConfig([]ConfigDevice{{MAC: m(1), ISP: "alpha", CustomerID: "k-1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.Customer("alpha", "k-2"); err == nil {
		t.Errorf("k-2 (no device left, no longer in the file) kept after the restart; counts %+v", ten.Counts())
	}
	if d, err := r.store.SyncRegistrationsWith(SourceConfig, reload, configSyncOptions()); err != nil || len(d.Left) != 0 {
		t.Errorf("left customers still recorded after the restart's sync dealt with them: %v %v", d.Left, err)
	}
	evs, err := r.store.Events(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	detached := false
	for _, e := range evs {
		if e.Kind == subscribers.EventDeviceDetached && e.MAC == m(2) {
			detached = true
		}
	}
	if !detached {
		t.Error("no device-detached event for m(2), removed from the configuration: the change happened, its event is lost")
	}
}
