package api

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ispmux/ispmux/tenants"
)

// fakeService is an in-memory tenants.Service for handler tests: it
// records every call (method, actor, isp, options) and scopes like the
// real one (another ISP's objects are ErrNotFound).
type fakeService struct {
	mu        sync.Mutex
	isps      []string
	customers map[string]map[string]tenants.Customer // isp → id
	devices   map[string]tenants.Device              // mac
	bindings  []tenants.Binding
	events    []tenants.Event
	oldest    uint64 // oldest kept seq (events before are trimmed)
	wake      chan struct{}
	calls     []fakeCall
	// err, if set, is returned by the next call that can fail.
	err error
}

type fakeCall struct {
	Method string
	Actor  tenants.Actor
	ISP    string
	Opts   tenants.ListOptions
	Arg    any
}

func newFake() *fakeService {
	f := &fakeService{
		isps:      []string{"alpha", "beta"},
		customers: map[string]map[string]tenants.Customer{"alpha": {}, "beta": {}},
		devices:   map[string]tenants.Device{},
		wake:      make(chan struct{}),
		oldest:    1,
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.customers["alpha"]["c-1"] = tenants.Customer{ISP: "alpha", ID: "c-1", Status: tenants.StatusActive, DeviceLimit: 1, Source: "api", Created: now, Updated: now}
	f.customers["beta"]["c-77"] = tenants.Customer{ISP: "beta", ID: "c-77", Status: tenants.StatusActive, DeviceLimit: 1, Source: "api", Created: now, Updated: now}
	f.devices["02:00:00:00:00:01"] = tenants.Device{MAC: "02:00:00:00:00:01", ISP: "alpha", CustomerID: "c-1", Source: "api", Updated: now}
	f.devices["02:00:00:00:00:07"] = tenants.Device{MAC: "02:00:00:00:00:07", ISP: "beta", CustomerID: "c-77", Source: "claim", Updated: now}
	f.bindings = []tenants.Binding{
		{MAC: "02:00:00:00:00:01", ISP: "alpha", CustomerID: "c-1", Access: "acc0", IP: netip.MustParseAddr("192.0.2.50"), Expires: now},
		{MAC: "02:00:00:00:00:07", ISP: "beta", CustomerID: "c-77", Access: "acc0", IP: netip.MustParseAddr("198.51.100.50"), Expires: now},
	}
	return f
}

func (f *fakeService) record(c fakeCall) error {
	f.calls = append(f.calls, c)
	err := f.err
	f.err = nil
	return err
}

func (f *fakeService) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeService) lastCall() fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return fakeCall{}
	}
	return f.calls[len(f.calls)-1]
}

// addEvent appends an event and wakes waiters.
func (f *fakeService) addEvent(ev tenants.Event) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev.Seq = f.newestLocked() + 1
	f.events = append(f.events, ev)
	close(f.wake)
	f.wake = make(chan struct{})
	return ev.Seq
}

// trim drops events before seq.
func (f *fakeService) trim(seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	keep := f.events[:0]
	for _, e := range f.events {
		if e.Seq >= seq {
			keep = append(keep, e)
		}
	}
	f.events = keep
	f.oldest = seq
}

func (f *fakeService) newestLocked() uint64 {
	if len(f.events) == 0 {
		return f.oldest - 1
	}
	return f.events[len(f.events)-1].Seq
}

func (f *fakeService) ISPs(ctx context.Context) ([]tenants.ISPInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "ISPs"}); err != nil {
		return nil, err
	}
	var out []tenants.ISPInfo
	for _, n := range f.isps {
		out = append(out, tenants.ISPInfo{Name: n, Customers: len(f.customers[n])})
	}
	return out, nil
}

func (f *fakeService) HasISP(name string) bool {
	for _, n := range f.isps {
		if n == name {
			return true
		}
	}
	return false
}

