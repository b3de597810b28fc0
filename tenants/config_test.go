package tenants

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// TestSyncConfigIncremental: a sync after the first load publishes its
// changes alone (added, moved, blocked, removed), reports the MACs it
// touched, keeps the counts a full reload would give, and removes the
// configuration customer whose last device went.
func TestSyncConfigIncremental(t *testing.T) {
	r := newRig(t)
	m := func(b byte) subscribers.MAC { return subscribers.MAC{2, 0, 0, 0, 1, b} }
	rep, err := r.ten.SyncConfig([]ConfigDevice{
		{MAC: m(1), ISP: "alpha", CustomerID: "k-1"},
		{MAC: m(2), ISP: "alpha", CustomerID: "k-2"},
		{MAC: m(3), ISP: "beta", CustomerID: "k-3"},
	})
	if err != nil || rep.Added != 3 || len(rep.Touched) != 3 {
		t.Fatalf("first sync: %+v, %v", rep, err)
	}
	// m(1) unchanged, m(2) moved to beta's k-3, m(3) blocked, m(4) new,
	// m(5)… none; k-2 has no device left and is no longer named.
	rep, err = r.ten.SyncConfig([]ConfigDevice{
		{MAC: m(1), ISP: "alpha", CustomerID: "k-1"},
		{MAC: m(2), ISP: "beta", CustomerID: "k-3"},
		{MAC: m(3), ISP: "beta", CustomerID: "k-3", Blocked: true},
		{MAC: m(4), ISP: "alpha", CustomerID: "k-4"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Added != 1 || rep.Changed != 2 || rep.Removed != 0 {
		t.Errorf("second sync: %+v", rep)
	}
	got := slices.Clone(rep.Touched)
	slices.Sort(got)
	want := []uint64{mac48("02:00:00:00:01:02"), mac48("02:00:00:00:01:03"), mac48("02:00:00:00:01:04")}
	if !slices.Equal(got, want) {
		t.Errorf("touched %x, want %x", got, want)
	}
	if e, ok := r.reg.Lookup(mac48("02:00:00:00:01:02")); !ok || e.ISP != "beta" || e.CustomerID != "k-3" {
		t.Errorf("moved device: %+v", e)
	}
	if e, ok := r.reg.Lookup(mac48("02:00:00:00:01:03")); !ok || !e.Blocked {
		t.Errorf("blocked device: %+v", e)
	}
	if !r.adm.set[mac48("02:00:00:00:01:04")] {
		t.Error("new device not admitted")
	}
	if _, err := r.store.Customer("alpha", "k-2"); err == nil {
		t.Error("k-2 (no device, no longer in the file) kept")
	}
	counts := r.ten.Counts()
	// Removing everything: unpublished and uncounted.
	rep, err = r.ten.SyncConfig(nil)
	if err != nil || rep.Removed != 4 {
		t.Fatalf("empty sync: %+v, %v", rep, err)
	}
	if r.reg.Len() != 0 || len(r.adm.set) != 0 {
		t.Errorf("registry %d, admitted %d after removing every device", r.reg.Len(), len(r.adm.set))
	}
	if c := r.ten.Counts(); c["alpha"].Devices != 0 || c["beta"].Devices != 0 || c["alpha"].Customers != 0 || c["beta"].Customers != 0 {
		t.Errorf("counts after removing everything %+v (before %+v)", c, counts)
	}
	// The incremental counts equal a full load's.
	if _, err := r.ten.SyncConfig([]ConfigDevice{{MAC: m(7), ISP: "beta", CustomerID: "k-7"}}); err != nil {
		t.Fatal(err)
	}
	inc := r.ten.Counts()
	if err := r.ten.Load(); err != nil {
		t.Fatal(err)
	}
	if full := r.ten.Counts(); full["beta"] != inc["beta"] || full["alpha"] != inc["alpha"] {
		t.Errorf("incremental counts %+v, full load %+v", inc, full)
	}
}

// TestLoadSuspendedAndGone: Load marks the devices of a suspended customer
// and drops from a non-empty registry the MACs the store no longer has.
func TestLoadSuspendedAndGone(t *testing.T) {
	r := newRig(t)
	if _, err := r.ten.SyncConfig([]ConfigDevice{{MAC: subscribers.MAC{2, 0, 0, 0, 2, 1}, ISP: "alpha", CustomerID: "s-1"}}); err != nil {
		t.Fatal(err)
	}
	c, err := r.store.Customer("alpha", "s-1")
	if err != nil {
		t.Fatal(err)
	}
	c.Status = string(StatusSuspended)
	if _, err := r.store.ApplyTenant(subscribers.TenantWrite{PutCustomers: []subscribers.Customer{c}}); err != nil {
		t.Fatal(err)
	}
	r.reg.Put(0x020000000999, registry.Entry{ISP: "beta"}, false) // not in the store
	if err := r.ten.Load(); err != nil {
		t.Fatal(err)
	}
	if e, ok := r.reg.Lookup(mac48("02:00:00:00:02:01")); !ok || !e.Suspended() {
		t.Errorf("suspended customer's device: %+v", e)
	}
	if _, ok := r.reg.Lookup(0x020000000999); ok {
		t.Error("a MAC the store does not have stayed in the registry")
	}
}

// TestLoadMany: a load of more registrations than one batch of the
// decode → publish pipeline (and a suspended customer's devices among
// them) publishes each one, once, as stored.
func TestLoadMany(t *testing.T) {
	st, err := subscribers.Open(filepath.Join(t.TempDir(), "s.db"), subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mk := func() (*Tenants, *registry.Registry, *fakeAdm) {
		reg, adm := registry.New(), &fakeAdm{set: map[uint64]bool{}}
		return New(Config{ISPs: []string{"alpha", "beta"}, MaxDevices: 1 << 20}, st, reg, &fakeProxy{}, adm, nil), reg, adm
	}
	ten, _, _ := mk()
	if err := ten.Load(); err != nil {
		t.Fatal(err)
	}
	const n = 10_007
	devs := make([]ConfigDevice, n)
	for i := range devs {
		devs[i] = ConfigDevice{MAC: subscribers.MAC{2, 1, 0, byte(i >> 16), byte(i >> 8), byte(i)},
			ISP: []string{"alpha", "beta"}[i%2], CustomerID: fmt.Sprintf("c-%d", i/3)}
	}
	if _, err := ten.SyncConfig(devs); err != nil {
		t.Fatal(err)
	}
	c, err := st.Customer("beta", "c-1")
	if err != nil {
		t.Fatal(err)
	}
	c.Status = string(StatusSuspended)
	if _, err := st.ApplyTenant(subscribers.TenantWrite{PutCustomers: []subscribers.Customer{c}}); err != nil {
		t.Fatal(err)
	}
	ten2, reg, adm := mk()
	if err := ten2.Load(); err != nil {
		t.Fatal(err)
	}
	if reg.Len() != n || len(adm.set) != n {
		t.Fatalf("registry %d, admitted %d, want %d", reg.Len(), len(adm.set), n)
	}
	for i, d := range devs {
		e, ok := reg.Lookup(binding.MAC48(d.MAC))
		susp := d.ISP == "beta" && d.CustomerID == "c-1"
		if !ok || e.ISP != d.ISP || e.CustomerID != d.CustomerID || e.Suspended() != susp || e.Source != SourceConfig {
			t.Fatalf("device %d: %+v %v suspended %v", i, e, ok, e.Suspended())
		}
	}
}

// TestStaticSubscribersShown: a static subscriber of the configuration
// (no DHCP binding in the store) shows its address on its device and is
// counted per ISP, so that the views do not call it unbound (ctl
// subscriber said "binding: none" of a static subscriber forwarding, and
// ctl isps counted it nowhere; found by a new-user trial). A reload that
// drops the address drops it from the views.
func TestStaticSubscribersShown(t *testing.T) {
	r := newRig(t)
	ip := netip.MustParseAddr("100.64.0.9")
	static := ConfigDevice{MAC: subscribers.MAC{2, 0, 0, 0, 1, 1}, ISP: "alpha", StaticIP: ip}
	dhcp := ConfigDevice{MAC: subscribers.MAC{2, 0, 0, 0, 1, 2}, ISP: "alpha", CustomerID: "c-2"}
	if _, err := r.ten.SyncConfig([]ConfigDevice{static, dhcp}); err != nil {
		t.Fatal(err)
	}
	d, err := r.ten.Device(ctx, "", "02:00:00:00:01:01")
	if err != nil || d.StaticIP != ip {
		t.Errorf("static device: %+v %v, want static_ip %v", d, err, ip)
	}
	if d, _ := r.ten.Device(ctx, "", "02:00:00:00:01:02"); d.StaticIP.IsValid() {
		t.Errorf("DHCP device shows static_ip %v", d.StaticIP)
	}
	if p, err := r.ten.Devices(ctx, "alpha", "", ListOptions{}); err != nil || len(p.Items) != 2 {
		t.Fatalf("devices: %+v %v", p.Items, err)
	} else if p.Items[0].StaticIP.IsValid() == p.Items[1].StaticIP.IsValid() {
		t.Errorf("list: %+v, want one static", p.Items)
	}
	isps, err := r.ten.ISPs(ctx)
	if err != nil || isps[0].Name != "alpha" || isps[0].Static != 1 || isps[1].Static != 0 {
		t.Errorf("ISPs %+v %v, want alpha with 1 static", isps, err)
	}
	static.StaticIP = netip.Addr{}
	if _, err := r.ten.SyncConfig([]ConfigDevice{static, dhcp}); err != nil {
		t.Fatal(err)
	}
	if d, _ := r.ten.Device(ctx, "", "02:00:00:00:01:01"); d.StaticIP.IsValid() {
		t.Errorf("after the reload: static_ip %v", d.StaticIP)
	}
	if isps, _ := r.ten.ISPs(ctx); isps[0].Static != 0 {
		t.Errorf("after the reload: %+v", isps)
	}
}
