package tenants

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// ConfigDevice is a [[subscriber]] entry of the configuration file (DHCP
// subscribers and static ones alike: both are registered).
type ConfigDevice struct {
	MAC        subscribers.MAC
	ISP        string
	CustomerID string
	Access     string
	Blocked    bool
	StaticIP   netip.Addr // a static subscriber's address (invalid: DHCP)
}

// SyncReport says what a configuration sync did.
type SyncReport struct {
	Added, Changed, Removed int
	// Conflicts are config entries not applied because the API or a claim
	// attached the MAC: the API's choice stays.
	Conflicts []string
	// Touched are the MACs whose registration the sync wrote or removed
	// (their bindings are the ones to revalidate).
	Touched []uint64
}

// SyncConfig makes the configuration-sourced devices those of the file,
// at start and on reload. A MAC the API or a claim attached is left as it
// is and reported (a reload never overrides the API), and so is an entry
// past the device limit of the API customer it names (withinLimits). Each (ISP, customer
// ID) the file names gets a configuration-sourced customer record if it
// has none (no password: it cannot be claimed); one that the file no
// longer names is removed when its last device went with this sync.
//
// The first sync loads the registry whole (Load); later ones (reloads)
// publish only the devices they wrote or removed. Cost: one merge pass
// over the stored registrations (SyncRegistrationsDiff), one read
// transaction for the customers the file names, and work in the changes
// alone after that: no list of every customer or device is built.
// Bindings that no longer match are the caller's to revalidate (Touched).
func (t *Tenants) SyncConfig(devs []ConfigDevice) (SyncReport, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.setStatics(devs)
	var rep SyncReport
	named := map[subscribers.CustomerKey]bool{}
	for _, d := range devs {
		if !t.isps[d.ISP] {
			return rep, fmt.Errorf("%w: subscriber %s: ISP %q is not configured", ErrInvalid, macString(d.MAC), d.ISP)
		}
		if d.CustomerID != "" {
			named[subscribers.CustomerKey{ISP: d.ISP, ID: d.CustomerID}] = true
		}
	}
	keys := make([]subscribers.CustomerKey, 0, len(named))
	for k := range named {
		keys = append(keys, k)
	}
	chk, err := t.store.CheckCustomers(keys, SourceConfig)
	if err != nil {
		return rep, fmt.Errorf("tenants: configured subscribers: %w", err)
	}
	devs, rep.Conflicts, err = t.withinLimits(devs, chk.Limits)
	if err != nil {
		return rep, fmt.Errorf("tenants: configured subscribers: %w", err)
	}
	regs := make([]subscribers.Registration, 0, len(devs))
	for _, d := range devs {
		regs = append(regs, subscribers.Registration{MAC: d.MAC, CustomerID: d.CustomerID, ISP: d.ISP, Access: d.Access,
			Blocked: d.Blocked, Source: SourceConfig})
	}
	// The customers wanted: those the file names (a static subscriber
	// may name none: no customer record). An entry left out for a device
	// limit names an API customer, which is neither made nor removed.
	wantCust := named
	// The sync's events and the customers its devices left are written
	// with its registrations (one transaction): a crash before the
	// customer records below are written loses neither; the next sync
	// gets the left customers again (diff.Left) until this write clears
	// them.
	diff, err := t.store.SyncRegistrationsWith(SourceConfig, regs, configSyncOptions())
	if err != nil {
		return rep, fmt.Errorf("tenants: configured subscribers: %w", err)
	}
	rep.Added, rep.Changed, rep.Removed = diff.Added, diff.Changed, diff.Removed
	held := map[subscribers.MAC]bool{}
	for _, h := range diff.Held {
		if h.Old.ISP == "" {
			rep.Conflicts = append(rep.Conflicts, fmt.Sprintf("subscriber %s: blocked by the operator through the %s (no ISP); the configuration's %s/%s is not applied while it is: unblock it (ctl unblock), then reload; a claim of the MAC in between is kept, as any API device is",
				macString(h.New.MAC), h.Old.Source, h.New.ISP, h.New.CustomerID))
			held[h.New.MAC] = true
			continue
		}
		rep.Conflicts = append(rep.Conflicts, fmt.Sprintf("subscriber %s: attached through the %s to %s/%s; the configuration's %s/%s is not applied",
			macString(h.New.MAC), h.Old.Source, h.Old.ISP, h.Old.CustomerID, h.New.ISP, h.New.CustomerID))
		held[h.New.MAC] = true
	}
	if len(held) > 0 {
		// A held entry's customer is not made: no device of it would
		// be, and nothing would ever remove it (removal follows the
		// devices a sync removes).
		wantCust = map[subscribers.CustomerKey]bool{}
		for _, d := range devs {
			if d.CustomerID != "" && !held[d.MAC] {
				wantCust[subscribers.CustomerKey{ISP: d.ISP, ID: d.CustomerID}] = true
			}
		}
	}
	// Customer records: created for the file's (ISP, ID) pairs that have
	// none, removed for configuration-sourced ones whose devices this
	// sync removed or moved away, when the file no longer names them and
	// no device uses them.
	var w subscribers.TenantWrite
	for _, k := range chk.Missing {
		if !wantCust[k] {
			continue
		}
		w.PutCustomers = append(w.PutCustomers, subscribers.Customer{ISP: k.ISP, ID: k.ID, Status: string(StatusActive),
			DeviceLimit: maxDeviceLimit, Source: SourceConfig})
	}
	for _, k := range diff.Left {
		if k.ID == "" || wantCust[k] {
			continue
		}
		c, err := t.store.Customer(k.ISP, k.ID)
		if err != nil || c.Source != SourceConfig {
			continue
		}
		if devs, err := t.store.DevicesOf(k.ISP, k.ID); err == nil && len(devs) == 0 {
			w.DeleteCustomers = append(w.DeleteCustomers, k)
		}
	}
	if len(diff.Left) > 0 {
		w.ClearSyncLeft = SourceConfig
	}
	if len(w.PutCustomers)+len(w.DeleteCustomers) > 0 || w.ClearSyncLeft != "" {
		if _, err := t.apply(w); err != nil {
			return rep, err
		}
	}
	for _, o := range diff.Deleted {
		rep.Touched = append(rep.Touched, binding.MAC48(o.MAC))
	}
	for _, p := range diff.Puts {
		rep.Touched = append(rep.Touched, binding.MAC48(p.New.MAC))
	}
	if !t.loaded {
		return rep, t.loadLocked()
	}
	return rep, t.publishSync(diff, w)
}

