package tenants

import (
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/dhcpproxy"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// pinCircuits are the access circuits of the pin tests: acc0 untagged and
// acc1 on VLAN 5 of the same port.
var pinCircuits = []Circuit{{Access: "acc0"}, {Access: "acc1", VLAN: 5}}

func strp(s string) *string { return &s }

// The access pin of an attached device is set, changed and cleared with
// UpdateDevice (PATCH …/devices/{mac}), by the device's ISP or the
// operator: published to the registry the DHCP path reads, recorded as a
// device-updated event with its actor, the device's bindings revalidated.
// Before, a pin could only be given at the attach (an attach of a device
// already attached changes nothing): there was no UpdateDevice.
func TestUpdateDevicePin(t *testing.T) {
	r := newRig(t)
	r.ten.cfg.Circuits = pinCircuits
	const m = "02:00:00:00:00:07"
	if _, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: "c-77"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: m, CustomerID: "c-77"}); err != nil {
		t.Fatal(err)
	}
	r.px.take()
	pinned := func(want string) {
		t.Helper()
		e, ok := r.reg.Lookup(mac48(m))
		if !ok || e.Access != want {
			t.Errorf("registry entry %+v (%v), want access %q", e, ok, want)
		}
		st, err := r.store.Registration([6]byte(mustMAC(m)))
		if err != nil || st.Access != want {
			t.Errorf("stored registration %+v (%v), want access %q", st, err, want)
		}
	}

	d, err := r.ten.UpdateDevice(ctx, beta, "beta", m, DevicePatch{Access: strp("acc1")})
	if err != nil || d.Access != "acc1" {
		t.Fatalf("pin to acc1: %+v, %v", d, err)
	}
	pinned("acc1")
	if got := r.px.take(); len(got) != 1 || got[0] != mac48(m) {
		t.Errorf("revalidated %x, want the device's MAC (its binding elsewhere ends)", got)
	}
	evs := r.events("beta")
	last := evs[len(evs)-1]
	if last.Kind != string(subscribers.EventDeviceUpdated) || last.MAC != m || last.Access != "acc1" ||
		last.Actor != "isp:beta-token" || last.RequestID != "r2" || last.Reason != "pinned to access acc1" {
		t.Errorf("event %+v, want device-updated pinned to access acc1 by isp:beta-token, request r2", last)
	}

	// The same pin again: nothing written.
	if _, err := r.ten.UpdateDevice(ctx, beta, "beta", m, DevicePatch{Access: strp("acc1")}); err != nil {
		t.Fatal(err)
	}
	if n := len(r.events("beta")); n != len(evs) {
		t.Errorf("an unchanged pin recorded %d events", n-len(evs))
	}

	// The operator clears it (any ISP's device).
	if d, err := r.ten.UpdateDevice(ctx, op, "", m, DevicePatch{Access: strp("")}); err != nil || d.Access != "" {
		t.Fatalf("clear: %+v, %v", d, err)
	}
	pinned("")
	if evs := r.events("beta"); evs[len(evs)-1].Reason != "pin to access acc1 cleared: any access" || evs[len(evs)-1].Actor != "operator:ops" {
		t.Errorf("event %+v, want the pin cleared by the operator", evs[len(evs)-1])
	}

	// Pinned where it is bound: none yet, then on acc1.
	if _, err := r.ten.UpdateDevice(ctx, beta, "beta", m, DevicePatch{PinToBinding: true}); !errors.Is(err, ErrConflict) {
		t.Errorf("pin to its binding, none held: %v, want a conflict", err)
	}
	if err := r.store.CommitBinding(subscribers.Binding{MAC: [6]byte(mustMAC(m)), Access: "acc1", VLAN: 5, ISP: "beta",
		IP: netip.MustParseAddr("100.64.0.7"), Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if d, err := r.ten.UpdateDevice(ctx, beta, "beta", m, DevicePatch{PinToBinding: true}); err != nil || d.Access != "acc1" {
		t.Errorf("pin to its binding on acc1: %+v, %v", d, err)
	}
	pinned("acc1")

	refused := []struct {
		name string
		a    Actor
		isp  string
		p    DevicePatch
		want error
	}{
		{"unknown access", beta, "beta", DevicePatch{Access: strp("nope")}, ErrInvalid},
		{"both fields", beta, "beta", DevicePatch{Access: strp("acc0"), PinToBinding: true}, ErrInvalid},
		{"another ISP's device", Actor{Kind: ActorISP, Name: "a", ISP: "alpha"}, "alpha", DevicePatch{Access: strp("acc0")}, ErrNotFound},
	}
	for _, c := range refused {
		if _, err := r.ten.UpdateDevice(ctx, c.a, c.isp, m, c.p); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	pinned("acc1")
}

// A device of the configuration keeps its pin: the file is where it
// changes.
func TestUpdateDeviceConfigReadOnly(t *testing.T) {
	r := newRig(t)
	r.ten.cfg.Circuits = pinCircuits
	const m = "02:00:00:00:00:09"
	if _, err := r.ten.SyncConfig([]ConfigDevice{{MAC: [6]byte(mustMAC(m)), ISP: "alpha", Access: "acc0"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.UpdateDevice(ctx, op, "", m, DevicePatch{Access: strp("")}); !errors.Is(err, ErrConflict) {
		t.Errorf("clear a configuration device's pin: %v, want a conflict", err)
	}
	if e, _ := r.reg.Lookup(mac48(m)); e.Access != "acc0" {
		t.Errorf("registry access %q, want acc0 kept", e.Access)
	}
}

// An attach or claim pinned to an access the box does not have is
// refused: the device would be refused on every access. Before, any name
// of at most 64 bytes was taken (201) and the device never served.
func TestAttachPinUnknownAccessRefused(t *testing.T) {
	r := newRig(t)
	r.ten.cfg.Circuits = pinCircuits
	if _, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: "c-77", Password: "pw", DeviceLimit: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: "02:00:00:00:00:07", CustomerID: "c-77", Access: "acc7"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("attach pinned to acc7: %v, want invalid", err)
	}
	claimer := Actor{Kind: ActorClaim, Name: "installer", RequestID: "r3"}
	if _, err := r.ten.Claim(ctx, claimer, ClaimRequest{ISP: "beta", CustomerID: "c-77", Password: "pw", MAC: "02:00:00:00:00:08", Access: "acc7"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("claim pinned to acc7: %v, want invalid", err)
	}
	if _, ok := r.reg.Lookup(mac48("02:00:00:00:00:07")); ok {
		t.Error("the refused device is registered")
	}
	if d, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: "02:00:00:00:00:07", CustomerID: "c-77", Access: "acc1"}); err != nil || d.Access != "acc1" {
		t.Errorf("attach pinned to acc1: %+v, %v", d, err)
	}
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// pinTables is the forwarding state of the pin tests' proxy: what it
// holds bound.
type pinTables struct {
	mu    sync.Mutex
	bound map[uint64]binding.Binding
}

func (f *pinTables) CheckBind(b binding.Binding) error { return nil }
func (f *pinTables) Bind(b binding.Binding) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bound[b.MAC] = b
	return nil
}

func (f *pinTables) Unbind(port uint8, vlan uint16, mac uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.bound[mac]
	delete(f.bound, mac)
	return ok
}
func (f *pinTables) Holder(isp uint8, a netip.Addr) (binding.Binding, bool) {
	return binding.Binding{}, false
}
func (f *pinTables) NextHopMAC(isp uint8) (uint64, bool) { return pinGW, true }

func (f *pinTables) isBound(mac uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.bound[mac]
	return ok
}

// pinSender records the DHCP messages the proxy sends, by port.
type pinSender struct {
	mu  sync.Mutex
	out map[uint8][]dhcpv4.MessageType
}

func (f *pinSender) Inject(port uint8, frame []byte) bool {
	// The UDP payload of an untagged IPv4 frame (the uplink's).
	if len(frame) > 42 {
		if m, err := dhcpv4.FromBytes(frame[42:]); err == nil {
			f.mu.Lock()
			f.out[port] = append(f.out[port], m.MessageType())
			f.mu.Unlock()
		}
	}
	return true
}

func (f *pinSender) take(port uint8) []dhcpv4.MessageType {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.out[port]
	delete(f.out, port)
	return out
}

const (
	pinAccPort, pinUpPort = 0, 1
	pinAccMAC, pinUpMAC   = 0x02aa00000000, 0x02aa00000001
	pinGW                 = 0x02bb00000001
)

// pinRig is the tenant service over a store and registry that a real DHCP
// proxy reads, as the appliance wires them: acc0 and acc1 (VLAN 5) on one
// access port, ISP alpha on the uplink.
type pinRig struct {
	t   *testing.T
	ten *Tenants
	st  *subscribers.Store
	px  *dhcpproxy.Proxy
	tab *pinTables
	snd *pinSender
}

func newPinRig(t *testing.T) *pinRig { return newPinRigAt(t, filepath.Join(t.TempDir(), "s.db")) }

// newPinRigAt is newPinRig over the store at path (the crash tests': the
// child's, then the restarts').
func newPinRigAt(t *testing.T, path string) *pinRig {
	st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := registry.New()
	r := &pinRig{t: t, st: st, tab: &pinTables{bound: map[uint64]binding.Binding{}}, snd: &pinSender{out: map[uint8][]dhcpv4.MessageType{}}}
	r.ten = New(Config{ISPs: []string{"alpha"}, MaxDevices: 100, Circuits: pinCircuits}, st, reg, nil, nil, nil)
	sid := netip.MustParseAddr("100.64.0.1")
	r.px = dhcpproxy.New(dhcpproxy.Config{
		Limits: dhcpproxy.Limits{Timeout: time.Minute, MaxPending: 16, MACRate: 100, MACBurst: 100, CircuitRate: 1000, CircuitBurst: 1000,
			MaxBindingsPerCircuit: 10},
		Circuits: []dhcpproxy.Circuit{
			{Name: "acc0", Interface: "acc0", Port: pinAccPort, MAC: pinAccMAC, Addr: sid},
			{Name: "acc1", Interface: "acc0", Port: pinAccPort, VLAN: 5, MAC: pinAccMAC, Addr: sid},
		},
		ISPs: []dhcpproxy.ISP{{Index: 0, Name: "alpha", Port: pinUpPort, MAC: pinUpMAC, Addr: netip.MustParseAddr("203.0.113.2"),
			Servers: []netip.Addr{netip.MustParseAddr("203.0.113.1")}, CircuitID: "{interface}:{vlan}"}},
	}, st, reg, r.tab, r.snd, nil)
	r.ten.SetProxy(r.px)
	if err := r.ten.Load(); err != nil {
		t.Fatal(err)
	}
	return r
}

// discover sends mac's DISCOVER on the access circuit of vlan and
// returns the messages relayed to the ISP.
func (r *pinRig) discover(mac string, vlan uint16) []dhcpv4.MessageType {
	r.t.Helper()
	m, err := dhcpv4.NewDiscovery(mustMAC(mac))
	if err != nil {
		r.t.Fatal(err)
	}
	f := fib.UDPFrame(0xffffffffffff, binding.MAC48([6]byte(mustMAC(mac))), vlan, netip.IPv4Unspecified(),
		netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, m.ToBytes())
	r.px.HandleFrame(pinAccPort, f)
	return r.snd.take(pinUpPort)
}

// A device pinned through the API is refused on every other circuit by
// the running proxy (wrong_circuit), served on its own. Before, no API
// call could pin an attached device: its DISCOVER on acc1 was relayed.
func TestPinReachesProxy(t *testing.T) {
	r := newPinRig(t)
	const m = "02:00:00:00:00:07"
	if _, err := r.ten.CreateCustomer(ctx, op, "alpha", CustomerInput{ID: "a-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.AttachDevice(ctx, op, "alpha", DeviceInput{MAC: m, CustomerID: "a-1"}); err != nil {
		t.Fatal(err)
	}
	if got := r.discover(m, 5); len(got) != 1 {
		t.Fatalf("unpinned, DISCOVER on acc1: relayed %v, want it relayed", got)
	}
	if _, err := r.ten.UpdateDevice(ctx, op, "alpha", m, DevicePatch{Access: strp("acc0")}); err != nil {
		t.Fatal(err)
	}
	if got := r.discover(m, 5); len(got) != 0 {
		t.Errorf("pinned to acc0, DISCOVER on acc1: relayed %v, want it refused", got)
	}
	if n := r.px.Counters()["wrong_circuit"]; n != 1 {
		t.Errorf("wrong_circuit %d, want 1", n)
	}
	if got := r.discover(m, 0); len(got) != 1 {
		t.Errorf("pinned to acc0, DISCOVER on acc0: relayed %v, want it relayed", got)
	}
}

// Pinning a device to another access than the one it is bound on ends
// that binding at once: removed from the store and the tables, a RELEASE
// to the ISP on its behalf.
func TestPinElsewhereEndsBinding(t *testing.T) {
	r := newPinRig(t)
	const m = "02:00:00:00:00:07"
	hw := [6]byte(mustMAC(m))
	if _, err := r.ten.CreateCustomer(ctx, op, "alpha", CustomerInput{ID: "a-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.AttachDevice(ctx, op, "alpha", DeviceInput{MAC: m, CustomerID: "a-1"}); err != nil {
		t.Fatal(err)
	}
	if err := r.st.CommitBinding(subscribers.Binding{MAC: hw, Access: "acc1", VLAN: 5, ISP: "alpha", Customer: "a-1",
		IP: netip.MustParseAddr("198.51.100.7"), ServerID: netip.MustParseAddr("203.0.113.1"), Relay: netip.MustParseAddr("203.0.113.1"),
		Expires: time.Now().Add(time.Hour), LeaseTime: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if n, err := r.px.Restore(time.Now()); err != nil || n != 1 || !r.tab.isBound(mac48(m)) {
		t.Fatalf("restore: %d bindings, %v (bound %v), want the one on acc1", n, err, r.tab.isBound(mac48(m)))
	}
	if _, err := r.ten.UpdateDevice(ctx, op, "alpha", m, DevicePatch{Access: strp("acc0")}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.Binding("acc1", 5, hw); !errors.Is(err, subscribers.ErrNotFound) {
		t.Errorf("binding on acc1 after the pin to acc0: %v, want it ended", err)
	}
	if r.tab.isBound(mac48(m)) {
		t.Error("still in the forwarding tables")
	}
	if got := r.snd.take(pinUpPort); len(got) != 1 || got[0] != dhcpv4.MessageTypeRelease {
		t.Errorf("sent the ISP %v, want one RELEASE", got)
	}
}
