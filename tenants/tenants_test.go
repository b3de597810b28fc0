package tenants

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// fakeProxy records the MACs it was asked to revalidate.
type fakeProxy struct {
	mu        sync.Mutex
	macs      []uint64
	immediate []uint64 // the MACs revalidated with an immediate cut
	calls     int      // RevalidateMACs calls
}

func (f *fakeProxy) RevalidateMACsImmediate(macs []uint64) int {
	f.mu.Lock()
	f.immediate = append(f.immediate, macs...)
	f.mu.Unlock()
	return f.RevalidateMACs(macs)
}

func (f *fakeProxy) RevalidateMACs(macs []uint64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.macs = append(f.macs, macs...)
	return len(macs)
}

func (f *fakeProxy) take() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.macs
	f.macs = nil
	return out
}

type fakeAdm struct {
	mu  sync.Mutex
	set map[uint64]bool
}

func (f *fakeAdm) SetAdmitted(macs []uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.set = map[uint64]bool{}
	for _, m := range macs {
		f.set[m] = true
	}
	return nil
}
func (f *fakeAdm) Admit(mac uint64) error { f.mu.Lock(); f.set[mac] = true; f.mu.Unlock(); return nil }
func (f *fakeAdm) Unadmit(mac uint64)     { f.mu.Lock(); delete(f.set, mac); f.mu.Unlock() }
func (f *fakeAdm) has(mac uint64) bool    { f.mu.Lock(); defer f.mu.Unlock(); return f.set[mac] }

type rig struct {
	t     *testing.T
	ten   *Tenants
	store *subscribers.Store
	reg   *registry.Registry
	px    *fakeProxy
	adm   *fakeAdm
}

var (
	ctx  = context.Background()
	op   = Actor{Kind: ActorOperator, Name: "ops", RequestID: "r1"}
	beta = Actor{Kind: ActorISP, Name: "beta-token", ISP: "beta", RequestID: "r2"}
)

func newRig(t *testing.T) *rig {
	st, err := subscribers.Open(filepath.Join(t.TempDir(), "s.db"), subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &rig{t: t, store: st, reg: registry.New(), px: &fakeProxy{}, adm: &fakeAdm{set: map[uint64]bool{}}}
	r.ten = New(Config{ISPs: []string{"alpha", "beta"}, MaxDevices: 100,
		Claim: ClaimLimits{BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond}}, st, r.reg, r.px, r.adm, nil)
	if err := r.ten.Load(); err != nil {
		t.Fatal(err)
	}
	return r
}

func mac48(s string) uint64 {
	m, err := parseMAC(s)
	if err != nil {
		panic(err)
	}
	return binding.MAC48(m)
}

func (r *rig) events(isp string) []Event {
	r.t.Helper()
	p, err := r.ten.Events(ctx, isp, 0, 1000)
	if err != nil {
		r.t.Fatal(err)
	}
	return p.Events
}

func kinds(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Kind)
	}
	return out
}