// withinLimits holds the configuration's devices to the device limits of
// the API's customers they name (limits, from CheckCustomers), as an API
// attach is held: a customer's devices from other sources take their
// room first, then the entries already attached to it from the file, then
// the file's new ones in its order. The entries past the limit are left
// out of the sync and reported (the returned conflicts, in file order);
// an entry whose MAC the API or a claim attached takes no room (the sync
// holds it anyway). t.mu held.
func (t *Tenants) withinLimits(devs []ConfigDevice, limits map[subscribers.CustomerKey]int) ([]ConfigDevice, []string, error) {
	if len(limits) == 0 {
		return devs, nil, nil
	}
	byCust := map[subscribers.CustomerKey][]int{}
	for i, d := range devs {
		k := subscribers.CustomerKey{ISP: d.ISP, ID: d.CustomerID}
		if _, ok := limits[k]; ok {
			byCust[k] = append(byCust[k], i)
		}
	}
	over := map[int]int{} // index in devs → the limit it is past
	for k, idx := range byCust {
		cur, err := t.store.DevicesOf(k.ISP, k.ID)
		if err != nil {
			return nil, nil, err
		}
		room := limits[k]
		fromFile := map[subscribers.MAC]bool{}
		for _, r := range cur {
			if r.Source == SourceConfig {
				fromFile[r.MAC] = true
			} else {
				room--
			}
		}
		var kept, fresh []int
		for _, i := range idx {
			if fromFile[devs[i].MAC] {
				kept = append(kept, i)
				continue
			}
			r, err := t.store.Registration(devs[i].MAC)
			switch {
			case err == nil && r.Source != SourceConfig:
				continue // held by the sync
			case err != nil && !errors.Is(err, subscribers.ErrNotFound):
				return nil, nil, err
			}
			fresh = append(fresh, i)
		}
		for _, i := range append(kept, fresh...) {
			if room > 0 {
				room--
			} else {
				over[i] = limits[k]
			}
		}
	}
	if len(over) == 0 {
		return devs, nil, nil
	}
	var conflicts []string
	in := make([]ConfigDevice, 0, len(devs)-len(over))
	for i, d := range devs {
		lim, past := over[i]
		if !past {
			in = append(in, d)
			continue
		}
		conflicts = append(conflicts, fmt.Sprintf("subscriber %s: customer %s/%s is at its device limit (%d); the configuration's entry is not applied",
			macString(d.MAC), d.ISP, d.CustomerID, lim))
	}
	return in, conflicts, nil
}

