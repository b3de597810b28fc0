package tenants

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ispmux/ispmux/registry"
)

// TestPurgeISP: the customers and devices of an ISP the configuration no
// longer has are removed by the operator's purge, 512 a transaction, each
// with its events; the devices' MACs are free for another ISP after it; a
// device the operator blocked stays blocked, ownerless. Before, they stayed
// in the store for good, the MACs taken (an attach elsewhere refused), and
// no route reached them (404 for an ISP not configured).
func TestPurgeISP(t *testing.T) {
	r := newRig(t)
	const n = 600 // more than one transaction
	for i := range n {
		id := fmt.Sprintf("c-%d", i)
		if _, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: id, DeviceLimit: 2}); err != nil {
			t.Fatal(err)
		}
		if i < 3 {
			if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: fmt.Sprintf("02:00:00:00:00:%02x", i+1), CustomerID: id}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := r.ten.Block(ctx, op, "02:00:00:00:00:03", true); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.PurgeISP(ctx, op, "beta"); !errors.Is(err, ErrConflict) {
		t.Fatalf("purge of a configured ISP: %v, want ErrConflict", err)
	}
	// beta taken out of the configuration: a restart.
	ten := New(Config{ISPs: []string{"alpha"}, MaxDevices: 100}, r.store, registry.New(), r.px, r.adm, nil)
	if err := ten.Load(); err != nil {
		t.Fatal(err)
	}
	if _, err := ten.CreateCustomer(ctx, op, "alpha", CustomerInput{ID: "a-1", DeviceLimit: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := ten.AttachDevice(ctx, op, "alpha", DeviceInput{MAC: "02:00:00:00:00:01", CustomerID: "a-1"}); !errors.Is(err, ErrDeviceTaken) {
		t.Fatalf("attach of a removed ISP's device before the purge: %v, want ErrDeviceTaken", err)
	}
	if _, err := ten.PurgeISP(ctx, beta, "beta"); !errors.Is(err, ErrForbidden) {
		t.Errorf("purge by an ISP's token: %v, want ErrForbidden", err)
	}
	seqBefore, err := r.store.LastEventSeq()
	if err != nil {
		t.Fatal(err)
	}
	res, err := ten.PurgeISP(ctx, op, "beta")
	if err != nil {
		t.Fatal(err)
	}
	if res.Customers != n || res.Devices != 3 {
		t.Errorf("purged %+v, want %d customers, 3 devices", res, n)
	}
	if cs, _, err := r.store.Customers("beta", "", 10); err != nil || len(cs) != 0 {
		t.Errorf("beta's customers after the purge: %d, %v", len(cs), err)
	}
	for _, m := range []string{"02:00:00:00:00:01", "02:00:00:00:00:02"} {
		if _, err := ten.AttachDevice(ctx, op, "alpha", DeviceInput{MAC: m, CustomerID: "a-1"}); err != nil {
			t.Errorf("attach of %s after the purge: %v", m, err)
		}
	}
	if d, err := ten.Device(ctx, "", "02:00:00:00:00:03"); err != nil || !d.Blocked || d.ISP != "" {
		t.Errorf("the blocked device after the purge: %+v, %v; want blocked, of no ISP", d, err)
	}
	// One event a batch (600 customers: 2), not one per customer and
	// device: a purge of 100k customers wrote 200k, and the log, trimmed
	// by count over every ISP, lost every other ISP's events (a trial).
	evs, err := r.store.Events(seqBefore, 2000)
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	blocked := 0
	for _, e := range evs {
		switch e.Kind {
		case "customer-deleted":
			deleted = append(deleted, e.Reason)
		case "device-blocked":
			blocked++
		}
	}
	if len(deleted) != 2 || !strings.Contains(deleted[0], "customers deleted: 512, devices detached: 3") ||
		!strings.Contains(deleted[1], "customers deleted: 88, devices detached: 0") || blocked != 1 {
		t.Errorf("events: customer-deleted %q, device-blocked %d; want one a batch (512 and 88 customers), the block kept", deleted, blocked)
	}
	if _, err := ten.PurgeISP(ctx, op, "beta"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a second purge: %v, want ErrNotFound", err)
	}
}