func (f *fakeService) CreateCustomer(ctx context.Context, a tenants.Actor, isp string, in tenants.CustomerInput) (tenants.Customer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "CreateCustomer", Actor: a, ISP: isp, Arg: in}); err != nil {
		return tenants.Customer{}, err
	}
	if in.ID == "" {
		return tenants.Customer{}, fmt.Errorf("%w: customer_id missing", tenants.ErrInvalid)
	}
	if _, ok := f.customers[isp][in.ID]; ok {
		return tenants.Customer{}, fmt.Errorf("%w: customer %s exists", tenants.ErrConflict, in.ID)
	}
	// Not stored: the matrix runs every route against one state.
	return tenants.Customer{ISP: isp, ID: in.ID, Status: tenants.StatusActive, DeviceLimit: max(1, in.DeviceLimit), Source: "api"}, nil
}

func (f *fakeService) ImportCustomer(ctx context.Context, a tenants.Actor, isp string, line int, in tenants.CustomerInput) tenants.ImportResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	_ = f.record(fakeCall{Method: "ImportCustomer", Actor: a, ISP: isp, Arg: in})
	if in.ID == "" {
		return tenants.ImportResult{Line: line, Result: "error", Error: "customer_id missing"}
	}
	if _, ok := f.customers[isp][in.ID]; ok {
		return tenants.ImportResult{Line: line, CustomerID: in.ID, Result: "unchanged"}
	}
	f.customers[isp][in.ID] = tenants.Customer{ISP: isp, ID: in.ID, Status: tenants.StatusActive, DeviceLimit: 1}
	return tenants.ImportResult{Line: line, CustomerID: in.ID, Result: "created"}
}

func (f *fakeService) ImportCustomers(ctx context.Context, a tenants.Actor, isp string, first int, ins []tenants.CustomerInput) []tenants.ImportResult {
	out := make([]tenants.ImportResult, len(ins))
	for i, in := range ins {
		out[i] = f.ImportCustomer(ctx, a, isp, first+i, in)
	}
	f.mu.Lock()
	_ = f.record(fakeCall{Method: "ImportCustomers", Actor: a, ISP: isp, Arg: len(ins)})
	f.mu.Unlock()
	return out
}

func (f *fakeService) ImportDevices(ctx context.Context, a tenants.Actor, isp string, first int, ins []tenants.DeviceInput) []tenants.DeviceImportResult {
	out := make([]tenants.DeviceImportResult, len(ins))
	for i, in := range ins {
		d, err := f.AttachDevice(ctx, a, isp, in)
		out[i] = tenants.DeviceImportResult{Line: first + i, MAC: d.MAC, CustomerID: in.CustomerID, Result: "attached"}
		if err != nil {
			out[i].Result, out[i].Error = "error", err.Error()
		}
	}
	f.mu.Lock()
	_ = f.record(fakeCall{Method: "ImportDevices", Actor: a, ISP: isp, Arg: len(ins)})
	f.mu.Unlock()
	return out
}

func (f *fakeService) Customer(ctx context.Context, isp, id string) (tenants.Customer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "Customer", ISP: isp, Arg: id}); err != nil {
		return tenants.Customer{}, err
	}
	c, ok := f.customers[isp][id]
	if !ok {
		return c, fmt.Errorf("customer %q: %w", id, tenants.ErrNotFound)
	}
	return c, nil
}

func (f *fakeService) Customers(ctx context.Context, isp string, o tenants.ListOptions) (tenants.Page[tenants.Customer], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "Customers", ISP: isp, Opts: o}); err != nil {
		return tenants.Page[tenants.Customer]{}, err
	}
	var ids []string
	for id := range f.customers[isp] {
		if id > o.After {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	lim := o.Limit
	if lim == 0 {
		lim = tenants.DefaultLimit
	}
	var p tenants.Page[tenants.Customer]
	for i, id := range ids {
		if i == lim {
			p.Next = ids[i-1]
			break
		}
		p.Items = append(p.Items, f.customers[isp][id])
	}
	return p, nil
}

func (f *fakeService) UpdateCustomer(ctx context.Context, a tenants.Actor, isp, id string, p tenants.CustomerPatch) (tenants.Customer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "UpdateCustomer", Actor: a, ISP: isp, Arg: p}); err != nil {
		return tenants.Customer{}, err
	}
	c, ok := f.customers[isp][id]
	if !ok {
		return c, tenants.ErrNotFound
	}
	if p.Status != nil {
		c.Status = *p.Status
	}
	f.customers[isp][id] = c
	return c, nil
}