// configSyncOptions are SyncConfig's options for the store's sync: held
// entries, events and left customers in the sync's transaction.
func configSyncOptions() subscribers.SyncOptions {
	return subscribers.SyncOptions{KeepOthers: true, Events: syncEvents, RecordLeft: true}
}

// publishSync publishes a later sync's changes (diff, and the customer
// records w created and removed) to the registry, the admission set and
// the counts.
func (t *Tenants) publishSync(diff subscribers.SyncDiff, w subscribers.TenantWrite) error {
	for _, c := range w.PutCustomers {
		t.count(c.ISP, 1, 0)
	}
	for _, k := range w.DeleteCustomers {
		t.count(k.ISP, -1, 0)
	}
	for _, o := range diff.Deleted {
		t.unpublish(binding.MAC48(o.MAC))
		t.count(o.ISP, 0, -1)
	}
	for _, p := range diff.Puts {
		r := p.New
		suspended := false
		if r.CustomerID != "" {
			if c, err := t.store.Customer(r.ISP, r.CustomerID); err == nil {
				suspended = c.Status == string(StatusSuspended)
			}
		}
		if err := t.publish(r, suspended); err != nil {
			return err
		}
		if p.Old != nil {
			t.count(p.Old.ISP, 0, -1)
		}
		t.count(r.ISP, 0, 1)
	}
	return nil
}

// syncEventMax is how many device events one configuration sync records
// one by one; a sync that changes more (a first import of a large file)
// records one per ISP and kind, with the count.
const syncEventMax = 10000

// syncEvents are the events of a configuration sync's device changes, by
// the configuration (ActorConfig), as the API's own would be: a device
// added is device-attached for its ISP; removed, device-detached; moved to
// another ISP, moved for the old one and device-attached for the new; to
// another customer of its ISP, moved; blocked or unblocked, device-blocked
// or unblocked. An ISP hears of a reload that moved its customer's device
// away as of an API call that did. They are written in the sync's own
// transaction (SyncOptions.Events): with its registrations or not at all.
func syncEvents(diff subscribers.SyncDiff) []subscribers.Event {
	a := Actor{Kind: ActorConfig}
	type key struct {
		isp  string
		kind subscribers.EventKind
	}
	var evs []subscribers.Event
	counts := map[key]int{}
	var order []key
	total := 0
	add := func(kind subscribers.EventKind, isp, customer string, mac subscribers.MAC, why string) {
		// Counted always; kept one by one only up to the cap (a
		// million-device first import builds no million events).
		k := key{isp, kind}
		if counts[k] == 0 {
			order = append(order, k)
		}
		counts[k]++
		total++
		if total <= syncEventMax {
			evs = append(evs, event(a, kind, isp, customer, mac, why))
		}
	}
	for _, o := range diff.Deleted {
		add(subscribers.EventDeviceDetached, o.ISP, o.CustomerID, o.MAC, "removed from the configuration")
	}
	for _, p := range diff.Puts {
		n, o := p.New, p.Old
		switch {
		case o == nil:
			add(subscribers.EventDeviceAttached, n.ISP, n.CustomerID, n.MAC, "added by the configuration")
		case o.ISP != n.ISP:
			add(subscribers.EventMoved, o.ISP, o.CustomerID, n.MAC, "moved to another ISP by the configuration")
			add(subscribers.EventDeviceAttached, n.ISP, n.CustomerID, n.MAC, "moved here by the configuration")
		case o.CustomerID != n.CustomerID:
			add(subscribers.EventMoved, n.ISP, n.CustomerID, n.MAC, "moved from customer "+o.CustomerID+" by the configuration")
		}
		if o != nil && o.Blocked != n.Blocked {
			if n.Blocked {
				add(subscribers.EventDeviceBlocked, n.ISP, n.CustomerID, n.MAC, "blocked by the configuration")
			} else {
				add(subscribers.EventUnblocked, n.ISP, n.CustomerID, n.MAC, "unblocked by the configuration")
			}
		}
	}
	if total <= syncEventMax {
		return evs
	}
	out := make([]subscribers.Event, 0, len(order))
	for _, k := range order {
		out = append(out, event(a, k.kind, k.isp, "", subscribers.MAC{},
			fmt.Sprintf("%d devices, by the configuration (a sync of more than %d changes: one event per ISP and kind)", counts[k], syncEventMax)))
	}
	return out
}
