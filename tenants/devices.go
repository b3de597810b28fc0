package tenants

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

// Devices lists devices of isp ("" = all), of one customer if set.
func (t *Tenants) Devices(ctx context.Context, isp, customerID string, o ListOptions) (Page[Device], error) {
	if isp != "" {
		if err := t.checkISP(isp); err != nil {
			return Page[Device]{}, err
		}
	}
	if isp == "" && customerID != "" {
		// Every ISP's customers of that ID (operator), ISP after ISP,
		// paged like any list: the cursor is the ISP's index, ":" and
		// the store's cursor within it (a configuration customer has
		// as many devices as the file gives it).
		start, after := 0, ""
		if o.After != "" {
			n, rest, ok := strings.Cut(o.After, ":")
			i, err := strconv.Atoi(n)
			if !ok || err != nil || i < 0 || i >= len(t.cfg.ISPs) {
				return Page[Device]{}, fmt.Errorf("%w: bad cursor %q", ErrInvalid, o.After)
			}
			start, after = i, rest
		}
		limit := pageLimit(o.Limit)
		p := Page[Device]{Items: []Device{}}
		for i := start; i < len(t.cfg.ISPs); i++ {
			regs, next, err := t.store.Devices(t.cfg.ISPs[i], customerID, after, limit-len(p.Items))
			if err != nil {
				return Page[Device]{}, listErr(err)
			}
			after = ""
			for _, r := range regs {
				p.Items = append(p.Items, t.deviceView(r))
			}
			if next != "" {
				p.Next = strconv.Itoa(i) + ":" + next
				return p, nil
			}
			if len(p.Items) >= limit {
				if i+1 < len(t.cfg.ISPs) {
					p.Next = strconv.Itoa(i+1) + ":"
				}
				return p, nil
			}
		}
		return p, nil
	}
	regs, next, err := t.store.Devices(isp, customerID, o.After, pageLimit(o.Limit))
	if err != nil {
		return Page[Device]{}, listErr(err)
	}
	p := Page[Device]{Items: make([]Device, 0, len(regs)), Next: next}
	for _, r := range regs {
		p.Items = append(p.Items, t.deviceView(r))
	}
	return p, nil
}

// Device returns one device; isp "" = any ISP.
func (t *Tenants) Device(ctx context.Context, isp, mac string) (Device, error) {
	m, err := parseAnyMAC(mac)
	if err != nil {
		return Device{}, err
	}
	r, err := t.store.Registration(m)
	if err != nil || isp != "" && r.ISP != isp {
		return Device{}, notFound("device "+mac, orNotFound(err))
	}
	return t.deviceView(r), nil
}

func orNotFound(err error) error {
	if err == nil {
		return subscribers.ErrNotFound
	}
	return err
}

// attachLocked attaches mac to customer c (t.mu held): the checks every
// path shares (device limit, replace, the MAC's current owner), then one
// write with its events, then publication and revalidation.
func (t *Tenants) attachLocked(a Actor, c subscribers.Customer, mac subscribers.MAC, access, replace, source string, mayTake bool) (Device, error) {
	var w subscribers.TenantWrite
	pl, err := t.planAttach(&w, a, c, mac, access, replace, source, mayTake, newAttachPending())
	if err != nil || pl.unchanged {
		return pl.view, err
	}
	if _, err := t.apply(w); err != nil {
		return Device{}, err
	}
	failpoint.Hit(failpoint.TenantAfterCommit)
	t.revalidate(t.finishAttach(pl)...)
	return pl.view, nil
}

// attachPlan is an attach planAttach checked and wrote into a
// TenantWrite, for finishAttach once the write is durable.
type attachPlan struct {
	r            subscribers.Registration
	suspended    bool // the customer's, for publish
	old          subscribers.Registration
	had          bool // the MAC was registered (old)
	replaced     *subscribers.Registration
	keptReplaced bool
	unchanged    bool   // already attached to that customer: nothing written
	view         Device // what the caller is answered
}

