package tenants

import (
	"testing"

	"github.com/ispmux/ispmux/subscribers"
)

// GET /v1/devices?customer_id= (operator) answered one page "as a
// customer's devices are few (its device limit)"; but a configuration
// customer (created by SyncConfig with device_limit 64) has as many
// devices as the file gives it (no limit is enforced on [[subscriber]]
// entries), and the page ignored ?limit= (at most MaxLimit, docs/API.md)
// and ?after=: 300 devices came back in one answer to limit=10, with no
// cursor. It is paged like any list now.
func TestOperatorDevicesOfCustomerPaged(t *testing.T) {
	r := newRig(t)
	var devs []ConfigDevice
	for i := range 300 {
		devs = append(devs, ConfigDevice{MAC: subscribers.MAC{2, 0, 0, 0, byte(i >> 8), byte(i)}, ISP: "alpha", CustomerID: "building-1"})
	}
	if _, err := r.ten.SyncConfig(devs); err != nil {
		t.Fatal(err)
	}
	p, err := r.ten.Devices(ctx, "", "building-1", ListOptions{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) > 10 {
		t.Errorf("limit=10 answered %d devices in one page (next %q)", len(p.Items), p.Next)
	}
}

// The pages together list every device once.
func TestOperatorDevicesOfCustomerAllPages(t *testing.T) {
	r := newRig(t)
	var devs []ConfigDevice
	for i := range 25 {
		devs = append(devs, ConfigDevice{MAC: subscribers.MAC{2, 0, 0, 0, 0, byte(i)}, ISP: []string{"alpha", "beta"}[i%2], CustomerID: "c-1"})
	}
	if _, err := r.ten.SyncConfig(devs); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	o := ListOptions{Limit: 4}
	for range 20 {
		p, err := r.ten.Devices(ctx, "", "c-1", o)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range p.Items {
			if seen[d.MAC] {
				t.Fatalf("%s twice", d.MAC)
			}
			seen[d.MAC] = true
		}
		if p.Next == "" {
			break
		}
		o.After = p.Next
	}
	if len(seen) != 25 {
		t.Errorf("listed %d devices, want 25", len(seen))
	}
}
