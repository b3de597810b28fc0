package tenants

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// One ISP's tenant attaching made-up MACs took every place of the box's
// device cap (datapath.mac_table_size): every other ISP's attaches, claims
// and imports were refused until the operator stepped in (a hostile-ISP
// trial). With several ISPs, what an ISP's own token, its customers'
// claims and imports attach is held to three quarters of the cap, as one
// ISP's share of max_pending is: the other ISPs keep a quarter. The
// operator is not held to it.
func TestISPDeviceShare(t *testing.T) {
	st, err := subscribers.Open(filepath.Join(t.TempDir(), "s.db"), subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ten := New(Config{ISPs: []string{"alpha", "beta"}, MaxDevices: 8}, st, registry.New(), &fakeProxy{}, &fakeAdm{set: map[uint64]bool{}}, nil)
	if err := ten.Load(); err != nil {
		t.Fatal(err)
	}
	alpha := Actor{Kind: ActorISP, Name: "alpha-token", ISP: "alpha"}
	beta := Actor{Kind: ActorISP, Name: "beta-token", ISP: "beta"}
	for _, c := range []struct {
		a   Actor
		isp string
	}{{alpha, "alpha"}, {beta, "beta"}} {
		if _, err := ten.CreateCustomer(ctx, c.a, c.isp, CustomerInput{ID: "c-1", DeviceLimit: 64}); err != nil {
			t.Fatal(err)
		}
	}
	attached := 0
	for i := range 8 {
		_, err := ten.AttachDevice(ctx, alpha, "alpha", DeviceInput{MAC: fmt.Sprintf("02:00:00:00:0a:%02x", i), CustomerID: "c-1"})
		if err == nil {
			attached++
		} else if !errors.Is(err, ErrConflict) {
			t.Fatalf("attach %d: %v", i, err)
		}
	}
	if attached != 6 {
		t.Errorf("alpha's token attached %d made-up MACs of a cap of 8, want 6 (three quarters)", attached)
	}
	// An import is held to it too.
	res := ten.ImportDevices(ctx, alpha, "alpha", 1, []DeviceInput{{MAC: "02:00:00:00:0a:10", CustomerID: "c-1"}})
	if len(res) != 1 || res[0].Result != "error" {
		t.Errorf("alpha's import past its share: %+v, want refused", res)
	}
	if _, err := ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: "02:00:00:00:0b:01", CustomerID: "c-1"}); err != nil {
		t.Fatalf("beta's first device, alpha having attached all it could: %v", err)
	}
	// The operator is not held to an ISP's share (the box's cap stays).
	if _, err := ten.AttachDevice(ctx, op, "alpha", DeviceInput{MAC: "02:00:00:00:0a:20", CustomerID: "c-1"}); err != nil {
		t.Errorf("the operator's attach to alpha past alpha's share: %v", err)
	}
}