// attachPending is what the attaches planned before this one in the same
// write (a bulk import's batch) change: devices per customer (one more for
// the customer attached to, one less for the customer of this ISP a
// device moved away from), the MACs moved away, and MACs new to the box.
// planAttach counts them with the store's.
type attachPending struct {
	devices map[subscribers.CustomerKey]int
	added   map[subscribers.CustomerKey][]subscribers.MAC
	gone    map[subscribers.MAC]bool
	newMACs int
}

// newAttachPending returns an empty attachPending.
func newAttachPending() attachPending {
	return attachPending{devices: map[subscribers.CustomerKey]int{}, added: map[subscribers.CustomerKey][]subscribers.MAC{},
		gone: map[subscribers.MAC]bool{}}
}

// add records the attach pl in p.
func (p *attachPending) add(pl attachPlan) {
	k := subscribers.CustomerKey{ISP: pl.r.ISP, ID: pl.r.CustomerID}
	p.devices[k]++
	p.added[k] = append(p.added[k], pl.r.MAC)
	if !pl.had {
		p.newMACs++
	} else if pl.old.ISP != "" {
		p.devices[subscribers.CustomerKey{ISP: pl.old.ISP, ID: pl.old.CustomerID}]--
		p.gone[pl.r.MAC] = true
	}
}

// planAttach checks the attach of mac to customer c (t.mu held) and adds
// its registration and events to w; nothing is written yet.
func (t *Tenants) planAttach(w *subscribers.TenantWrite, a Actor, c subscribers.Customer, mac subscribers.MAC, access, replace, source string, mayTake bool, pend attachPending) (attachPlan, error) {
	var pl attachPlan
	if access != "" {
		if err := t.checkAccess(access); err != nil {
			return pl, err
		}
	}
	old, err := t.store.Registration(mac)
	had := err == nil
	if err != nil && !errors.Is(err, subscribers.ErrNotFound) {
		return pl, err
	}
	if had && old.ISP == "" && !(mayTake && a.Kind == ActorOperator) {
		// The operator's block of a MAC no ISP had: not lifted by an
		// attach or a claim (only the operator unblocks or moves it).
		return pl, t.refuseBlocked(a, c, old)
	}
	if had && old.ISP != c.ISP && !mayTake {
		// Another ISP's device: only the operator (or the portal on
		// that subscriber's own line) moves it. Checked before
		// anything else about it, so that the caller learns nothing
		// more of it (its source, say).
		return pl, t.refuseTaken(a, c, old)
	}
	if had && old.Source == SourceConfig {
		return pl, fmt.Errorf("%w: device %s comes from the configuration (read-only): change its [[subscriber]] entry and reload", ErrConflict, macString(mac))
	}
	if had && old.ISP == c.ISP && old.CustomerID == c.ID {
		pl.view = t.deviceView(old) // already attached: idempotent
		pl.view.Unchanged, pl.unchanged = true, true
		return pl, nil
	}
	devs, err := t.store.DevicesOf(c.ISP, c.ID)
	if err != nil {
		return pl, err
	}
	var replaced *subscribers.Registration
	keptReplaced := false
	if replace != "" {
		rm, err := parseMAC(replace)
		if err != nil {
			return pl, err
		}
		for i := range devs {
			if devs[i].MAC == rm {
				replaced = &devs[i]
			}
		}
		if replaced == nil {
			return pl, fmt.Errorf("%w: replace: %s is not a device of customer %q", ErrInvalid, replace, c.ID)
		}
		if replaced.Source == SourceConfig {
			return pl, fmt.Errorf("%w: device %s comes from the configuration (read-only): change its [[subscriber]] entry and reload", ErrConflict, replace)
		}
		keptReplaced = detachWrite(w, a, *replaced, "replaced by "+macString(mac))
	}
	n := len(devs) + pend.devices[subscribers.CustomerKey{ISP: c.ISP, ID: c.ID}]
	if replaced != nil {
		n--
	}
	if n >= c.DeviceLimit {
		e := &DeviceLimitError{Limit: c.DeviceLimit, Claim: source == SourceClaim}
		for _, d := range devs {
			if pend.gone[d.MAC] {
				continue // moved away earlier in this write
			}
			e.Devices = append(e.Devices, macString(d.MAC))
			if d.Source != SourceConfig {
				e.Replaceable = append(e.Replaceable, macString(d.MAC))
			}
		}
		for _, m := range pend.added[subscribers.CustomerKey{ISP: c.ISP, ID: c.ID}] {
			e.Devices = append(e.Devices, macString(m)) // attached earlier in this write
		}
		return pl, e
	}
	if !had && t.cfg.MaxDevices > 0 {
		held := t.reg.Len() + pend.newMACs
		if replaced != nil && !keptReplaced {
			held-- // the replaced device's place is this one's
		}
		if held >= t.cfg.MaxDevices {
			return pl, noRoom("the box holds its maximum of %d devices (datapath.mac_table_size)", t.cfg.MaxDevices)
		}
	}
	if share := t.ispDeviceShare(a); !had && share > 0 {
		held := t.ispDevices(c.ISP) + pend.newMACs
		if replaced != nil && !keptReplaced {
			held--
		}
		if held >= share {
			return pl, noRoom("ISP %q holds its share of the box's devices: %d of %d (datapath.mac_table_size, shared by %d ISPs); ask the operator",
				c.ISP, share, t.cfg.MaxDevices, len(t.cfg.ISPs))
		}
	}
	now := time.Now()
	r := subscribers.Registration{MAC: mac, CustomerID: c.ID, ISP: c.ISP, Access: access, Source: source, Updated: now}
	kind, why := subscribers.EventDeviceAttached, "attached ("+source+")"
	if source == SourceClaim {
		kind, why = subscribers.EventClaimed, "claimed with the customer's credentials"
	}
	if had {
		r.Blocked = old.Blocked
		// Created is kept for the customer it had, and starts again
		// for another (the store: Registration.Created), a claim's
		// included: a device taken over by another customer is not
		// older than the client identifier holders already there.
		if old.ISP == c.ISP && old.CustomerID == c.ID {
			r.Created = old.Created
		}
		if old.ISP == "" {
			// The operator's block, moved to c by the operator: the
			// device stays blocked (rewritten above); no ISP lost it.
		} else if old.ISP != c.ISP {
			// The losing ISP learns its customer's device left, not
			// where it went.
			w.Events = append(w.Events, event(a, subscribers.EventMoved, old.ISP, old.CustomerID, mac, "device moved away from this ISP"))
		} else {
			w.Events = append(w.Events, event(a, subscribers.EventDeviceDetached, old.ISP, old.CustomerID, mac, "moved to customer "+c.ID))
		}
	}
	w.PutRegistrations = append(w.PutRegistrations, r)
	w.Events = append(w.Events, event(a, kind, c.ISP, c.ID, mac, why))
	return attachPlan{r: r, suspended: c.Status == string(StatusSuspended), old: old, had: had,
		replaced: replaced, keptReplaced: keptReplaced, view: t.deviceView(r)}, nil
}