func (f *fakeService) DeleteCustomer(ctx context.Context, a tenants.Actor, isp, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "DeleteCustomer", Actor: a, ISP: isp, Arg: id}); err != nil {
		return err
	}
	if _, ok := f.customers[isp][id]; !ok {
		return tenants.ErrNotFound
	}
	return nil // kept: the matrix runs every route against one state
}

func (f *fakeService) Devices(ctx context.Context, isp, customerID string, o tenants.ListOptions) (tenants.Page[tenants.Device], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "Devices", ISP: isp, Opts: o, Arg: customerID}); err != nil {
		return tenants.Page[tenants.Device]{}, err
	}
	var p tenants.Page[tenants.Device]
	var macs []string
	for m := range f.devices {
		macs = append(macs, m)
	}
	sort.Strings(macs)
	for _, m := range macs {
		d := f.devices[m]
		if (isp == "" || d.ISP == isp) && (customerID == "" || d.CustomerID == customerID) {
			p.Items = append(p.Items, d)
		}
	}
	return p, nil
}

func (f *fakeService) Device(ctx context.Context, isp, mac string) (tenants.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "Device", ISP: isp, Arg: mac}); err != nil {
		return tenants.Device{}, err
	}
	d, ok := f.devices[mac]
	if !ok || (isp != "" && d.ISP != isp) {
		return tenants.Device{}, tenants.ErrNotFound
	}
	return d, nil
}

func (f *fakeService) AttachDevice(ctx context.Context, a tenants.Actor, isp string, in tenants.DeviceInput) (tenants.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "AttachDevice", Actor: a, ISP: isp, Arg: in}); err != nil {
		return tenants.Device{}, err
	}
	if d, ok := f.devices[in.MAC]; ok && d.ISP == isp && d.CustomerID == in.CustomerID {
		d.Unchanged = true // attached to that customer already
		return d, nil
	}
	return tenants.Device{MAC: in.MAC, ISP: isp, CustomerID: in.CustomerID, Source: "api"}, nil
}

func (f *fakeService) UpdateDevice(ctx context.Context, a tenants.Actor, isp, mac string, p tenants.DevicePatch) (tenants.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "UpdateDevice", Actor: a, ISP: isp, Arg: p}); err != nil {
		return tenants.Device{}, err
	}
	d, ok := f.devices[mac]
	if !ok || (isp != "" && d.ISP != isp) {
		return tenants.Device{}, tenants.ErrNotFound
	}
	if p.Access != nil {
		d.Access = *p.Access
	}
	return d, nil
}

func (f *fakeService) DetachDevice(ctx context.Context, a tenants.Actor, isp, mac string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "DetachDevice", Actor: a, ISP: isp, Arg: mac}); err != nil {
		return err
	}
	if d, ok := f.devices[mac]; !ok || (isp != "" && d.ISP != isp) {
		return tenants.ErrNotFound
	}
	return nil
}

func (f *fakeService) Claim(ctx context.Context, a tenants.Actor, r tenants.ClaimRequest) (tenants.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "Claim", Actor: a, ISP: r.ISP, Arg: r}); err != nil {
		return tenants.Device{}, err
	}
	if r.Password != "pw" {
		return tenants.Device{}, tenants.ErrBadCredentials
	}
	return tenants.Device{MAC: r.MAC, ISP: r.ISP, CustomerID: r.CustomerID, Source: "claim"}, nil
}

func (f *fakeService) Block(ctx context.Context, a tenants.Actor, mac string, blocked bool) (tenants.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "Block", Actor: a, Arg: blocked}); err != nil {
		return tenants.Device{}, err
	}
	d, ok := f.devices[mac]
	if !ok {
		return d, tenants.ErrNotFound
	}
	d.Blocked = blocked
	return d, nil
}