func TestCustomerLifecycle(t *testing.T) {
	r := newRig(t)
	c, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: "c-77", Password: "s3cret-pass"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != StatusActive || c.DeviceLimit != 1 || c.Source != SourceAPI {
		t.Errorf("created %+v", c)
	}
	if _, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: "c-77"}); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate: %v, want ErrConflict", err)
	}
	if _, err := r.ten.CreateCustomer(ctx, beta, "nosuch", CustomerInput{ID: "x"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown ISP: %v", err)
	}
	for _, bad := range []CustomerInput{{ID: ""}, {ID: "has space"}, {ID: strings.Repeat("x", 65)}, {ID: "ok", DeviceLimit: -1},
		{ID: "ok", Status: "gone"}, {ID: "ok", Password: "a", PasswordHash: "b"}, {ID: "ok", PasswordHash: "$md5$nope"}} {
		if _, err := r.ten.CreateCustomer(ctx, beta, "beta", bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", bad, err)
		}
	}
	// The limit's error says what 0 means (accepted: 1) and what was sent.
	if _, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: "ok", DeviceLimit: 65}); err == nil ||
		!strings.Contains(err.Error(), "0 or absent: 1") || !strings.Contains(err.Error(), "got 65") {
		t.Errorf("device_limit 65: %v, want the range, what 0 means and the value sent", err)
	}
	// Claim attaches s7; the registry and the datapath see it at once.
	d, err := r.ten.Claim(ctx, Actor{Kind: ActorClaim, Name: "installer"}, ClaimRequest{ISP: "beta", CustomerID: "c-77", Password: "s3cret-pass", MAC: "02:00:00:00:00:07"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Source != SourceClaim || d.ISP != "beta" {
		t.Errorf("claimed %+v", d)
	}
	if e, ok := r.reg.Lookup(mac48("02:00:00:00:00:07")); !ok || e.CustomerID != "c-77" || e.ISP != "beta" || !r.adm.has(mac48("02:00:00:00:00:07")) {
		t.Fatalf("registry %+v %v after the claim", e, ok)
	}
	// Suspend: the registry says so at once, and the device's binding is
	// revalidated (ended by the proxy).
	st := StatusSuspended
	if _, err := r.ten.UpdateCustomer(ctx, beta, "beta", "c-77", CustomerPatch{Status: &st}); err != nil {
		t.Fatal(err)
	}
	if e, _ := r.reg.Lookup(mac48("02:00:00:00:00:07")); !e.Suspended() {
		t.Error("device of a suspended customer not suspended in the registry")
	}
	if got := r.px.take(); !slices.Equal(got, []uint64{mac48("02:00:00:00:00:07")}) {
		t.Errorf("revalidated %v, want s7", got)
	}
	// Lifted: its own kind, reactivated (a customer-updated before),
	// and the registry no longer says suspended.
	act := StatusActive
	if _, err := r.ten.UpdateCustomer(ctx, beta, "beta", "c-77", CustomerPatch{Status: &act}); err != nil {
		t.Fatal(err)
	}
	if e, _ := r.reg.Lookup(mac48("02:00:00:00:00:07")); e.Suspended() {
		t.Error("device of a reactivated customer still suspended in the registry")
	}
	// Delete: devices detached, unpublished, revalidated.
	if err := r.ten.DeleteCustomer(ctx, beta, "beta", "c-77"); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.reg.Lookup(mac48("02:00:00:00:00:07")); ok || r.adm.has(mac48("02:00:00:00:00:07")) {
		t.Error("device of a deleted customer still registered")
	}
	if _, err := r.ten.Customer(ctx, "beta", "c-77"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted customer: %v", err)
	}
	want := []string{"customer-created", "claimed", "suspended", "reactivated", "device-detached", "customer-deleted"}
	evs := r.events("beta")
	if !slices.Equal(kinds(evs), want) {
		t.Errorf("beta's events %v, want %v", kinds(evs), want)
	}
	if evs[0].Actor != "isp:beta-token" || evs[0].RequestID != "r2" {
		t.Errorf("event without actor and request id: %+v", evs[0])
	}
	if len(r.events("alpha")) != 0 {
		t.Errorf("alpha sees beta's events: %v", r.events("alpha"))
	}
}

func TestClaimRefusals(t *testing.T) {
	r := newRig(t)
	if _, err := r.ten.CreateCustomer(ctx, op, "beta", CustomerInput{ID: "c-1", Password: "right-password"}); err != nil {
		t.Fatal(err)
	}
	claim := func(id, pw, mac, replace string) error {
		_, err := r.ten.Claim(ctx, Actor{Kind: ActorClaim, Name: "portal"}, ClaimRequest{ISP: "beta", CustomerID: id, Password: pw, MAC: mac, Replace: replace})
		return err
	}
	// Wrong password and unknown customer: the same generic error.
	e1, e2 := claim("c-1", "wrong", "02:00:00:00:00:01", ""), claim("c-nobody", "wrong", "02:00:00:00:00:01", "")
	if !errors.Is(e1, ErrBadCredentials) || !errors.Is(e2, ErrBadCredentials) || e1.Error() != e2.Error() {
		t.Errorf("wrong password %v, unknown customer %v: want one generic error", e1, e2)
	}
	time.Sleep(20 * time.Millisecond) // past the back-off
	if err := claim("c-1", "right-password", "02:00:00:00:00:01", ""); err != nil {
		t.Fatal(err)
	}
	// At the device limit: the devices are named; replace works.
	err := claim("c-1", "right-password", "02:00:00:00:00:02", "")
	var dl *DeviceLimitError
	if !errors.As(err, &dl) || !slices.Equal(dl.Devices, []string{"02:00:00:00:00:01"}) {
		t.Fatalf("at the limit: %v", err)
	}
	if err := claim("c-1", "right-password", "02:00:00:00:00:02", "02:00:00:00:00:01"); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.reg.Lookup(mac48("02:00:00:00:00:01")); ok {
		t.Error("replaced device still registered")
	}
	if got := r.px.take(); !slices.Contains(got, mac48("02:00:00:00:00:01")) {
		t.Errorf("replaced device's binding not revalidated: %v", got)
	}
	// Another ISP's device cannot be claimed away.
	if _, err := r.ten.CreateCustomer(ctx, op, "alpha", CustomerInput{ID: "a-1", Password: "alpha-password"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.Claim(ctx, Actor{Kind: ActorClaim}, ClaimRequest{ISP: "alpha", CustomerID: "a-1", Password: "alpha-password", MAC: "02:00:00:00:00:02"}); !errors.Is(err, ErrConflict) {
		t.Errorf("claiming beta's device for alpha: %v, want ErrConflict", err)
	}
	// The portal, on the subscriber's own line, moves it with alpha's
	// credentials: beta hears it left, not where it went.
	r.px.take()
	d, err := r.ten.Claim(ctx, Actor{Kind: ActorPortal, Name: "portal"}, ClaimRequest{ISP: "alpha", CustomerID: "a-1", Password: "alpha-password", MAC: "02:00:00:00:00:02"})
	if err != nil || d.ISP != "alpha" {
		t.Fatalf("the portal's move: %+v %v", d, err)
	}
	if e, _ := r.reg.Lookup(mac48("02:00:00:00:00:02")); e.ISP != "alpha" || e.CustomerID != "a-1" {
		t.Errorf("registry after the portal's move: %+v", e)
	}
	if got := r.px.take(); !slices.Contains(got, mac48("02:00:00:00:00:02")) {
		t.Errorf("the move did not revalidate the device's binding: %v", got)
	}
	moved := false
	for _, e := range r.events("beta") {
		if e.Kind == "moved" && e.MAC == "02:00:00:00:00:02" {
			moved = true
			if strings.Contains(e.Reason, "alpha") || strings.Contains(e.Reason, "a-1") {
				t.Errorf("beta's moved event names the winner: %+v", e)
			}
		}
	}
	if !moved {
		t.Error("no moved event at beta")
	}
	// Guessing is limited per (customer, MAC) before any hashing.
	var limited error
	for range 10 {
		if err := claim("c-1", "guess", "02:00:00:00:00:09", ""); errors.Is(err, ErrRateLimited) {
			limited = err
			break
		}
		time.Sleep(11 * time.Millisecond)
	}
	var rl *RateLimitError
	if !errors.As(limited, &rl) || rl.RetryAfter <= 0 {
		t.Errorf("no rate limit after repeated guesses: %v", limited)
	}
	refused := 0
	for _, e := range r.events("beta") {
		if e.Kind == "claim-refused" {
			refused++
		}
	}
	if refused < 2 {
		t.Errorf("%d claim-refused events at beta", refused)
	}
}

func TestMoveAndBlock(t *testing.T) {
	r := newRig(t)
	for _, c := range []struct{ isp, id string }{{"beta", "c-77"}, {"alpha", "a-9"}} {
		if _, err := r.ten.CreateCustomer(ctx, op, c.isp, CustomerInput{ID: c.id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: "02:00:00:00:00:07", CustomerID: "c-77"}); err != nil {
		t.Fatal(err)
	}
	// beta cannot see or detach alpha's objects, nor attach to them.
	if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: "02:00:00:00:00:08", CustomerID: "a-9"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("beta attaching to alpha's customer: %v", err)
	}
	r.px.take()
	d, err := r.ten.Move(ctx, op, "02:00:00:00:00:07", MoveRequest{ISP: "alpha", CustomerID: "a-9"})
	if err != nil || d.ISP != "alpha" {
		t.Fatalf("move: %+v %v", d, err)
	}
	if e, _ := r.reg.Lookup(mac48("02:00:00:00:00:07")); e.ISP != "alpha" || e.CustomerID != "a-9" {
		t.Errorf("registry after the move: %+v", e)
	}
	if got := r.px.take(); !slices.Equal(got, []uint64{mac48("02:00:00:00:00:07")}) {
		t.Errorf("move revalidated %v", got)
	}
	if len(r.px.immediate) != 0 {
		t.Errorf("a move without immediate cut at once: %v", r.px.immediate)
	}
	// Back to beta with an immediate cut.
	if _, err := r.ten.Move(ctx, op, "02:00:00:00:00:07", MoveRequest{ISP: "beta", CustomerID: "c-77", Immediate: true}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.px.immediate, []uint64{mac48("02:00:00:00:00:07")}) {
		t.Errorf("immediate move cut %v", r.px.immediate)
	}
	if _, err := r.ten.Move(ctx, op, "02:00:00:00:00:07", MoveRequest{ISP: "alpha", CustomerID: "a-9"}); err != nil {
		t.Fatal(err)
	}
	r.px.take()
	// The losing ISP's moved event does not name the winner.
	var moved *Event
	for _, e := range r.events("beta") {
		if e.Kind == "moved" {
			moved = &e
		}
	}
	if moved == nil || strings.Contains(moved.Reason, "alpha") || strings.Contains(moved.Reason, "a-9") {
		t.Errorf("beta's moved event %+v", moved)
	}
	if err := r.ten.DetachDevice(ctx, beta, "beta", "02:00:00:00:00:07"); !errors.Is(err, ErrNotFound) {
		t.Errorf("beta detaching alpha's device: %v", err)
	}
	if _, err := r.ten.Block(ctx, op, "02:00:00:00:00:07", true); err != nil {
		t.Fatal(err)
	}
	if e, _ := r.reg.Lookup(mac48("02:00:00:00:00:07")); !e.Blocked {
		t.Error("block not published")
	}
}

// TestMoveKeepsAccessPin: a move changes who owns a device, not where it
// is plugged in; a device pinned to its access (by the portal's claim, or
// attached with access set) stays pinned, to the same access, after a
// move to another ISP's customer or to another customer of its ISP. The
// pin is the full protection against a forger on another access
// (docs/OPERATIONS.md): a move must not drop it silently.
func TestMoveKeepsAccessPin(t *testing.T) {
	r := newRig(t)
	r.ten.cfg.Circuits = pinCircuits
	for _, c := range []struct{ isp, id string }{{"beta", "c-77"}, {"beta", "c-78"}, {"alpha", "a-9"}} {
		if _, err := r.ten.CreateCustomer(ctx, op, c.isp, CustomerInput{ID: c.id}); err != nil {
			t.Fatal(err)
		}
	}
	const mac = "02:00:00:00:00:07"
	if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: mac, CustomerID: "c-77", Access: "acc0"}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []MoveRequest{{ISP: "alpha", CustomerID: "a-9"}, {ISP: "beta", CustomerID: "c-78", Immediate: true}} {
		d, err := r.ten.Move(ctx, op, mac, to)
		if err != nil {
			t.Fatalf("move to %+v: %v", to, err)
		}
		if d.Access != "acc0" {
			t.Errorf("move to %s/%s answered access %q, want the device's pin acc0", to.ISP, to.CustomerID, d.Access)
		}
		if got, _ := r.ten.Device(ctx, "", mac); got.Access != "acc0" {
			t.Errorf("stored device after the move to %s/%s: access %q, want acc0", to.ISP, to.CustomerID, got.Access)
		}
		if e, _ := r.reg.Lookup(mac48(mac)); e.Access != "acc0" {
			t.Errorf("registry after the move to %s/%s: access %q, want acc0", to.ISP, to.CustomerID, e.Access)
		}
	}
}

func TestImportAndConfig(t *testing.T) {
	r := newRig(t)
	in := CustomerInput{ID: "c-1", Password: "pw-1-long-enough", DeviceLimit: 2}
	for i, want := range []string{"created", "unchanged"} {
		if res := r.ten.ImportCustomer(ctx, beta, "beta", i+1, in); res.Result != want {
			t.Errorf("import %d: %+v, want %s", i, res, want)
		}
	}
	in.DeviceLimit = 3
	if res := r.ten.ImportCustomer(ctx, beta, "beta", 3, in); res.Result != "updated" {
		t.Errorf("changed line: %+v", res)
	}
	if res := r.ten.ImportCustomer(ctx, beta, "beta", 4, CustomerInput{ID: "bad id"}); res.Result != "error" || res.Line != 4 {
		t.Errorf("bad line: %+v", res)
	}
	// A configuration entry for a MAC the API attached is a conflict:
	// the API's choice stays.
	if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: "02:00:00:00:00:07", CustomerID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	rep, err := r.ten.SyncConfig([]ConfigDevice{
		{MAC: [6]byte{2, 0, 0, 0, 0, 7}, ISP: "alpha", CustomerID: "cfg-7"},
		{MAC: [6]byte{2, 0, 0, 0, 0, 8}, ISP: "alpha", CustomerID: "cfg-8"},
		{MAC: [6]byte{2, 0, 0, 0, 0, 9}, ISP: "beta"}, // static, no customer ID
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Conflicts) != 1 || rep.Added != 2 {
		t.Errorf("sync report %+v", rep)
	}
	if e, _ := r.reg.Lookup(mac48("02:00:00:00:00:07")); e.ISP != "beta" {
		t.Errorf("config overrode the API: %+v", e)
	}
	if e, ok := r.reg.Lookup(mac48("02:00:00:00:00:08")); !ok || e.Source != SourceConfig {
		t.Errorf("config device not registered: %+v", e)
	}
	// Config-sourced objects are read-only through the API.
	if err := r.ten.DetachDevice(ctx, op, "", "02:00:00:00:00:08"); !errors.Is(err, ErrConflict) {
		t.Errorf("detaching a config device: %v", err)
	}
	if err := r.ten.DeleteCustomer(ctx, op, "alpha", "cfg-8"); !errors.Is(err, ErrConflict) {
		t.Errorf("deleting a config customer: %v", err)
	}
	// Listing pages through every customer once.
	for i := range 5 {
		if _, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: "p-" + string(rune('a'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	after := ""
	for range 10 {
		p, err := r.ten.Customers(ctx, "beta", ListOptions{After: after, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Items {
			if seen[c.ID] {
				t.Errorf("customer %s twice", c.ID)
			}
			seen[c.ID] = true
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if len(seen) != 6 {
		t.Errorf("paged through %d customers, want 6", len(seen))
	}
	// A made-up cursor is the caller's mistake.
	if _, err := r.ten.Customers(ctx, "beta", ListOptions{After: "c-1"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad cursor: %v, want ErrInvalid", err)
	}
	if _, err := r.ten.Devices(ctx, "beta", "", ListOptions{After: "zz"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad device cursor: %v, want ErrInvalid", err)
	}
}

// A claim refused for a reason of the customer's own ISP says that
// reason. Claim turned every conflict of the attach into "attached to
// another provider's customer; ask the operator": a device of the
// ISP's own configuration, read-only, or a box at its maximum of devices,
// sent the installer to the operator to move a device no other provider
// held. Only a device of another ISP's customer is ErrDeviceTaken.
func TestClaimConflictOfOwnISPIsNotTaken(t *testing.T) {
	r := newRig(t)
	if _, err := r.ten.SyncConfig([]ConfigDevice{{MAC: subscribers.MAC{2, 0, 0, 0, 0, 8}, ISP: "beta", CustomerID: "building-1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.CreateCustomer(ctx, op, "beta", CustomerInput{ID: "c-77", Password: "s3cret-pass"}); err != nil {
		t.Fatal(err)
	}
	_, err := r.ten.Claim(ctx, Actor{Kind: ActorClaim, Name: "installer"}, ClaimRequest{ISP: "beta", CustomerID: "c-77", Password: "s3cret-pass", MAC: "02:00:00:00:00:08"})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "configuration") {
		t.Errorf("claiming beta's own configuration device: %v, want a conflict saying it comes from the configuration", err)
	}
}

// floodRig is a rig where alpha's customer a-5 holds 50 devices and
// beta's customer c-77 one; refuse makes an attach that must be refused
// as ErrDeviceTaken, each with its own request id.
type floodRig struct {
	*rig
	macs     []string
	attempts int
}

func newFloodRig(t *testing.T) *floodRig {
	r := &floodRig{rig: newRig(t)}
	if _, err := r.ten.CreateCustomer(ctx, alphaTok, "alpha", CustomerInput{ID: "a-5", DeviceLimit: 50}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: "c-77", DeviceLimit: 5}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		m := fmt.Sprintf("02:00:00:00:01:%02x", i)
		r.macs = append(r.macs, m)
		if _, err := r.ten.AttachDevice(ctx, alphaTok, "alpha", DeviceInput{MAC: m, CustomerID: "a-5"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: "02:00:00:00:02:01", CustomerID: "c-77"}); err != nil {
		t.Fatal(err)
	}
	return r
}

var alphaTok = Actor{Kind: ActorISP, Name: "alpha-token", ISP: "alpha", RequestID: "a"}

func (r *floodRig) refuse(a Actor, isp, mac, customer string) string {
	r.t.Helper()
	r.attempts++
	a.RequestID = fmt.Sprintf("req-%d", r.attempts)
	if _, err := r.ten.AttachDevice(ctx, a, isp, DeviceInput{MAC: mac, CustomerID: customer}); !errors.Is(err, ErrDeviceTaken) {
		r.t.Fatalf("attach %s as %s: %v, want ErrDeviceTaken", mac, a, err)
	}
	return a.RequestID
}

// flood has beta's token retry one refused attach 1000 times, then try
// each of alpha's 50 MACs.
func (r *floodRig) flood() {
	for range 1000 {
		r.refuse(beta, "beta", r.macs[0], "c-77")
	}
	for _, m := range r.macs {
		r.refuse(beta, "beta", m, "c-77")
	}
}

// all returns the whole event log of isp ("" = all), page after page.
func (r *floodRig) all(isp string) []Event {
	r.t.Helper()
	var out []Event
	var after uint64
	for {
		p, err := r.ten.Events(ctx, isp, after, MaxLimit)
		if err != nil {
			r.t.Fatal(err)
		}
		out = append(out, p.Events...)
		if len(p.Events) == 0 {
			return out
		}
		after = p.Events[len(p.Events)-1].Seq
	}
}

// count returns how many of evs are of kind.
func count(evs []Event, kind subscribers.EventKind) int {
	n := 0
	for _, e := range evs {
		if e.Kind == string(kind) {
			n++
		}
	}
	return n
}

// An ISP's script retrying an attach of another ISP's device, or walking
// a list of MACs, must not write one attach-refused event per request:
// the log is trimmed by count, so a flood pushed every other event (other
// ISPs' included: their streams and webhooks reset) out of it, with a
// commit each under the tenant writer lock. Refusals are budgeted per
// actor (token) and repeats folded; another token's refusal is still
// recorded.
func TestAttachRefusedEventsBounded(t *testing.T) {
	r := newFloodRig(t)
	before := len(r.all(""))
	r.flood()
	if n := count(r.all("")[before:], subscribers.EventAttachRefused); n > 30 {
		t.Fatalf("%d refusals of one token wrote %d attach-refused events, want a bounded few", r.attempts, n)
	}
	id := r.refuse(alphaTok, "alpha", "02:00:00:00:02:01", "a-5")
	found := false
	for _, e := range r.all("") {
		found = found || e.Kind == string(subscribers.EventAttachRefused) && e.RequestID == id
	}
	if !found {
		t.Error("alpha's refusal after beta's flood was not recorded")
	}
}

// The refusals a token's budget did not record are counted, and summed up
// in a "suppressed" event of no ISP naming the token: the operator's log
// accounts for every refusal, and no ISP's log shows any of it.
func TestAttachRefusedSummaryCountsEveryRefusal(t *testing.T) {
	r := newFloodRig(t)
	before, start := len(r.all("")), time.Now()
	r.flood()
	// The budget refills while the flood runs (a slow machine's).
	budget := refusalBurst + int(time.Since(start)/refusalEvery)
	r.ten.summarizeRefusals()
	evs := r.all("")[before:]
	recorded, counted := count(evs, subscribers.EventAttachRefused), 0
	for _, e := range evs {
		if e.Kind != string(subscribers.EventSuppressed) {
			continue
		}
		if e.ISP != "" || e.Actor != beta.String() {
			t.Errorf("summary %+v: want beta's token as its actor and no ISP", e)
		}
		var n int
		if _, err := fmt.Sscanf(e.Reason, "%d ", &n); err != nil {
			t.Errorf("summary reason %q: no count", e.Reason)
		}
		counted += n
	}
	if recorded > budget || recorded+counted != r.attempts {
		t.Errorf("%d refusals: %d recorded (budget %d) + %d counted as not recorded", r.attempts, recorded, budget, counted)
	}
	for _, isp := range []string{"alpha", "beta"} {
		for _, e := range r.all(isp) {
			if e.Kind == string(subscribers.EventAttachRefused) || e.Kind == string(subscribers.EventSuppressed) {
				t.Errorf("%s's log shows %+v", isp, e)
			}
		}
	}
}

// A shutdown within a minute of a flood writes its summary: before, the
// summary was only written by a timer a minute after the first refusal
// not recorded, so a restart (an upgrade, a reload that restarts) lost
// the count of every refusal held back, and the operator's log no longer
// accounted for them.
func TestAttachRefusedSummaryAtClose(t *testing.T) {
	r := newFloodRig(t)
	before := len(r.all(""))
	r.flood()
	r.ten.Close()
	evs := r.all("")[before:]
	recorded, counted := count(evs, subscribers.EventAttachRefused), 0
	for _, e := range evs {
		if e.Kind == string(subscribers.EventSuppressed) {
			var n int
			fmt.Sscanf(e.Reason, "%d ", &n)
			counted += n
		}
	}
	if counted == 0 || recorded+counted != r.attempts {
		t.Errorf("%d refusals before Close: %d recorded + %d counted in a summary", r.attempts, recorded, counted)
	}
	// Nothing is scheduled after Close.
	r.refuse(beta, "beta", r.macs[0], "c-77")
	if r.ten.refusals.timer != nil && r.ten.refusals.timer.Stop() {
		t.Error("a summary was scheduled after Close")
	}
}

// The operator attaching another ISP's configuration device is told whose
// it is, and a way that works: the move it was told to use refuses a
// configuration device (read-only), so the answer says it comes from the
// configuration (where it is changed), not to move it.
// TestBlockConfigDeviceSaysWhere: a device of the configuration is blocked
// and unblocked in its [[subscriber]] entry, and the refusal says which:
// an unblock is not told to "block it there".
func TestBlockConfigDeviceSaysWhere(t *testing.T) {
	r := newRig(t)
	if _, err := r.ten.SyncConfig([]ConfigDevice{{MAC: subscribers.MAC{2, 0, 0, 0, 0, 8}, ISP: "alpha", CustomerID: "building-1"}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		blocked bool
		want    string
	}{{true, "block it there (blocked = true)"}, {false, "unblock it there (remove blocked = true)"}} {
		_, err := r.ten.Block(ctx, op, "02:00:00:00:00:08", c.blocked)
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "[[subscriber]]") || !strings.HasSuffix(err.Error(), c.want) {
			t.Errorf("Block(%v) of a configuration device: %v, want ErrConflict naming [[subscriber]], ending %q", c.blocked, err, c.want)
		}
	}
}

func TestOperatorTakenConfigDeviceNotToldToMove(t *testing.T) {
	r := newRig(t)
	if _, err := r.ten.SyncConfig([]ConfigDevice{{MAC: subscribers.MAC{2, 0, 0, 0, 0, 8}, ISP: "alpha", CustomerID: "building-1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.CreateCustomer(ctx, op, "beta", CustomerInput{ID: "c-77"}); err != nil {
		t.Fatal(err)
	}
	_, err := r.ten.AttachDevice(ctx, op, "beta", DeviceInput{MAC: "02:00:00:00:00:08", CustomerID: "c-77"})
	if !errors.Is(err, ErrDeviceTaken) || !strings.Contains(err.Error(), `"alpha"`) || !strings.Contains(err.Error(), `"building-1"`) {
		t.Fatalf("operator attaching alpha's configuration device: %v, want ErrDeviceTaken naming alpha and building-1", err)
	}
	_, merr := r.ten.Move(ctx, op, "02:00:00:00:00:08", MoveRequest{ISP: "beta", CustomerID: "c-77"})
	if merr == nil {
		t.Fatal("a configuration device was moved")
	}
	if strings.Contains(err.Error(), "move") || !strings.Contains(err.Error(), "configuration") {
		t.Errorf("operator told %q; the move it names answers %q", err, merr)
	}
}

// TestUpdateCustomerUnchanged: a PATCH that sets a customer's fields to
// the values they have (or sets none) changes nothing: nothing is written
// (Updated stays) and no event is recorded, as for a device's PATCH; the
// answer is the customer. A PATCH that changes one field of several
// given names only that one in its event.
func TestUpdateCustomerUnchanged(t *testing.T) {
	r := newRig(t)
	pw := "correct horse battery"
	c, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: "c-1", Password: pw, DeviceLimit: 2})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := r.store.Customer("beta", "c-1")
	if err != nil {
		t.Fatal(err)
	}
	evs := r.events("beta")
	active, lim, hash := StatusActive, c.DeviceLimit, stored.PasswordHash
	for _, p := range []CustomerPatch{
		{},
		{DeviceLimit: &lim},
		{Status: &active},
		{Status: &active, DeviceLimit: &lim},
		{PasswordHash: &hash},
	} {
		got, err := r.ten.UpdateCustomer(ctx, beta, "beta", "c-1", p)
		if err != nil || got.ID != "c-1" || got.Status != StatusActive || got.DeviceLimit != lim || !got.Updated.Equal(c.Updated) {
			t.Errorf("patch %+v: %+v, %v; want the customer unchanged", p, got, err)
		}
		if now, _ := r.store.Customer("beta", "c-1"); !now.Updated.Equal(stored.Updated) || now.PasswordHash != hash {
			t.Errorf("patch %+v wrote the customer: %+v", p, now)
		}
		if n := r.events("beta"); len(n) != len(evs) {
			t.Errorf("patch %+v recorded %v", p, kinds(n[len(evs):]))
		}
	}
	three := 3
	if _, err := r.ten.UpdateCustomer(ctx, beta, "beta", "c-1", CustomerPatch{Status: &active, DeviceLimit: &three}); err != nil {
		t.Fatal(err)
	}
	n := r.events("beta")
	if len(n) != len(evs)+1 || n[len(n)-1].Kind != string(subscribers.EventCustomerUpdated) || n[len(n)-1].Reason != "device limit 3" {
		t.Errorf("device limit 2 → 3 (status as it was): %+v", n[len(evs):])
	}
}

// TestDeviceLimitSaysWhatTheCallerCanDo: the device-limit error's text is
// the API's problem detail. Only a claim has a replace field: an attach
// (POST /v1/isps/{isp}/devices, whose body refuses replace as an unknown
// field) or an operator's move told to "claim again with replace" is
// sent to a field it cannot use.
func TestDeviceLimitSaysWhatTheCallerCanDo(t *testing.T) {
	r := newRig(t)
	if _, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: "c-1", Password: "right-password"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: "c-2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: "02:00:00:00:00:01", CustomerID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: "02:00:00:00:00:02", CustomerID: "c-2"}); err != nil {
		t.Fatal(err)
	}
	var dl *DeviceLimitError
	_, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: "02:00:00:00:00:03", CustomerID: "c-1"})
	if !errors.As(err, &dl) || strings.Contains(err.Error(), "replace") || !strings.Contains(err.Error(), "detach") {
		t.Errorf("attach at the limit: %v: want the devices named and detaching (no replace) offered", err)
	}
	_, err = r.ten.Move(ctx, op, "02:00:00:00:00:02", MoveRequest{ISP: "beta", CustomerID: "c-1"})
	if !errors.As(err, &dl) || strings.Contains(err.Error(), "replace") || !strings.Contains(err.Error(), "detach") {
		t.Errorf("move to a customer at the limit: %v: want detaching (no replace) offered", err)
	}
	claimer := Actor{Kind: ActorClaim, Name: "installer", RequestID: "r3"}
	_, err = r.ten.Claim(ctx, claimer, ClaimRequest{ISP: "beta", CustomerID: "c-1", Password: "right-password", MAC: "02:00:00:00:00:03"})
	if !errors.As(err, &dl) || !strings.Contains(err.Error(), "claim again with replace") {
		t.Errorf("claim at the limit: %v: want replace offered", err)
	}
	// The ISP hears of it, as of a wrong password (it heard nothing; found
	// by a new-user trial).
	evs := r.events("beta")
	if last := evs[len(evs)-1]; last.Kind != string(subscribers.EventClaimRefused) || last.MAC != "02:00:00:00:00:03" ||
		!strings.Contains(last.Reason, "device limit (1) reached: attached 02:00:00:00:00:01") {
		t.Errorf("beta's newest event %+v, want claim-refused for the device limit", last)
	}
}

// TestBlockUnregisteredMAC: the operator blocks a MAC no ISP has attached
// (a device hammering the walled garden, a stolen modem reported before
// any ISP attached it). Before, Block answered ErrNotFound. Now it is a
// registration of no ISP and no customer, blocked: durable (a restart
// loads it), an event of the operator's log only, published to the
// registry (the DHCP path's silence) and the datapath's admitted set (its
// DHCP reaches the proxy, which refuses it, within the datapath's budget
// of a subscriber's DHCP), its onboarding lease ended (revalidated), listed among the
// operator's devices and no ISP's. An ISP's attach, the operator's attach
// and the portal's claim of it are refused (ErrBlocked, a conflict); the
// operator may move it (it stays blocked). Its unblock removes it, and
// the ISP's attach then succeeds.
func TestBlockUnregisteredMAC(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	open := func() (*subscribers.Store, *Tenants, *registry.Registry, *fakeAdm, *fakeProxy) {
		st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		reg, adm, px := registry.New(), &fakeAdm{set: map[uint64]bool{}}, &fakeProxy{}
		ten := New(Config{ISPs: []string{"alpha", "beta"}, MaxDevices: 100}, st, reg, px, adm, nil)
		if err := ten.Load(); err != nil {
			t.Fatal(err)
		}
		return st, ten, reg, adm, px
	}
	st, ten, reg, adm, px := open()
	const m = "02:00:00:00:00:66"
	d, err := ten.Block(ctx, op, m, true)
	if err != nil || d.MAC != m || !d.Blocked || d.ISP != "" || d.CustomerID != "" {
		t.Fatalf("Block of an unregistered MAC: %+v, %v", d, err)
	}
	if e, ok := reg.Lookup(mac48(m)); !ok || !e.Blocked || e.ISP != "" {
		t.Errorf("registry after the block: %+v %v", e, ok)
	}
	if !adm.has(mac48(m)) {
		t.Error("the blocked MAC is not admitted by the datapath (its DHCP would spend the port's sample of unregistered MACs')")
	}
	if got := px.take(); !slices.Equal(got, []uint64{mac48(m)}) {
		t.Errorf("the block revalidated %v (its onboarding lease must end)", got)
	}
	if d, err := ten.Block(ctx, op, m, true); err != nil || !d.Blocked {
		t.Errorf("second block: %+v, %v", d, err)
	}
	evs, err := ten.Events(ctx, "", 0, 100)
	if err != nil || len(evs.Events) != 1 || evs.Events[0].Kind != "device-blocked" || evs.Events[0].ISP != "" {
		t.Errorf("operator's events %+v, %v", evs.Events, err)
	}
	for _, isp := range []string{"alpha", "beta"} {
		if p, err := ten.Events(ctx, isp, 0, 100); err != nil || len(p.Events) != 0 {
			t.Errorf("%s's events %+v, %v", isp, p.Events, err)
		}
		if p, err := ten.Devices(ctx, isp, "", ListOptions{}); err != nil || len(p.Items) != 0 {
			t.Errorf("%s's devices %+v, %v", isp, p.Items, err)
		}
	}
	if p, err := ten.Devices(ctx, "", "", ListOptions{}); err != nil || len(p.Items) != 1 || p.Items[0].MAC != m || !p.Items[0].Blocked {
		t.Errorf("operator's devices %+v, %v", p.Items, err)
	}
	// Durable: a restart loads it, blocked, admitted.
	st.Close()
	st, ten, reg, adm, _ = open()
	defer st.Close()
	if e, ok := reg.Lookup(mac48(m)); !ok || !e.Blocked || e.ISP != "" || !adm.has(mac48(m)) {
		t.Errorf("after a restart: registry %+v %v, admitted %v", e, ok, adm.has(mac48(m)))
	}

	if _, err := ten.CreateCustomer(ctx, op, "beta", CustomerInput{ID: "c-1", Password: "beta-password"}); err != nil {
		t.Fatal(err)
	}
	_, err = ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: m, CustomerID: "c-1"})
	if !errors.Is(err, ErrBlocked) || !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "blocked by the operator") {
		t.Errorf("the ISP's attach of the blocked MAC: %v, want ErrBlocked naming the operator's block", err)
	}
	if _, err := ten.AttachDevice(ctx, op, "beta", DeviceInput{MAC: m, CustomerID: "c-1"}); !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), "/unblock") {
		t.Errorf("the operator's attach of the blocked MAC: %v, want ErrBlocked saying how to unblock", err)
	}
	_, err = ten.Claim(ctx, Actor{Kind: ActorPortal, Name: "portal"}, ClaimRequest{ISP: "beta", CustomerID: "c-1", Password: "beta-password", MAC: m})
	if !errors.Is(err, ErrConflict) || errors.Is(err, ErrSuspended) || errors.Is(err, ErrBadCredentials) {
		t.Errorf("the portal's claim of the blocked MAC: %v, want a conflict (the portal's generic page)", err)
	}
	if err := ten.DetachDevice(ctx, op, "", m); !errors.Is(err, ErrConflict) {
		t.Errorf("the operator's detach of its block: %v, want a conflict (unblock it)", err)
	}
	if e, _ := reg.Lookup(mac48(m)); !e.Blocked || e.ISP != "" {
		t.Errorf("registry after the refusals: %+v", e)
	}
	refused := 0
	evs, _ = ten.Events(ctx, "", 0, 100)
	for _, e := range evs.Events {
		if e.Kind == "attach-refused" && e.ISP == "" {
			refused++
		}
	}
	if refused != 3 {
		t.Errorf("%d attach-refused events of no ISP, want 3: %v", refused, kinds(evs.Events))
	}
	if p, _ := ten.Events(ctx, "beta", 0, 100); !slices.Equal(kinds(p.Events), []string{"customer-created"}) {
		t.Errorf("beta's events %v", kinds(p.Events))
	}

	// A [[subscriber]] entry of the MAC is held, as for an API device,
	// and says it is the operator's block.
	rep, err := ten.SyncConfig([]ConfigDevice{{MAC: [6]byte{2, 0, 0, 0, 0, 0x66}, ISP: "alpha", CustomerID: "k-1"}})
	if err != nil || len(rep.Conflicts) != 1 || !strings.Contains(rep.Conflicts[0], "blocked by the operator") || !strings.Contains(rep.Conflicts[0], "then reload") {
		t.Errorf("configuration sync of the blocked MAC: %+v, %v", rep, err)
	}
	if e, _ := reg.Lookup(mac48(m)); !e.Blocked || e.ISP != "" {
		t.Errorf("registry after the configuration sync: %+v", e)
	}
	if _, err := ten.SyncConfig(nil); err != nil {
		t.Fatal(err)
	}

	// Unblocked: gone; a second unblock finds nothing; the ISP attaches it.
	if d, err := ten.Block(ctx, op, m, false); err != nil || d.Blocked || d.MAC != m {
		t.Fatalf("unblock: %+v, %v", d, err)
	}
	if _, ok := reg.Lookup(mac48(m)); ok {
		t.Error("registry still holds the MAC after the unblock")
	}
	if _, err := st.Registration([6]byte{2, 0, 0, 0, 0, 0x66}); !errors.Is(err, subscribers.ErrNotFound) {
		t.Errorf("stored registration after the unblock: %v", err)
	}
	if _, err := ten.Block(ctx, op, m, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("second unblock: %v, want ErrNotFound", err)
	}
	evs, _ = ten.Events(ctx, "", 0, 100)
	if k := kinds(evs.Events); k[len(k)-1] != "unblocked" || evs.Events[len(k)-1].ISP != "" {
		t.Errorf("operator's events after the unblock: %v", k)
	}
	if d, err := ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: m, CustomerID: "c-1"}); err != nil || d.Blocked || !adm.has(mac48(m)) {
		t.Errorf("the ISP's attach after the unblock: %+v, %v, admitted %v", d, err, adm.has(mac48(m)))
	}
}

// TestMoveOwnerlessBlock: the operator moves its block of a MAC no ISP
// had to an ISP's customer: the device stays blocked (unblocked by the
// operator later), is counted the ISP's, and no ISP gets a moved event.
func TestMoveOwnerlessBlock(t *testing.T) {
	r := newRig(t)
	const m = "02:00:00:00:00:67"
	if _, err := r.ten.CreateCustomer(ctx, op, "beta", CustomerInput{ID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.Block(ctx, op, m, true); err != nil {
		t.Fatal(err)
	}
	d, err := r.ten.Move(ctx, op, m, MoveRequest{ISP: "beta", CustomerID: "c-1"})
	if err != nil || d.ISP != "beta" || d.CustomerID != "c-1" || !d.Blocked {
		t.Fatalf("move of the operator's block: %+v, %v", d, err)
	}
	if !r.adm.has(mac48(m)) {
		t.Error("moved, still blocked: not admitted")
	}
	if k := kinds(r.events("beta")); !slices.Equal(k, []string{"customer-created", "device-attached"}) {
		t.Errorf("beta's events %v", k)
	}
	if d, err := r.ten.Block(ctx, op, m, false); err != nil || d.Blocked || d.ISP != "beta" || !r.adm.has(mac48(m)) {
		t.Errorf("unblock of the moved device: %+v, %v, admitted %v", d, err, r.adm.has(mac48(m)))
	}
	r.consistent()
}

// ownerlessBlocked checks that mac is the operator's block of a MAC no
// ISP has, in the store, the registry and the admission set.
func (r *rig) ownerlessBlocked(mac string) {
	r.t.Helper()
	m, _ := parseMAC(mac)
	g, err := r.store.Registration(m)
	if err != nil || !g.Blocked || g.ISP != "" || g.CustomerID != "" {
		r.t.Errorf("%s stored: %+v, %v; want the operator's block of no ISP", mac, g, err)
	}
	if e, ok := r.reg.Lookup(mac48(mac)); !ok || !e.Blocked || e.ISP != "" || e.CustomerID != "" {
		r.t.Errorf("%s in the registry: %+v %v; want blocked, of no ISP", mac, e, ok)
	}
	if !r.adm.has(mac48(mac)) {
		r.t.Errorf("%s not admitted (a blocked MAC's DHCP must reach the proxy)", mac)
	}
}

// keptBlockEvents counts the operator's events of no ISP saying its
// block of mac was kept.
func (r *rig) keptBlockEvents(mac string) int {
	r.t.Helper()
	n := 0
	for _, e := range r.events("") {
		if e.Kind == "device-blocked" && e.ISP == "" && e.MAC == mac && strings.Contains(e.Reason, "block kept") {
			n++
		}
	}
	return n
}

// TestDetachKeepsOperatorBlock: the ISP detached a device the operator
// had blocked (a stolen modem, say), and the detach deleted its
// registration, the block with it: the MAC was unknown again, onboarded
// into the walled garden and free to be attached or claimed at any ISP.
// The block is the operator's, not the ISP's: the detach succeeds for
// the ISP (its lists, counts and events as for any detach) and the
// device stays blocked, the operator's block of a MAC no ISP has (an
// event of no ISP says so), which only the operator's unblock removes.
func TestDetachKeepsOperatorBlock(t *testing.T) {
	r := newRig(t)
	const m = "02:00:00:00:00:71"
	if _, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.CreateCustomer(ctx, op, "alpha", CustomerInput{ID: "a-1", Password: "alpha-password"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: m, CustomerID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.Block(ctx, op, m, true); err != nil {
		t.Fatal(err)
	}
	r.px.take()
	if err := r.ten.DetachDevice(ctx, beta, "beta", m); err != nil {
		t.Fatalf("the ISP's detach of a device the operator blocked: %v", err)
	}
	r.ownerlessBlocked(m)
	if r.keptBlockEvents(m) != 1 {
		t.Errorf("the operator's log has no event of the block kept: %v", kinds(r.events("")))
	}
	if got := r.px.take(); !slices.Equal(got, []uint64{mac48(m)}) {
		t.Errorf("the detach revalidated %v", got)
	}
	// For the ISP, it is detached.
	if _, err := r.ten.Device(ctx, "beta", m); !errors.Is(err, ErrNotFound) {
		t.Errorf("beta's device after its detach: %v, want not found", err)
	}
	if p, err := r.ten.Devices(ctx, "beta", "", ListOptions{}); err != nil || len(p.Items) != 0 {
		t.Errorf("beta's devices %+v, %v", p.Items, err)
	}
	if c := r.ten.Counts()["beta"]; c.Devices != 0 {
		t.Errorf("beta counts %d devices", c.Devices)
	}
	if k := kinds(r.events("beta")); k[len(k)-1] != "device-detached" {
		t.Errorf("beta's events %v, want the detach last", k)
	}
	r.consistent()
	// Not attached nor claimed anywhere while the operator's block holds.
	if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: m, CustomerID: "c-1"}); !errors.Is(err, ErrBlocked) {
		t.Errorf("beta's attach again: %v, want ErrBlocked", err)
	}
	if _, err := r.ten.Claim(ctx, Actor{Kind: ActorPortal, Name: "portal"}, ClaimRequest{ISP: "alpha", CustomerID: "a-1", Password: "alpha-password", MAC: m}); !errors.Is(err, ErrBlocked) {
		t.Errorf("a claim at alpha: %v, want ErrBlocked", err)
	}
	// Durable: a restart loads it.
	reg, adm := registry.New(), &fakeAdm{set: map[uint64]bool{}}
	if err := New(Config{ISPs: []string{"alpha", "beta"}, MaxDevices: 100}, r.store, reg, &fakeProxy{}, adm, nil).Load(); err != nil {
		t.Fatal(err)
	}
	if e, ok := reg.Lookup(mac48(m)); !ok || !e.Blocked || e.ISP != "" || !adm.has(mac48(m)) {
		t.Errorf("after a restart: %+v %v, admitted %v", e, ok, adm.has(mac48(m)))
	}
	// The operator's unblock removes it.
	if d, err := r.ten.Block(ctx, op, m, false); err != nil || d.Blocked {
		t.Fatalf("unblock: %+v, %v", d, err)
	}
	if _, ok := r.reg.Lookup(mac48(m)); ok {
		t.Error("still registered after the operator's unblock")
	}
	r.consistent()
}

// TestDeleteCustomerKeepsOperatorBlocks: deleting a customer detaches
// its devices; those the operator blocked stay blocked, of no ISP (one
// write), the others go; the ISP's counts and events are those of any
// deletion.
func TestDeleteCustomerKeepsOperatorBlocks(t *testing.T) {
	r := newRig(t)
	if _, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: "c-1", DeviceLimit: 6}); err != nil {
		t.Fatal(err)
	}
	macs := []string{"02:00:00:00:00:81", "02:00:00:00:00:82", "02:00:00:00:00:83", "02:00:00:00:00:84"}
	for i, m := range macs {
		if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: m, CustomerID: "c-1"}); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := r.ten.Block(ctx, op, m, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := r.ten.DeleteCustomer(ctx, beta, "beta", "c-1"); err != nil {
		t.Fatal(err)
	}
	for i, m := range macs {
		if i%2 == 0 {
			r.ownerlessBlocked(m)
			if r.keptBlockEvents(m) != 1 {
				t.Errorf("%s: no event of the block kept", m)
			}
		} else if _, ok := r.reg.Lookup(mac48(m)); ok {
			t.Errorf("%s (not blocked) still registered", m)
		}
	}
	if c := r.ten.Counts()["beta"]; c.Devices != 0 || c.Customers != 0 {
		t.Errorf("beta counts %+v", c)
	}
	if n := count(r.events("beta"), subscribers.EventDeviceDetached); n != 4 {
		t.Errorf("beta has %d device-detached events, want 4", n)
	}
	r.consistent()
}

// TestClaimReplaceKeepsOperatorBlock: a customer whose modem was stolen
// (the operator blocked it) claims the new one, replacing the old at the
// device limit: the old one leaves the customer and stays blocked, of no
// ISP; deleted, the thief's modem would have been onboarded and free to
// be claimed.
func TestClaimReplaceKeepsOperatorBlock(t *testing.T) {
	r := newRig(t)
	const old, nu = "02:00:00:00:00:91", "02:00:00:00:00:92"
	if _, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: "c-1", Password: "right-password"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: old, CustomerID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.Block(ctx, op, old, true); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.Claim(ctx, Actor{Kind: ActorPortal, Name: "portal"},
		ClaimRequest{ISP: "beta", CustomerID: "c-1", Password: "right-password", MAC: nu, Replace: old}); err != nil {
		t.Fatal(err)
	}
	r.ownerlessBlocked(old)
	if r.keptBlockEvents(old) != 1 {
		t.Error("no event of the block kept")
	}
	if c := r.ten.Counts()["beta"]; c.Devices != 1 {
		t.Errorf("beta counts %d devices, want 1 (the new one)", c.Devices)
	}
	r.consistent()
}

// TestConfigBlockGoesWithItsEntry pins a choice: a [[subscriber]] entry
// with blocked = true that a reload removes takes its block with it. The
// block is the file's (the operator's Block refuses a configuration
// device: it is blocked there), so no block set through the API is lost,
// and the file, which no longer names the MAC, is the operator's word on
// it; a block kept here would be one no file names, lifted only through
// the API.
func TestConfigBlockGoesWithItsEntry(t *testing.T) {
	r := newRig(t)
	m := subscribers.MAC{2, 0, 0, 0, 0, 0xa1}
	if _, err := r.ten.SyncConfig([]ConfigDevice{{MAC: m, ISP: "alpha", CustomerID: "k-1", Blocked: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.SyncConfig(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.Registration(m); !errors.Is(err, subscribers.ErrNotFound) {
		t.Errorf("the configuration's blocked entry, removed from the file: %v, want gone", err)
	}
	r.consistent()
}

// TestZeroMAC: the all-zero MAC is no device (no frame carries it as its
// source): attaching, blocking and claiming it are refused, as the
// configuration refuses it. A record an older build let in does not stop
// Load (it once did: the datapath's admitted set cannot hold it, and the
// start failed), and can be seen and removed.
func TestZeroMAC(t *testing.T) {
	r := newRig(t)
	if _, err := r.ten.CreateCustomer(ctx, op, "beta", CustomerInput{ID: "c-1", Password: "pw-123456789"}); err != nil {
		t.Fatal(err)
	}
	for _, zero := range []string{"00:00:00:00:00:00", "00-00-00-00-00-00"} {
		if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: zero, CustomerID: "c-1"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("attach %s: %v, want ErrInvalid", zero, err)
		}
		if _, err := r.ten.Block(ctx, op, zero, true); !errors.Is(err, ErrInvalid) {
			t.Errorf("block %s: %v, want ErrInvalid", zero, err)
		}
		if _, err := r.ten.Claim(ctx, op, ClaimRequest{ISP: "beta", CustomerID: "c-1", Password: "pw-123456789", MAC: zero}); !errors.Is(err, ErrInvalid) {
			t.Errorf("claim %s: %v, want ErrInvalid", zero, err)
		}
	}
	if _, err := r.store.Registration(subscribers.MAC{}); !errors.Is(err, subscribers.ErrNotFound) {
		t.Fatalf("the zero MAC was stored: %v", err)
	}

	// As an older build stored it, beside a good device.
	for _, m := range []subscribers.MAC{{}, {2, 0, 0, 0, 0, 9}} {
		if err := r.store.PutRegistration(subscribers.Registration{MAC: m, ISP: "beta", CustomerID: "c-1", Source: "api"}); err != nil {
			t.Fatal(err)
		}
	}
	ten := New(Config{ISPs: []string{"alpha", "beta"}, MaxDevices: 100}, r.store, registry.New(), &fakeProxy{}, r.adm, nil)
	if err := ten.Load(); err != nil {
		t.Fatalf("Load with a stored zero MAC: %v", err)
	}
	if !r.adm.has(0x020000000009) || r.adm.has(0) {
		t.Errorf("admitted: the good device %v, the zero MAC %v", r.adm.has(0x020000000009), r.adm.has(0))
	}
	if d, err := ten.Device(ctx, "", "00:00:00:00:00:00"); err != nil || d.ISP != "beta" {
		t.Errorf("the stored zero MAC cannot be seen: %+v %v", d, err)
	}
	if err := ten.DetachDevice(ctx, op, "beta", "00:00:00:00:00:00"); err != nil {
		t.Errorf("the stored zero MAC cannot be detached: %v", err)
	}
	if _, err := r.store.Registration(subscribers.MAC{}); !errors.Is(err, subscribers.ErrNotFound) {
		t.Errorf("after the detach: %v", err)
	}
}

// An import line for an existing customer changes the fields it gives and
// keeps the others, as a PATCH does: a line with the status only (a bulk
// suspension, a re-sync) keeps the customer's password and device limit.
// Before, the line replaced the whole record: the password was deleted
// (every claim then refused) and the device limit went back to 1, below
// the devices attached (found by a new-user trial).
func TestImportKeepsFieldsLeftOut(t *testing.T) {
	r := newRig(t)
	if res := r.ten.ImportCustomer(ctx, beta, "beta", 1, CustomerInput{ID: "c-1", Password: "pw-1-long-enough", DeviceLimit: 3}); res.Result != "created" {
		t.Fatalf("create: %+v", res)
	}
	stored := func() subscribers.Customer {
		t.Helper()
		c, err := r.store.Customer("beta", "c-1")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	hash := stored().PasswordHash
	for i, tc := range []struct {
		in     CustomerInput
		want   string
		status string
		limit  int
	}{
		{CustomerInput{ID: "c-1", Status: StatusSuspended}, "updated", "suspended", 3},
		{CustomerInput{ID: "c-1", Status: StatusSuspended}, "unchanged", "suspended", 3},
		{CustomerInput{ID: "c-1"}, "unchanged", "suspended", 3},
		{CustomerInput{ID: "c-1", DeviceLimit: 5}, "updated", "suspended", 5},
		{CustomerInput{ID: "c-1", Status: StatusActive}, "updated", "active", 5},
	} {
		if res := r.ten.ImportCustomer(ctx, beta, "beta", i+2, tc.in); res.Result != tc.want {
			t.Errorf("line %+v: %+v, want %s", tc.in, res, tc.want)
		}
		c := stored()
		if c.Status != tc.status || c.DeviceLimit != tc.limit || c.PasswordHash != hash {
			t.Errorf("after %+v: status %s, device limit %d, hash kept %v; want %s, %d, true", tc.in, c.Status, c.DeviceLimit,
				c.PasswordHash == hash, tc.status, tc.limit)
		}
	}
	if ok, _, err := verify(stored().PasswordHash, "pw-1-long-enough"); !ok || err != nil {
		t.Errorf("the password kept does not verify: %v %v", ok, err)
	}
	// A new password on a line replaces it.
	if res := r.ten.ImportCustomer(ctx, beta, "beta", 9, CustomerInput{ID: "c-1", Password: "another-long-pw"}); res.Result != "updated" {
		t.Fatalf("new password: %+v", res)
	}
	if c := stored(); c.DeviceLimit != 5 {
		t.Errorf("after a new password: device limit %d, want 5", c.DeviceLimit)
	}
	if ok, _, _ := verify(stored().PasswordHash, "another-long-pw"); !ok {
		t.Error("the new password does not verify")
	}
}

// Customers and devices of an ISP no longer configured (removed, or
// renamed) are named in a warning at load, with their counts. Before, a
// renamed ISP's customers dropped out of every count without a word
// (found by a new-user trial).
func TestLoadWarnsUnconfiguredISP(t *testing.T) {
	r := newRig(t)
	if _, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: "02:00:00:00:00:07", CustomerID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	ten := New(Config{ISPs: []string{"alpha"}, MaxDevices: 100}, r.store, registry.New(), &fakeProxy{}, &fakeAdm{set: map[uint64]bool{}}, log)
	if err := ten.Load(); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "isp=beta customers=1 devices=1") || strings.Contains(out, "isp=alpha") {
		t.Errorf("load with beta no longer configured logged:\n%s", out)
	}
}

// Attaching a device to the customer it is attached to changes nothing
// and says so (Unchanged: the API answers 200, not 201).
func TestAttachAgainUnchanged(t *testing.T) {
	r := newRig(t)
	if _, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	in := DeviceInput{MAC: "02:00:00:00:00:07", CustomerID: "c-1"}
	d, err := r.ten.AttachDevice(ctx, beta, "beta", in)
	if err != nil || d.Unchanged {
		t.Fatalf("first attach: %+v %v", d, err)
	}
	if d, err = r.ten.AttachDevice(ctx, beta, "beta", in); err != nil || !d.Unchanged || d.CustomerID != "c-1" {
		t.Errorf("attach again: %+v %v, want it unchanged", d, err)
	}
}