// finishAttach publishes an attach planAttach planned, once its write is
// durable (t.mu held), and returns the MACs whose bindings it takes
// service from, for the caller to revalidate (a batch's at once).
func (t *Tenants) finishAttach(pl attachPlan) (gone []uint64) {
	if pl.replaced != nil {
		t.afterDetach(*pl.replaced, pl.keptReplaced)
		gone = append(gone, binding.MAC48(pl.replaced.MAC))
	}
	if err := t.publish(pl.r, pl.suspended); err != nil {
		t.log.Warn("tenants: device stored but not admitted", "err", err)
	}
	if pl.had {
		t.count(pl.old.ISP, 0, -1)
		gone = append(gone, binding.MAC48(pl.r.MAC))
	}
	t.count(pl.r.ISP, 0, 1)
	return gone
}

// refuseTaken is the error of a's attach of old's MAC to customer c, of
// another ISP than old's (t.mu held). A MAC names one device on the
// access network, so the caller must be told it cannot have it; the
// operator is told whose it is and how to take it (a move, or the
// configuration for a device of it), anyone else only to ask the operator
// (never the other ISP, its customer or the device's source: another
// tenant's data). The refusal, with both sides, goes to the operator's
// log as an attach-refused event of no ISP, which the caller's request id
// finds (within the actor's budget: noteRefusal).
func (t *Tenants) refuseTaken(a Actor, c subscribers.Customer, old subscribers.Registration) error {
	ms := macString(old.MAC)
	why := fmt.Sprintf("%s asked to attach it to ISP %q, customer %q; it is attached to ISP %q, customer %q (source %s)",
		a, c.ISP, c.ID, old.ISP, old.CustomerID, old.Source)
	t.noteRefusal(event(a, subscribers.EventAttachRefused, "", "", old.MAC, why))
	switch {
	case a.Kind == ActorOperator && old.Source == SourceConfig:
		// Move refuses it too: the configuration is where it changes.
		return fmt.Errorf("%w: device %s is attached to ISP %q, customer %q by the configuration ([[subscriber]], read-only): change it there",
			ErrDeviceTaken, ms, old.ISP, old.CustomerID)
	case a.Kind == ActorOperator:
		return fmt.Errorf("%w: device %s is attached to ISP %q, customer %q: move it with POST /v1/devices/%s/move",
			ErrDeviceTaken, ms, old.ISP, old.CustomerID, ms)
	default:
		return fmt.Errorf("%w: device %s cannot be attached here; ask the operator to move it, quoting this request's id", ErrDeviceTaken, ms)
	}
}