func (f *fakeService) Move(ctx context.Context, a tenants.Actor, mac string, to tenants.MoveRequest) (tenants.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "Move", Actor: a, ISP: to.ISP, Arg: to}); err != nil {
		return tenants.Device{}, err
	}
	d, ok := f.devices[mac]
	if !ok {
		return d, tenants.ErrNotFound
	}
	d.ISP, d.CustomerID = to.ISP, to.CustomerID
	return d, nil
}

func (f *fakeService) PurgeISP(ctx context.Context, a tenants.Actor, isp string) (tenants.PurgeResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "PurgeISP", Actor: a, ISP: isp}); err != nil {
		return tenants.PurgeResult{}, err
	}
	return tenants.PurgeResult{ISP: isp}, nil
}

func (f *fakeService) Bindings(ctx context.Context, isp string, o tenants.ListOptions) (tenants.Page[tenants.Binding], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "Bindings", ISP: isp, Opts: o}); err != nil {
		return tenants.Page[tenants.Binding]{}, err
	}
	var p tenants.Page[tenants.Binding]
	for _, b := range f.bindings {
		if isp == "" || b.ISP == isp {
			p.Items = append(p.Items, b)
		}
	}
	return p, nil
}

func (f *fakeService) BindingsOf(ctx context.Context, isp, mac string) ([]tenants.Binding, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "BindingsOf", ISP: isp, Arg: mac}); err != nil {
		return nil, err
	}
	out := []tenants.Binding{}
	for _, b := range f.bindings {
		if (isp == "" || b.ISP == isp) && strings.EqualFold(b.MAC, mac) {
			out = append(out, b)
		}
	}
	return out, nil
}

func (f *fakeService) Events(ctx context.Context, isp string, after uint64, limit int) (tenants.EventPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "Events", ISP: isp, Arg: after}); err != nil {
		return tenants.EventPage{}, err
	}
	p := tenants.EventPage{Oldest: f.oldest, Newest: f.newestLocked()}
	for _, e := range f.events {
		if e.Seq > after && (isp == "" || e.ISP == isp) {
			if len(p.Events) == limit {
				break
			}
			p.Events = append(p.Events, e)
		}
	}
	return p, nil
}

// EventsOfMAC is Events of one MAC: after *after, or (nil) the newest
// limit; the events' MACs are canonical (lower case, colons).
func (f *fakeService) EventsOfMAC(ctx context.Context, isp, mac string, after *uint64, limit int) (tenants.EventPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "EventsOfMAC", ISP: isp, Arg: mac}); err != nil {
		return tenants.EventPage{}, err
	}
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return tenants.EventPage{}, fmt.Errorf("%w: MAC %q is not an EUI-48 address", tenants.ErrInvalid, mac)
	}
	p := tenants.EventPage{Oldest: f.oldest, Newest: f.newestLocked()}
	for _, e := range f.events {
		if e.MAC == hw.String() && (isp == "" || e.ISP == isp) && (after == nil || e.Seq > *after) {
			p.Events = append(p.Events, e)
		}
	}
	if after == nil && len(p.Events) > limit {
		p.Events = p.Events[len(p.Events)-limit:]
	}
	if after != nil && len(p.Events) > limit {
		p.Events = p.Events[:limit]
	}
	return p, nil
}

func (f *fakeService) WaitEvents(ctx context.Context, isp string, after uint64) error {
	f.mu.Lock()
	newest, wake := f.newestLocked(), f.wake
	f.mu.Unlock()
	if newest > after {
		return nil
	}
	select {
	case <-wake:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeService) Stats(ctx context.Context) (tenants.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(fakeCall{Method: "Stats"}); err != nil {
		return tenants.Stats{}, err
	}
	return tenants.Stats{ISPs: len(f.isps), Devices: len(f.devices), Bindings: len(f.bindings)}, nil
}

var _ tenants.Service = (*fakeService)(nil)
