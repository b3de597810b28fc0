package tenants

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ispmux/ispmux/auth"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

func (t *Tenants) customerView(c subscribers.Customer, devices int) Customer {
	return Customer{ISP: c.ISP, ID: c.ID, Status: Status(c.Status), DeviceLimit: c.DeviceLimit, Devices: devices,
		Source: c.Source, Created: c.Created, Updated: c.Updated}
}

func checkStatus(s Status) (Status, error) {
	switch s {
	case "":
		return StatusActive, nil
	case StatusActive, StatusSuspended:
		return s, nil
	}
	return "", fmt.Errorf("%w: status must be active or suspended, not %q", ErrInvalid, s)
}

func checkLimit(n int) (int, error) {
	switch {
	case n == 0:
		return 1, nil
	case n < 0 || n > maxDeviceLimit:
		return 0, fmt.Errorf("%w: device_limit must be 1..%d (0 or absent: 1), got %d", ErrInvalid, maxDeviceLimit, n)
	}
	return n, nil
}

const maxDeviceLimit = 64

// newCustomer validates in and returns the record to store.
func newCustomer(isp string, in CustomerInput) (subscribers.Customer, error) {
	if err := validCustomerID(in.ID); err != nil {
		return subscribers.Customer{}, err
	}
	st, err := checkStatus(in.Status)
	if err != nil {
		return subscribers.Customer{}, err
	}
	lim, err := checkLimit(in.DeviceLimit)
	if err != nil {
		return subscribers.Customer{}, err
	}
	if err := emptyPassword(in); err != nil {
		// As a PATCH's: a customer created with one could never claim
		// (a trial's provisioning bug would go unnoticed).
		return subscribers.Customer{}, err
	}
	h, err := hashOf(in.Password, in.PasswordHash)
	if err != nil {
		return subscribers.Customer{}, err
	}
	now := time.Now()
	return subscribers.Customer{ISP: isp, ID: in.ID, PasswordHash: h, Status: string(st), DeviceLimit: lim,
		Source: SourceAPI, Created: now, Updated: now}, nil
}