// refuseBlocked is the error of a's attach or claim of old's MAC, which
// the operator blocked while no ISP had it (ownerless: ISP ""), to
// customer c (t.mu held). Refused rather than attached blocked: the block
// is the operator's word on a device nobody owns (a stolen modem, a MAC
// hammering the walled garden), so no ISP takes it on, and an attach
// that succeeded would hand the ISP a device that never gets service,
// found out by its customer. The operator and the ISP are told it is the
// operator's block (the operator: how to lift it or move the device);
// the portal's page says only that the device cannot be attached from
// it (ErrConflict, its generic wording). The refusal goes to the
// operator's log as an attach-refused event of no ISP, as refuseTaken's.
func (t *Tenants) refuseBlocked(a Actor, c subscribers.Customer, old subscribers.Registration) error {
	ms := macString(old.MAC)
	t.noteRefusal(event(a, subscribers.EventAttachRefused, "", "", old.MAC,
		fmt.Sprintf("%s asked to attach it to ISP %q, customer %q; the operator blocked it (no ISP)", a, c.ISP, c.ID)))
	if a.Kind == ActorOperator {
		return fmt.Errorf("%w: device %s is blocked by the operator and attached to no ISP: unblock it first (POST /v1/devices/%s/unblock), or move it, still blocked, with POST /v1/devices/%s/move",
			ErrBlocked, ms, ms, ms)
	}
	return fmt.Errorf("%w: device %s is blocked by the operator and cannot be attached; ask the operator, quoting this request's id", ErrBlocked, ms)
}

