package tenants

import (
	"fmt"

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
}

// SyncReport says what a configuration sync did.
type SyncReport struct {
	Added, Changed, Removed int
	// Conflicts are config entries not applied because the API or a claim
	// attached the MAC: the API's choice stays.
	Conflicts []string
}

// SyncConfig makes the configuration-sourced devices those of the file,
// at start and on reload. A MAC the API or a claim attached is left as it
// is and reported (a reload never overrides the API). Each (ISP, customer
// ID) the file names gets a configuration-sourced customer record if it
// has none (no password: it cannot be claimed). The registry is then
// republished whole (linear, like the reload itself); bindings that no
// longer match are the caller's to revalidate.
func (t *Tenants) SyncConfig(devs []ConfigDevice) (SyncReport, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var rep SyncReport
	regs := make([]subscribers.Registration, 0, len(devs))
	wantCust := map[subscribers.CustomerKey]bool{}
	for _, d := range devs {
		if !t.isps[d.ISP] {
			return rep, fmt.Errorf("%w: subscriber %s: ISP %q is not configured", ErrInvalid, macString(d.MAC), d.ISP)
		}
		if old, err := t.store.Registration(d.MAC); err == nil && old.Source != SourceConfig {
			rep.Conflicts = append(rep.Conflicts, fmt.Sprintf("subscriber %s: attached through the %s to %s/%s; the configuration's %s/%s is not applied",
				macString(d.MAC), old.Source, old.ISP, old.CustomerID, d.ISP, d.CustomerID))
			continue
		}
		regs = append(regs, subscribers.Registration{MAC: d.MAC, CustomerID: d.CustomerID, ISP: d.ISP, Access: d.Access,
			Blocked: d.Blocked, Source: SourceConfig})
		if d.CustomerID != "" {
			// A static subscriber may have none: no customer record.
			wantCust[subscribers.CustomerKey{ISP: d.ISP, ID: d.CustomerID}] = true
		}
	}
	var err error
	rep.Added, rep.Changed, rep.Removed, err = t.store.SyncRegistrations(SourceConfig, regs)
	if err != nil {
		return rep, fmt.Errorf("tenants: configured subscribers: %w", err)
	}
	// Customer records: created for the file's (ISP, ID) pairs, removed
	// for configuration-sourced ones the file no longer names (and that
	// no device uses).
	all, err := t.store.AllCustomers()
	if err != nil {
		return rep, err
	}
	have := map[subscribers.CustomerKey]subscribers.Customer{}
	for _, c := range all {
		have[subscribers.CustomerKey{ISP: c.ISP, ID: c.ID}] = c
	}
	var w subscribers.TenantWrite
	for k := range wantCust {
		if _, ok := have[k]; !ok {
			w.PutCustomers = append(w.PutCustomers, subscribers.Customer{ISP: k.ISP, ID: k.ID, Status: string(StatusActive),
				DeviceLimit: maxDeviceLimit, Source: SourceConfig})
		}
	}
	for k, c := range have {
		if c.Source != SourceConfig || wantCust[k] {
			continue
		}
		if devs, err := t.store.DevicesOf(k.ISP, k.ID); err == nil && len(devs) == 0 {
			w.DeleteCustomers = append(w.DeleteCustomers, k)
		}
	}
	if len(w.PutCustomers)+len(w.DeleteCustomers) > 0 {
		if _, err := t.apply(w); err != nil {
			return rep, err
		}
	}
	return rep, t.loadLocked()
}