// CreateCustomer creates a customer of isp; an existing ID is ErrConflict.
func (t *Tenants) CreateCustomer(ctx context.Context, a Actor, isp string, in CustomerInput) (Customer, error) {
	if err := t.checkISP(isp); err != nil {
		return Customer{}, err
	}
	c, err := newCustomer(isp, in) // hashed before the writer lock
	if err != nil {
		return Customer{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.store.Customer(isp, in.ID); err == nil {
		return Customer{}, fmt.Errorf("%w: customer %q exists", ErrConflict, in.ID)
	} else if !errors.Is(err, subscribers.ErrNotFound) {
		return Customer{}, err
	}
	if _, err := t.apply(subscribers.TenantWrite{PutCustomers: []subscribers.Customer{c},
		Events: []subscribers.Event{event(a, subscribers.EventCustomerCreated, isp, c.ID, subscribers.MAC{}, "status "+c.Status)}}); err != nil {
		return Customer{}, err
	}
	t.count(isp, 1, 0)
	if c.Status == string(StatusSuspended) {
		t.reg.SetSuspended(isp, c.ID, true)
	}
	return t.customerView(c, 0), nil
}

// ImportCustomer upserts one line of a bulk import.
func (t *Tenants) ImportCustomer(ctx context.Context, a Actor, isp string, line int, in CustomerInput) ImportResult {
	return t.ImportCustomers(ctx, a, isp, line, []CustomerInput{in})[0]
}

// ImportCustomers upserts a batch of import lines (first is the line
// number of ins[0]) in one store transaction, with an event per customer
// created or changed: reruns are safe (an identical line is "unchanged" and writes
// nothing). Plaintext passwords are hashed before the writer lock, at most
// GOMAXPROCS - 1 at a time, at least one (auth's cap); pre-hashed lines cost no hashing.
// A customer twice in one batch is refused on its later line, the error
// naming both lines (the API sends a repeat in the next batch instead).
func (t *Tenants) ImportCustomers(ctx context.Context, a Actor, isp string, first int, ins []CustomerInput) []ImportResult {
	res := make([]ImportResult, len(ins))
	recs := make([]subscribers.Customer, len(ins))
	ok := make([]bool, len(ins))
	for i, in := range ins {
		res[i] = ImportResult{Line: first + i, CustomerID: in.ID}
	}
	fail := func(i int, err error) {
		res[i].Result, res[i].Error = "error", err.Error()
	}
	if err := t.checkISP(isp); err != nil {
		for i := range ins {
			fail(i, err)
		}
		return res
	}
	seen := make(map[string]int, len(ins))
	for i, in := range ins {
		// The ID's own error first: two lines without one (or with the
		// same bad one) are each told what is wrong with it, not that
		// the second repeats the first.
		if err := validCustomerID(in.ID); err != nil {
			fail(i, err)
			continue
		}
		if j, dup := seen[in.ID]; dup {
			fail(i, fmt.Errorf("%w: customer %q at line %d repeats line %d of this batch", ErrInvalid, in.ID, first+i, first+j))
			continue
		}
		seen[in.ID] = i
		if err := emptyPassword(in); err != nil {
			// Whatever else the line says (a review: "unchanged" or
			// an error depending on the other fields).
			fail(i, err)
			continue
		}
		// An unchanged line writes nothing (and a plaintext password is
		// verified against the stored hash, not hashed again).
		if old, err := t.store.Customer(isp, in.ID); err == nil {
			if old.Source == SourceConfig {
				fail(i, fmt.Errorf("%w: customer %q comes from the configuration (read-only)", ErrConflict, in.ID))
				continue
			}
			if unchanged(old, in) {
				res[i].Result = "unchanged"
				continue
			}
		}
		ok[i] = true
	}
	// Hash (or check) the passwords of the lines to write, auth.Slots()
	// at a time: as many as may run, and no more waiting. A goroutine a
	// line queued the batch's every hash at once, and another ISP's new
	// customer (or password) waited for all of them (auth serves the
	// hashes waiting in arrival order).
	var wg sync.WaitGroup
	next := make(chan int)
	for range auth.Slots() {
		wg.Go(func() {
			for i := range next {
				c, err := newCustomer(isp, ins[i])
				if err != nil {
					ok[i] = false
					fail(i, err)
					continue
				}
				recs[i] = c
			}
		})
	}
	for i := range ins {
		if ok[i] {
			next <- i
		}
	}
	close(next)
	wg.Wait()
	t.mu.Lock()
	defer t.mu.Unlock()
	var w subscribers.TenantWrite
	var created, updated int
	type change struct {
		i       int
		was     bool
		created bool
		what    []string // what an update changed, as a PATCH's event says
	}
	var changes []change
	for i := range ins {
		if !ok[i] {
			continue
		}
		c := recs[i]
		ch := change{i: i, created: true}
		if cur, err := t.store.Customer(isp, c.ID); err == nil {
			if cur.Source == SourceConfig {
				fail(i, fmt.Errorf("%w: customer %q comes from the configuration (read-only)", ErrConflict, c.ID))
				continue
			}
			c = mergeImport(cur, ins[i], c)
			recs[i] = c
			ch.created, ch.was = false, cur.Status == string(StatusSuspended)
			if c.Status != cur.Status {
				ch.what = append(ch.what, "status "+c.Status)
			}
			if c.DeviceLimit != cur.DeviceLimit {
				ch.what = append(ch.what, fmt.Sprintf("device limit %d", c.DeviceLimit))
			}
			if c.PasswordHash != cur.PasswordHash {
				ch.what = append(ch.what, "password")
			}
			updated++
		} else {
			created++
		}
		w.PutCustomers = append(w.PutCustomers, c)
		changes = append(changes, ch)
	}
	if len(w.PutCustomers) == 0 {
		return res
	}
	// One event per customer, as a POST or PATCH gives it: an ISP
	// mirroring its customers from the feed learns which ones another
	// client's import created, suspended or gave service back (a trial:
	// one event per batch, naming no customer, but for suspensions).
	for _, ch := range changes {
		c := recs[ch.i]
		line := fmt.Sprintf(" (import line %d)", first+ch.i)
		switch {
		case ch.created:
			w.Events = append(w.Events, event(a, subscribers.EventCustomerCreated, isp, c.ID, subscribers.MAC{}, "status "+c.Status+line))
		case !ch.was && c.Status == string(StatusSuspended):
			w.Events = append(w.Events, event(a, subscribers.EventSuspended, isp, c.ID, subscribers.MAC{}, strings.Join(ch.what, ", ")+line))
		case ch.was && c.Status == string(StatusActive):
			w.Events = append(w.Events, event(a, subscribers.EventReactivated, isp, c.ID, subscribers.MAC{}, strings.Join(ch.what, ", ")+line))
		default:
			what := strings.Join(ch.what, ", ")
			if what == "" {
				what = "updated"
			}
			w.Events = append(w.Events, event(a, subscribers.EventCustomerUpdated, isp, c.ID, subscribers.MAC{}, what+line))
		}
	}
	if _, err := t.apply(w); err != nil {
		for _, ch := range changes {
			fail(ch.i, err)
		}
		// The lines' results say it to the caller; the operator's log
		// too (a trial's full disk failed 5000 lines, logging nothing).
		t.logImportFailed("customers", isp, first, len(ins), len(changes), a, err)
		return res
	}
	t.count(isp, created, 0)
	// The batch's suspended customers' bindings end in one revalidation:
	// its revocations run side by side (dhcpproxy), where one call per
	// customer ended them one durable transaction after the other (a
	// trial's 50k-line suspension import: 160 s).
	var suspended []uint64
	for _, ch := range changes {
		res[ch.i].Result = "updated"
		if ch.created {
			res[ch.i].Result = "created"
		}
		suspended = append(suspended, t.setStatus(isp, recs[ch.i].ID, ch.was, recs[ch.i].Status == string(StatusSuspended))...)
	}
	t.revalidate(suspended...)
	return res
}

// unchanged reports whether importing in over old would change nothing.
func unchanged(old subscribers.Customer, in CustomerInput) bool {
	if in.Status != "" {
		if st, err := checkStatus(in.Status); err != nil || string(st) != old.Status {
			return false
		}
	}
	if in.DeviceLimit != 0 {
		if lim, err := checkLimit(in.DeviceLimit); err != nil || lim != old.DeviceLimit {
			return false
		}
	}
	switch {
	case in.PasswordHash != "":
		return in.Password == "" && in.PasswordHash == old.PasswordHash
	case in.Password != "":
		ok, rehash, err := verify(old.PasswordHash, in.Password)
		return err == nil && ok && !rehash
	}
	return true // no password on the line: the customer's is kept
}

// mergeImport is the record an import line in writes over the existing
// customer cur, c being the line's record as newCustomer made it (its
// password hashed, its fields checked): the fields the line gives, the
// rest kept as cur has them (status, device limit, password), as a PATCH
// leaves absent fields alone. Before stop 39 the line replaced the whole
// record, so a line with the status only (a bulk suspension, a re-sync)
// deleted the customer's password, which broke every claim, and put its
// device limit back to 1.
func mergeImport(cur subscribers.Customer, in CustomerInput, c subscribers.Customer) subscribers.Customer {
	m := cur
	if in.Status != "" {
		m.Status = c.Status
	}
	if in.DeviceLimit != 0 {
		m.DeviceLimit = c.DeviceLimit
	}
	if in.Password != "" || in.PasswordHash != "" {
		m.PasswordHash = c.PasswordHash
	}
	m.Source, m.Updated = c.Source, c.Updated
	return m
}

// afterStatus publishes a status change and ends a newly suspended
// customer's bindings.
func (t *Tenants) afterStatus(isp, id string, was, now bool) {
	t.revalidate(t.setStatus(isp, id, was, now)...)
}

// setStatus is afterStatus without the revalidation: it returns the MACs
// of a newly suspended customer's devices, for the caller to revalidate
// (an import, once for its batch).
func (t *Tenants) setStatus(isp, id string, was, now bool) []uint64 {
	if was == now {
		return nil
	}
	t.reg.SetSuspended(isp, id, now)
	if now {
		return t.macsOf(isp, id)
	}
	return nil
}

// macsOf returns the MACs of a customer's devices.
func (t *Tenants) macsOf(isp, id string) []uint64 {
	regs, err := t.store.DevicesOf(isp, id)
	if err != nil {
		t.log.Warn("tenants: devices of a customer", "isp", isp, "customer", id, "err", err)
	}
	out := make([]uint64, 0, len(regs))
	for _, r := range regs {
		out = append(out, binding.MAC48(r.MAC))
	}
	return out
}

// Customer returns one customer of isp.
func (t *Tenants) Customer(ctx context.Context, isp, id string) (Customer, error) {
	if err := t.checkISP(isp); err != nil {
		return Customer{}, err
	}
	c, err := t.store.Customer(isp, id)
	if err != nil {
		return Customer{}, notFound("customer "+id, err)
	}
	regs, err := t.store.DevicesOf(isp, id)
	if err != nil {
		return Customer{}, err
	}
	return t.customerView(c, len(regs)), nil
}

// Customers lists isp's customers by ID.
func (t *Tenants) Customers(ctx context.Context, isp string, o ListOptions) (Page[Customer], error) {
	if err := t.checkISP(isp); err != nil {
		return Page[Customer]{}, err
	}
	cs, next, err := t.store.Customers(isp, o.After, pageLimit(o.Limit))
	if err != nil {
		return Page[Customer]{}, listErr(err)
	}
	p := Page[Customer]{Items: make([]Customer, 0, len(cs)), Next: next}
	for _, c := range cs {
		regs, err := t.store.DevicesOf(isp, c.ID)
		if err != nil {
			return Page[Customer]{}, err
		}
		p.Items = append(p.Items, t.customerView(c, len(regs)))
	}
	return p, nil
}

func pageLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}

// UpdateCustomer changes a customer's password, status or device limit.
// A patch that changes nothing (every field absent or set to the value it
// has) writes nothing and records no event: the customer is returned.
func (t *Tenants) UpdateCustomer(ctx context.Context, a Actor, isp, id string, p CustomerPatch) (Customer, error) {
	if err := t.checkISP(isp); err != nil {
		return Customer{}, err
	}
	var pw, ph string
	if p.Password != nil {
		pw = *p.Password
		if pw == "" {
			return Customer{}, fmt.Errorf("%w: empty password", ErrInvalid)
		}
	}
	if p.PasswordHash != nil {
		ph = *p.PasswordHash
		if ph == "" {
			return Customer{}, fmt.Errorf("%w: empty password_hash", ErrInvalid)
		}
	}
	h, err := hashOf(pw, ph)
	if err != nil {
		return Customer{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.store.Customer(isp, id)
	if err != nil {
		return Customer{}, notFound("customer "+id, err)
	}
	if c.Source == SourceConfig {
		return Customer{}, fmt.Errorf("%w: customer %q comes from the configuration (read-only)", ErrConflict, id)
	}
	was := c.Status
	// what lists the changes: a field set to the value it has is none,
	// and a patch without any writes nothing and records no event.
	var what []string
	if h != "" && h != c.PasswordHash {
		c.PasswordHash = h
		what = append(what, "password")
	}
	if p.Status != nil {
		st, err := checkStatus(*p.Status)
		if err != nil {
			return Customer{}, err
		}
		if string(st) != c.Status {
			c.Status = string(st)
			what = append(what, "status "+c.Status)
		}
	}
	if p.DeviceLimit != nil {
		lim, err := checkLimit(*p.DeviceLimit)
		if err != nil {
			return Customer{}, err
		}
		if lim != c.DeviceLimit {
			c.DeviceLimit = lim
			what = append(what, fmt.Sprintf("device limit %d", lim))
		}
	}
	if len(what) == 0 {
		regs, err := t.store.DevicesOf(isp, id)
		if err != nil {
			return Customer{}, err
		}
		return t.customerView(c, len(regs)), nil
	}
	c.Updated = time.Now()
	kind := subscribers.EventCustomerUpdated
	switch {
	case c.Status != was && c.Status == string(StatusSuspended):
		kind = subscribers.EventSuspended
	case c.Status != was && was == string(StatusSuspended):
		// Its own kind, as the suspension's: a receiver mirroring the
		// customer's service need not parse "status active" out of a
		// customer-updated (an integrator's trial).
		kind = subscribers.EventReactivated
	}
	if _, err := t.apply(subscribers.TenantWrite{PutCustomers: []subscribers.Customer{c},
		Events: []subscribers.Event{event(a, kind, isp, id, subscribers.MAC{}, strings.Join(what, ", "))}}); err != nil {
		return Customer{}, err
	}
	failpoint.Hit(failpoint.TenantAfterCommit)
	t.afterStatus(isp, id, was == string(StatusSuspended), c.Status == string(StatusSuspended))
	regs, _ := t.store.DevicesOf(isp, id)
	return t.customerView(c, len(regs)), nil
}

// DeleteCustomer ends its devices' bindings, detaches them and removes it,
// in one write; a device the operator blocked stays blocked, attached to
// no ISP (detachWrite).
func (t *Tenants) DeleteCustomer(ctx context.Context, a Actor, isp, id string) error {
	if err := t.checkISP(isp); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.store.Customer(isp, id)
	if err != nil {
		return notFound("customer "+id, err)
	}
	regs, err := t.store.DevicesOf(isp, id)
	if err != nil {
		return err
	}
	if c.Source == SourceConfig && len(regs) > 0 {
		// One without devices is left over (its entries left the file
		// while API devices kept it, say): it may go; if the file still
		// names it, the next reload makes it again.
		return fmt.Errorf("%w: customer %q comes from the configuration (read-only while it has devices)", ErrConflict, id)
	}
	w := subscribers.TenantWrite{DeleteCustomers: []subscribers.CustomerKey{{ISP: isp, ID: id}}}
	kept := make([]bool, len(regs))
	for i, r := range regs {
		if r.Source == SourceConfig {
			return fmt.Errorf("%w: device %s of customer %q comes from the configuration: remove it there first", ErrConflict, macString(r.MAC), id)
		}
		// A device the operator blocked stays blocked (detachWrite).
		kept[i] = detachWrite(&w, a, r, "customer deleted")
	}
	w.Events = append(w.Events, event(a, subscribers.EventCustomerDeleted, isp, id, subscribers.MAC{}, fmt.Sprintf("%d devices detached", len(regs))))
	if _, err := t.apply(w); err != nil {
		return err
	}
	failpoint.Hit(failpoint.TenantAfterCommit)
	macs := make([]uint64, 0, len(regs))
	for i, r := range regs {
		t.afterDetach(r, kept[i])
		macs = append(macs, binding.MAC48(r.MAC))
	}
	t.reg.SetSuspended(isp, id, false)
	t.count(isp, -1, 0)
	t.revalidate(macs...)
	return nil
}

// emptyPassword is the error of an input that gives an empty password or
// password_hash (nil: neither): refused, not taken for "no password".
func emptyPassword(in CustomerInput) error {
	switch {
	case in.PasswordGiven && in.Password == "":
		return fmt.Errorf("%w: empty password", ErrInvalid)
	case in.PasswordHashGiven && in.PasswordHash == "":
		return fmt.Errorf("%w: empty password_hash", ErrInvalid)
	}
	return nil
}