// AttachDevice attaches a MAC to a customer of isp.
func (t *Tenants) AttachDevice(ctx context.Context, a Actor, isp string, in DeviceInput) (Device, error) {
	if err := t.checkISP(isp); err != nil {
		return Device{}, err
	}
	mac, err := parseMAC(in.MAC)
	if err != nil {
		return Device{}, err
	}
	if err := validCustomerID(in.CustomerID); err != nil {
		return Device{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.store.Customer(isp, in.CustomerID)
	if err != nil {
		return Device{}, notFound("customer "+in.CustomerID, err)
	}
	return t.attachLocked(a, c, mac, in.Access, "", SourceAPI, false)
}

// DetachDevice ends the device's binding and detaches it. A device the
// operator blocked stays blocked, attached to no ISP (detachWrite).
func (t *Tenants) DetachDevice(ctx context.Context, a Actor, isp, mac string) error {
	m, err := parseAnyMAC(mac)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	r, err := t.store.Registration(m)
	if err != nil || isp != "" && r.ISP != isp {
		return notFound("device "+mac, orNotFound(err))
	}
	if r.Source == SourceConfig {
		return fmt.Errorf("%w: device %s comes from the configuration (read-only): remove its [[subscriber]] entry and reload", ErrConflict, mac)
	}
	if r.ISP == "" {
		return fmt.Errorf("%w: %s is the operator's block of a MAC no ISP has: unblock it (POST /v1/devices/%s/unblock)", ErrConflict, mac, mac)
	}
	var w subscribers.TenantWrite
	kept := detachWrite(&w, a, r, "detached")
	if _, err := t.apply(w); err != nil {
		return err
	}
	failpoint.Hit(failpoint.TenantAfterCommit)
	t.afterDetach(r, kept)
	t.revalidate(binding.MAC48(m))
	return nil
}

// detachWrite adds the detach of r, a device of an ISP (not of the
// configuration: the callers refuse those), by a to w: its
// device-detached event for the ISP (reason why), and its registration
// deleted, or, if the operator blocked it, rewritten as the operator's
// block of a MAC no ISP has (ownerless, as Block makes it), with a
// device-blocked event of no ISP saying the block was kept. It reports
// whether it kept a block. An ISP that detaches a device, or deletes its
// customer, or a claim that replaces it, cleans up the ISP's lists; the
// block is the operator's word on the device (a stolen modem, a hostile
// MAC), not the ISP's, and only the operator's unblock lifts it: deleted
// with the registration, the MAC would be unknown again (onboarded, and
// free to be claimed at any ISP).
func detachWrite(w *subscribers.TenantWrite, a Actor, r subscribers.Registration, why string) bool {
	w.Events = append(w.Events, event(a, subscribers.EventDeviceDetached, r.ISP, r.CustomerID, r.MAC, why))
	return unregisterWrite(w, a, r, why)
}

// unregisterWrite is detachWrite without the device-detached event (a
// purge counts its devices in one event a batch): r's registration
// deleted, or its operator's block kept ownerless with its device-blocked
// event. It reports whether it kept a block.
func unregisterWrite(w *subscribers.TenantWrite, a Actor, r subscribers.Registration, why string) bool {
	if !r.Blocked {
		w.DeleteRegistrations = append(w.DeleteRegistrations, r.MAC)
		return false
	}
	w.PutRegistrations = append(w.PutRegistrations, ownerlessBlock(r.MAC))
	w.Events = append(w.Events, event(a, subscribers.EventDeviceBlocked, "", "", r.MAC,
		fmt.Sprintf("the operator's block kept (no ISP has it now); ISP %q, customer %q: %s", r.ISP, r.CustomerID, why)))
	return true
}

// afterDetach publishes the detach of r, an ISP's device, that
// detachWrite wrote (t.mu held, after the commit): r unpublished, or, if
// kept, the operator's block published in its place; r's ISP counts one
// device less either way. The caller revalidates r's bindings.
func (t *Tenants) afterDetach(r subscribers.Registration, kept bool) {
	if kept {
		if err := t.publish(ownerlessBlock(r.MAC), false); err != nil {
			t.log.Warn("tenants: the operator's block stored but not admitted", "err", err)
		}
	} else {
		t.unpublish(binding.MAC48(r.MAC))
	}
	t.count(r.ISP, 0, -1)
}

// ownerlessBlock is the operator's block of m while no ISP has it: a
// blocked registration of no ISP and no customer (source api).
func ownerlessBlock(m subscribers.MAC) subscribers.Registration {
	return subscribers.Registration{MAC: m, Blocked: true, Source: SourceAPI, Updated: time.Now()}
}

// UpdateDevice changes a device's access pin (isp "" = any ISP). The new
// pin is published before it returns; a binding the device holds on
// another access ends then (a RELEASE to the ISP). A patch that changes
// nothing writes nothing.
func (t *Tenants) UpdateDevice(ctx context.Context, a Actor, isp, mac string, p DevicePatch) (Device, error) {
	m, err := parseMAC(mac)
	if err != nil {
		return Device{}, err
	}
	if p.PinToBinding && p.Access != nil {
		return Device{}, fmt.Errorf("%w: access and pin_to_binding: give one", ErrInvalid)
	}
	if p.Access != nil && *p.Access != "" {
		if err := t.checkAccess(*p.Access); err != nil {
			return Device{}, err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	r, err := t.store.Registration(m)
	if err != nil || isp != "" && r.ISP != isp {
		return Device{}, notFound("device "+mac, orNotFound(err))
	}
	if r.Source == SourceConfig {
		return Device{}, fmt.Errorf("%w: device %s comes from the configuration (read-only): pin it there", ErrConflict, mac)
	}
	access, why := r.Access, ""
	switch {
	case p.PinToBinding:
		if access, err = t.boundAccess(m); err != nil {
			return Device{}, err
		}
		why = "pinned to access " + access + ", where it is bound"
	case p.Access == nil:
	case *p.Access == "":
		access, why = "", "pin to access "+r.Access+" cleared: any access"
	default:
		access, why = *p.Access, "pinned to access "+*p.Access
	}
	if access == r.Access {
		return t.deviceView(r), nil
	}
	r.Access, r.Updated = access, time.Now()
	ev := event(a, subscribers.EventDeviceUpdated, r.ISP, r.CustomerID, m, why)
	ev.Access = access
	return t.rewriteDevice(r, ev, access != "")
}

// rewriteDevice stores r, an attached device changed in place (or the
// operator's new block of a MAC no ISP has), with its event ev in one
// write, publishes it, and revalidates its bindings if revalidate (a
// change that may end them: a block, a pin). t.mu held.
func (t *Tenants) rewriteDevice(r subscribers.Registration, ev subscribers.Event, revalidate bool) (Device, error) {
	if _, err := t.apply(subscribers.TenantWrite{PutRegistrations: []subscribers.Registration{r},
		Events: []subscribers.Event{ev}}); err != nil {
		return Device{}, err
	}
	failpoint.Hit(failpoint.TenantAfterCommit)
	c, _ := t.store.Customer(r.ISP, r.CustomerID)
	if err := t.publish(r, c.Status == string(StatusSuspended)); err != nil {
		t.log.Warn("tenants: device not admitted", "err", err)
	}
	if revalidate {
		t.revalidate(binding.MAC48(r.MAC))
	}
	return t.deviceView(r), nil
}

// boundAccess is the access m holds its one DHCP binding on: a conflict
// when it holds none (nothing to pin to) or several (which one is not
// for ispmux to guess).
func (t *Tenants) boundAccess(m subscribers.MAC) (string, error) {
	var on []string
	for _, c := range t.cfg.Circuits {
		_, err := t.store.Binding(c.Access, c.VLAN, m)
		switch {
		case errors.Is(err, subscribers.ErrNotFound):
			continue
		case err != nil:
			return "", err
		}
		on = append(on, c.Access)
	}
	switch len(on) {
	case 0:
		return "", fmt.Errorf("%w: device %s holds no binding to pin to: name the access", ErrConflict, macString(m))
	case 1:
		return on[0], nil
	}
	return "", fmt.Errorf("%w: device %s is bound on accesses %s: name the one to pin to", ErrConflict, macString(m), strings.Join(on, ", "))
}

// checkAccess checks that name is an access pin this box can serve: one
// of its access entries.
func (t *Tenants) checkAccess(name string) error {
	if err := validAccessName(name); err != nil {
		return err
	}
	for _, c := range t.cfg.Circuits {
		if c.Access == name {
			return nil
		}
	}
	return fmt.Errorf("%w: no access entry is named %q", ErrInvalid, name)
}

// Block blocks or unblocks a MAC (operator). A MAC no ISP has attached
// is blocked too: it gets a registration of no ISP and no customer, the
// operator's block (blockOwnerless), which its unblock removes.
func (t *Tenants) Block(ctx context.Context, a Actor, mac string, blocked bool) (Device, error) {
	parse := parseMAC
	if !blocked {
		parse = parseAnyMAC
	}
	m, err := parse(mac)
	if err != nil {
		return Device{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	r, err := t.store.Registration(m)
	if blocked && errors.Is(err, subscribers.ErrNotFound) {
		return t.blockOwnerless(a, m)
	}
	if err != nil {
		return Device{}, notFound("device "+mac, err)
	}
	if r.Source == SourceConfig {
		how := "block it there (blocked = true)"
		if !blocked {
			how = "unblock it there (remove blocked = true)"
		}
		return Device{}, fmt.Errorf("%w: device %s comes from the configuration ([[subscriber]], read-only): %s", ErrConflict, mac, how)
	}
	if r.ISP == "" && !blocked {
		return t.unblockOwnerless(a, r)
	}
	if r.Blocked == blocked {
		return t.deviceView(r), nil
	}
	r.Blocked, r.Updated = blocked, time.Now()
	kind, why := subscribers.EventDeviceBlocked, "blocked by the operator"
	if !blocked {
		kind, why = subscribers.EventUnblocked, "unblocked by the operator"
	}
	return t.rewriteDevice(r, event(a, kind, r.ISP, r.CustomerID, m, why), blocked)
}

// blockOwnerless blocks m, which has no registration (t.mu held): a
// blocked registration of no ISP and no customer (source api), stored
// with its device-blocked event (of no ISP: the operator's log only),
// then published, and m's onboarding lease, if any, ended (revalidate).
// It takes a place in the registry as a device does (MaxDevices), and
// none in the datapath's admitted set (publish).
func (t *Tenants) blockOwnerless(a Actor, m subscribers.MAC) (Device, error) {
	if t.cfg.MaxDevices > 0 && t.reg.Len() >= t.cfg.MaxDevices {
		return Device{}, noRoom("the box holds its maximum of %d devices (datapath.mac_table_size)", t.cfg.MaxDevices)
	}
	return t.rewriteDevice(ownerlessBlock(m), event(a, subscribers.EventDeviceBlocked, "", "", m, "blocked by the operator (no ISP had it)"), true)
}

// unblockOwnerless lifts the operator's block r of a MAC no ISP has
// (t.mu held): the registration is removed, with an unblocked event of
// no ISP, and the MAC is unknown again (onboarded, if its access offers
// it).
func (t *Tenants) unblockOwnerless(a Actor, r subscribers.Registration) (Device, error) {
	if _, err := t.apply(subscribers.TenantWrite{DeleteRegistrations: []subscribers.MAC{r.MAC},
		Events: []subscribers.Event{event(a, subscribers.EventUnblocked, "", "", r.MAC, "unblocked by the operator (no ISP has it)")}}); err != nil {
		return Device{}, err
	}
	failpoint.Hit(failpoint.TenantAfterCommit)
	t.unpublish(binding.MAC48(r.MAC))
	r.Blocked, r.Updated = false, time.Now()
	return t.deviceView(r), nil
}

// Move moves a device to another customer, of any ISP (operator). It is
// make-before-break: the old binding keeps forwarding until the device's
// next renewal, which ispmux NAKs so that it starts over with the new ISP
// (the old ISP then gets a RELEASE on its behalf); to.Immediate ends the
// old binding at once. The device keeps its access pin: a move changes
// who owns it, not where it is plugged in.
func (t *Tenants) Move(ctx context.Context, a Actor, mac string, to MoveRequest) (Device, error) {
	if err := t.checkISP(to.ISP); err != nil {
		return Device{}, err
	}
	m, err := parseMAC(mac)
	if err != nil {
		return Device{}, err
	}
	if err := validCustomerID(to.CustomerID); err != nil {
		return Device{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old, err := t.store.Registration(m)
	if err != nil {
		return Device{}, notFound("device "+mac, err)
	}
	c, err := t.store.Customer(to.ISP, to.CustomerID)
	if err != nil {
		return Device{}, notFound("customer "+to.CustomerID, err)
	}
	d, err := t.attachLocked(a, c, m, old.Access, "", SourceAPI, true)
	if err == nil && to.Immediate && t.proxy != nil {
		t.proxy.RevalidateMACsImmediate([]uint64{binding.MAC48(m)})
	}
	return d, err
}

// validAccessName checks an access pin's shape (checkAccess, that it names
// one of the box's access entries).
func validAccessName(s string) error {
	if len(s) > 64 {
		return fmt.Errorf("%w: access name longer than 64 bytes", ErrInvalid)
	}
	return nil
}
