package appliance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/ispmux/ispmux/auth"
	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/engine"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/metrics"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
	"github.com/ispmux/ispmux/webhooks"
)

// Reload (SIGHUP): what a new reading of the configuration file changes
// while running, and what it only reports.

// pendingRestart is what a reload at read in the file that only a
// restart applies: the sections that differ from the running ones.
type pendingRestart struct {
	sections []string
	at       time.Time
}

// reloadOutcome is the last reload's: refused (err set), applied in part
// (err and partial set: the subscriber entries applied, some file it names
// not) or applied.
type reloadOutcome struct {
	at      time.Time
	err     string
	partial bool
	// where is the "file:line: key" of each file problem of the
	// configuration the reload read (NoteReloadWhere): the err of a
	// reload names a key, not where it is in the file.
	where []string
}

// text is the outcome's error as ctl status shows it: err, then a line
// "at FILE:LINE: KEY" for each of where.
func (o *reloadOutcome) text() string {
	s := o.err
	for _, w := range o.where {
		s += "\nat " + w
	}
	return s
}

// incompleteError is a reload that applied the subscriber entries but not
// every file the configuration names (a token file, a certificate, a
// webhook secret): those in force stay.
type incompleteError struct{ err error }

func (e *incompleteError) Error() string { return "reload incomplete: " + e.err.Error() }
func (e *incompleteError) Unwrap() error { return e.err }

// AppliedInPart reports whether err, Reload's, is a reload applied in
// part (the subscriber entries applied, some file or static subscriber
// not), rather than one refused (nothing applied).
func AppliedInPart(err error) bool {
	var inc *incompleteError
	return errors.As(err, &inc)
}

// NoteReloadRefused records a reload refused before Reload (the file does
// not load: its error): ctl status and the metrics show it until a reload
// applies the file.
func (a *Appliance) NoteReloadRefused(err error) {
	a.lastReload.Store(&reloadOutcome{at: time.Now(), err: err.Error()})
}

// NoteReloadWhere adds to the last reload's error, which Reload returned,
// where the problems of the files it names are in the configuration file
// ("/etc/ispmux/ispmux.toml:12: isp[0].token_files[0]", as check names
// them): ctl status shows them after the error, which names a key only.
func (a *Appliance) NoteReloadWhere(where []string) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if o := a.lastReload.Load(); o != nil && o.err != "" && len(where) > 0 {
		n := *o
		n.where = where
		a.lastReload.Store(&n)
	}
}

// configState is the reloads' state for the metrics.
func (a *Appliance) configState() metrics.Config {
	c := metrics.Config{LastReloadOK: true, LastSuccess: a.started}
	if t := a.lastApplied.Load(); t != nil {
		c.LastSuccess = *t
	}
	if o := a.lastReload.Load(); o != nil && o.err != "" {
		c.LastReloadOK, c.LastReloadPartial = false, o.partial
	}
	if pr := a.restartPending.Load(); pr != nil && len(pr.sections) > 0 {
		c.RestartPending = true
	}
	return c
}

// Reload applies cfg, a new reading of the configuration file, to the
// running appliance (SIGHUP): the subscriber entries — registrations
// (added, changed, blocked, removed; a DHCP binding that no longer matches
// its registration is revoked at once) and static subscribers (bound,
// moved, unbound), the token files, certificates and webhook settings,
// and [dhcp] (reloadDHCP). Everything else (interfaces, ISPs, datapath)
// is read at start only: a change there is reported, not applied. On
// error the running configuration stays as it was.
func (a *Appliance) Reload(cfg *configs.Config) (err error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	defer func() {
		now := time.Now()
		o := &reloadOutcome{at: now}
		var inc *incompleteError
		if err != nil {
			o.err, o.partial = err.Error(), errors.As(err, &inc)
		}
		if err == nil || o.partial {
			// The file's subscriber entries are what runs.
			a.lastApplied.Store(&now)
		}
		a.lastReload.Store(o)
	}()
	other := restartOnly(a.cfg, cfg)
	if !a.cfg.ServesAPI() && cfg.ServesAPI() {
		// Token files apply on reload, but the listener of an API
		// started without any is opened at start only.
		a.log.Warn("reload: the management API was started without token files: its listener opens at the next restart; the token files are read now", "listen", cfg.API.Listen)
		other = append(other, "api listener")
	}
	if len(other) > 0 {
		a.log.Warn("reload: changes that need a restart are not applied", "sections", strings.Join(other, ", "))
	}
	a.warnRemoved(cfg)
	// ctl status shows them until a restart (or a reload of a file
	// without them): a trial's operator who missed the log line could
	// not tell the running configuration from the file's.
	a.restartPending.Store(&pendingRestart{sections: other, at: time.Now()})
	// Only subscriber entries are taken from the new file; the rest stays
	// what the running appliance was built from, and indexes into Access
	// and ISPs must mean the same as at start.
	subs := slices.Clone(cfg.Subscribers)
	for i, s := range subs {
		ai := slices.IndexFunc(a.cfg.Access, func(x configs.Access) bool { return x.Name == cfg.Access[s.AccessIndex].Name })
		ii := slices.IndexFunc(a.cfg.ISPs, func(x configs.ISP) bool { return x.Name == s.ISP })
		if ai < 0 || ii < 0 {
			return fmt.Errorf("reload refused: subscriber %s: its access %q or ISP %q is not in the running configuration (restart to add it; nothing applied)",
				s.MAC, cfg.Access[s.AccessIndex].Name, s.ISP)
		}
		subs[i].AccessIndex, subs[i].ISPIndex = ai, ii
	}
	subs = a.withoutHeld(subs)
	_, idx := portPlan(a.cfg)
	oldStatic, newStatic := staticBindings(a.cfg.Access, a.subs, idx), staticBindings(a.cfg.Access, subs, idx)
	changed := func(k uint64, b engine.Binding, other map[uint64]engine.Binding) bool {
		o, ok := other[k]
		return !ok || o != b
	}
	// A new or moved static address that another subscriber holds refuses
	// the whole reload, before anything changes.
	type vrfAddr struct {
		isp uint8
		ip  netip.Addr
	}
	// The map of every binding's address is built only when a static
	// binding changes (a reload of registrations alone stays linear in
	// the file, not in the bindings held).
	staticChanged := false
	for k, b := range newStatic {
		staticChanged = staticChanged || changed(k, b, oldStatic)
	}
	for k, b := range oldStatic {
		staticChanged = staticChanged || changed(k, b, newStatic)
	}
	holders := map[vrfAddr]uint64{}
	if staticChanged {
		for _, b := range a.ctl.Bindings() {
			holders[vrfAddr{b.ISP, b.IP}] = b.MAC
		}
	}
	for k, b := range oldStatic {
		if changed(k, b, newStatic) {
			delete(holders, vrfAddr{b.ISP, b.IP})
		}
	}
	for k, b := range newStatic {
		if !changed(k, b, oldStatic) {
			continue
		}
		if h, ok := holders[vrfAddr{b.ISP, b.IP}]; ok && h != b.MAC {
			return fmt.Errorf("reload refused: static subscriber %s: %v at ISP %s is held by %s (nothing applied)",
				engine.MACString(b.MAC), b.IP, a.cfg.ISPs[b.ISP].Name, engine.MACString(h))
		}
		holders[vrfAddr{b.ISP, b.IP}] = b.MAC
	}
	prev := a.subs
	a.subs = subs
	touched, err := a.syncRegistrations()
	if err != nil {
		a.subs = prev
		return fmt.Errorf("reload refused: %w", err)
	}
	var errs []error
	// DHCP bindings that no longer match go first (a subscriber made
	// static loses its lease), then the static bindings change. Only the
	// MACs whose registration or static entry changed can have a binding
	// that no longer matches.
	a.dhcp.SetStatic(staticMACs(subs))
	for k, b := range newStatic {
		if changed(k, b, oldStatic) {
			touched = append(touched, b.MAC)
		}
	}
	revoked := a.dhcp.RevalidateMACs(touched)
	var unbound, bound int
	for k, b := range oldStatic {
		if changed(k, b, newStatic) && a.ctl.Unbind(b.Port, b.VLAN, b.MAC) {
			unbound++
			a.staticEvent(subscribers.EventReleased, b, "static binding removed by a reload")
		}
	}
	// Room for the static bindings about to be bound, at once: bound one
	// at a time, a reload adding 500k statics would grow the MAC table
	// and the FIB in steps, each a new slot array filled under the
	// engine's lock (other binds, unbinds and the next-hop refresh wait).
	toBind := 0
	for k, b := range newStatic {
		if changed(k, b, oldStatic) {
			toBind++
		}
	}
	a.ctl.Reserve(toBind)
	for k, b := range newStatic {
		if !changed(k, b, oldStatic) {
			continue
		}
		if err := a.ctl.Bind(b); err != nil {
			errs = append(errs, fmt.Errorf("static subscriber %s: %w", engine.MACString(b.MAC), err))
			continue
		}
		bound++
		a.staticEvent(subscribers.EventBound, b, "static binding added by a reload")
	}
	// Token files (rotation) and the API's certificate are re-read. The
	// ISPs are the running ones: each takes its token files and webhook
	// settings from its entry in the new file, and keeps the ones in
	// force when the file no longer has it (removed or renamed: a change
	// that needs a restart, reported above, not half applied here).
	eff := *cfg
	eff.ISPs = a.reloadedISPs(cfg.ISPs)
	// What is in force afterwards: the token files if they were applied,
	// the webhook settings if they were, each on its own (a reload that
	// rotated a token but failed a webhook keeps the rotation).
	inForce := slices.Clone(a.ispsInForce)
	if inForce == nil {
		inForce = slices.Clone(a.cfg.ISPs)
	}
	if err := a.tokens.SetFiles(auth.TokenFilesFromConfig(&eff)); err != nil {
		errs = append(errs, a.reloadTokensInForce(err))
	} else {
		for i := range inForce {
			inForce[i].TokenFiles = eff.ISPs[i].TokenFiles
		}
	}
	// The token files were read just above: the API re-reads only its
	// certificate (a second read of the files reported their error twice).
	if err := a.api.ReloadCert(); err != nil {
		errs = append(errs, fmt.Errorf("api: %w", err))
	}
	// Each ISP's webhook settings are in force once applied: a reload
	// that failed one ISP's webhook applied the others'.
	herr := a.hooks.Reload(&eff)
	if herr != nil {
		errs = append(errs, fmt.Errorf("webhooks: %w", herr))
	}
	failed := webhooks.FailedISPs(herr)
	for i := range inForce {
		if !failed[inForce[i].Name] {
			setWebhook(&inForce[i], &eff.ISPs[i])
		}
	}
	a.ispsInForce = inForce
	a.reloadDHCP(cfg.DHCP)
	if a.portal != nil {
		if err := a.portal.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("portal: %w (the certificate in force stays)", err))
		}
	}
	// dhcp_changed: the bindings whose registration the file changed,
	// ended at once or, for a device moved to another ISP, left until
	// its next message (moves_pending, all of them, this reload's and
	// earlier ones'): a trial read "dhcp_revoked=1" as ended.
	attrs := []any{"subscribers", len(subs), "static_unbound", unbound, "static_bound", bound, "dhcp_changed", revoked, "moves_pending", a.dhcp.MovesPending()}
	if len(errs) > 0 {
		// Not an INFO line before the caller's ERROR: it says at once
		// that part of the file was not applied.
		a.log.Warn("reloaded", append(attrs, "not_applied", len(errs))...)
		return &incompleteError{errors.Join(errs...)}
	}
	a.log.Info("reloaded", attrs...)
	return nil
}

// reloadDHCP applies d, a reload's [dhcp], when it differs from the limits
// in force: the proxy's limits (dhcpproxy.Limits says how each applies),
// and the datapath's DHCP budget kept above the per-MAC limit (the
// portal's hint of how long a move takes follows the proxy's LeaseMax
// itself). The configuration is valid (configs checked every value's
// range), so nothing here fails.
func (a *Appliance) reloadDHCP(d configs.DHCP) {
	old, l := a.dhcp.Limits(), dhcpLimits(d)
	if l == old {
		return
	}
	a.dhcp.SetLimits(l)
	setDHCPBudget(a.ctl, d)
	a.log.Info("reload: [dhcp] applied", "timeout", l.Timeout, "max_pending", l.MaxPending, "mac_rate", l.MACRate, "mac_burst", l.MACBurst,
		"circuit_rate", l.CircuitRate, "circuit_burst", l.CircuitBurst, "max_bindings_per_circuit", l.MaxBindingsPerCircuit,
		"client_lease_max", l.ClientLeaseMax)
}

// staticEvent records a static binding's change in the event log (the
// audit trail of who had which address).
func (a *Appliance) staticEvent(kind subscribers.EventKind, b engine.Binding, why string) {
	var mac [6]byte
	fib.PutMAC(mac[:], b.MAC)
	isp := ""
	if int(b.ISP) < len(a.cfg.ISPs) {
		isp = a.cfg.ISPs[b.ISP].Name
	}
	e := subscribers.Event{Kind: kind, MAC: mac, ISP: isp, IP: b.IP, Reason: why, Actor: "config"}
	if reg, ok := a.reg.Lookup(b.MAC); ok {
		e.Customer = reg.CustomerID
	}
	if ac := a.accessName(b.Port, b.VLAN); ac != "" {
		e.Access = ac
	}
	if _, err := a.store.AddEvent(e); err != nil {
		a.log.Warn("event not stored", "kind", kind, "err", err)
	}
}

// reloadTokensInForce is the reload's error when the new configuration's
// token files failed to load (err): the files in force are re-read all the
// same, so that a token retired by rewriting its file stops working even
// when another file is broken; an error of that re-read is added when it
// says something err does not.
func (a *Appliance) reloadTokensInForce(err error) error {
	rerr := a.tokens.Reload()
	switch {
	case rerr == nil:
		return fmt.Errorf("api tokens: %w (the token files in force were re-read)", err)
	case rerr.Error() == err.Error():
		return fmt.Errorf("api tokens: %w (the tokens in force stay)", err)
	}
	return fmt.Errorf("api tokens: %w; the token files in force: %w (the tokens in force stay)", err, rerr)
}

// reloadedISPs returns the running ISPs, each with the token files and
// webhook settings of its entry (by name) in isps, the new file's, or the
// ones in force (the last reload's, else start's) when isps has none: a
// running ISP's API access and webhook are never cut by a file a reload
// does not apply, nor turned back to start's (a retired token revived).
func (a *Appliance) reloadedISPs(isps []configs.ISP) []configs.ISP {
	base := a.ispsInForce
	if base == nil {
		base = a.cfg.ISPs
	}
	out := slices.Clone(base)
	for i := range out {
		j := slices.IndexFunc(isps, func(p configs.ISP) bool { return p.Name == out[i].Name })
		if j < 0 {
			a.log.Warn("reload: an ISP ispmux runs is not in the file: its API tokens and webhook stay as they are until a restart", "isp", out[i].Name)
			continue
		}
		setReloadable(&out[i], &isps[j])
	}
	return out
}

// setReloadable sets what a reload applies of an ISP (token files and
// webhook settings) in to from from.
func setReloadable(to, from *configs.ISP) {
	to.TokenFiles = from.TokenFiles
	setWebhook(to, from)
}

// setWebhook sets an ISP's webhook settings in to from from.
func setWebhook(to, from *configs.ISP) {
	to.WebhookURL, to.WebhookSecretFile, to.WebhookCAFile = from.WebhookURL, from.WebhookSecretFile, from.WebhookCAFile
	to.WebhookInsecure, to.WebhookRetryMax, to.WebhookRetryMaxDur = from.WebhookInsecure, from.WebhookRetryMax, from.WebhookRetryMaxDur
}

// warnRemoved warns of the accesses and ISPs running that cfg, a reload's
// file, does not have by name (removed, or renamed: a name is the key of
// the bindings stored with it): at the next restart their DHCP bindings
// end, their subscribers' leases released at the ISPs. A trial's operator
// gave an access a name and lost every binding on it at the restart, with
// nothing saying so before.
func (a *Appliance) warnRemoved(cfg *configs.Config) {
	_, idx := portPlan(a.cfg)
	for _, ac := range a.cfg.Access {
		if slices.ContainsFunc(cfg.Access, func(x configs.Access) bool { return x.Name == ac.Name }) {
			continue
		}
		n := a.dhcp.LeasesOn(uint8(idx[ac.Interface]), uint16(ac.VLAN))
		a.log.Warn("reload: access "+ac.Name+" is not in the file (removed, or renamed: a binding is stored under its access's name): at the restart its DHCP bindings end, their leases released at the ISPs; keep the name to keep them",
			"access", ac.Name, "interface", ac.Interface, "vlan", ac.VLAN, "bindings", n)
	}
	per := a.dhcp.LeasesByISP()
	counts := map[string]tenants.ISPInfo{}
	if infos, err := a.ten.ISPs(context.Background()); err == nil {
		for _, i := range infos {
			counts[i.Name] = i
		}
	}
	for _, isp := range a.cfg.ISPs {
		if slices.ContainsFunc(cfg.ISPs, func(x configs.ISP) bool { return x.Name == isp.Name }) {
			continue
		}
		// With its customers and devices: what the restart strands (a
		// trial's reload said bindings=0 of an ISP with 200k customers).
		a.log.Warn("reload: ISP "+isp.Name+" is not in the file (removed, or renamed: the name is the key of its customers, devices and bindings): at the restart its DHCP bindings end and its customers get no service; keep the name to keep them, or purge them after the restart (ctl purge-isp)",
			"isp", isp.Name, "bindings", per[isp.Name], "customers", counts[isp.Name].Customers, "devices", counts[isp.Name].Devices)
	}
}

// restartOnly names the top-level sections that differ between a and b,
// other than the subscriber entries.
func restartOnly(a, b *configs.Config) []string {
	var out []string
	for _, c := range []struct {
		name string
		x, y any
	}{
		{"appliance", reloadableAppliance(a.Appliance), reloadableAppliance(b.Appliance)}, {"datapath", a.Datapath, b.Datapath}, {"api", reloadableAPI(a.API), reloadableAPI(b.API)},
		{"metrics", a.Metrics, b.Metrics}, {"portal", a.Portal, b.Portal},
		{"access", a.Access, b.Access}, {"isp", reloadableISPs(a.ISPs), reloadableISPs(b.ISPs)},
	} {
		if !reflect.DeepEqual(c.x, c.y) {
			out = append(out, c.name)
		}
	}
	return out
}

// reloadableAppliance is c without what a reload applies (log_level: ispmux
// run sets it on SIGHUP).
func reloadableAppliance(c configs.Appliance) configs.Appliance {
	c.LogLevel = ""
	return c
}

// reloadableAPI is c without what a reload applies (token files; the
// certificate files are re-read too, their names are not).
func reloadableAPI(c configs.API) configs.API {
	c.OperatorTokenFile, c.ClaimTokenFiles = "", nil
	return c
}

// reloadableISPs is isps without what a reload applies (token files and
// webhook settings).
func reloadableISPs(isps []configs.ISP) []configs.ISP {
	out := slices.Clone(isps)
	for i := range out {
		setReloadable(&out[i], &configs.ISP{})
	}
	return out
}

// syncRegistrations makes the configuration-sourced devices those of the file
// (devices the API or a claim attached are left alone, and reported),
// publishes them to the registry and returns the MACs whose registration
// it wrote or removed.
func (a *Appliance) syncRegistrations() ([]uint64, error) {
	devs := make([]tenants.ConfigDevice, 0, len(a.subs))
	for _, s := range a.subs {
		devs = append(devs, tenants.ConfigDevice{MAC: s.HWAddr, ISP: s.ISP, CustomerID: s.CustomerID, Access: s.Access, Blocked: s.Blocked,
			StaticIP: s.Addr})
	}
	rep, err := a.ten.SyncConfig(devs)
	if err != nil {
		return nil, fmt.Errorf("appliance: registrations: %w", err)
	}
	for _, c := range rep.Conflicts {
		a.log.Warn("configuration conflict: the API's choice stays", "conflict", c)
	}
	a.log.Info("registrations", "from_config", len(devs), "added", rep.Added, "changed", rep.Changed, "removed", rep.Removed,
		"conflicts", len(rep.Conflicts))
	return rep.Touched, nil
}

// withoutHeld returns subs without the static address of the entries whose
// MAC the API or a claim attached: the sync leaves such an entry out (the
// API's choice stays), so its address is not bound either, nor its MAC
// taken for static (which would revoke the API's device's lease). It reads
// the registry (in memory: a start or reload with 100k static entries
// makes no store read for them).
func (a *Appliance) withoutHeld(subs []configs.Subscriber) []configs.Subscriber {
	cloned := false
	for i, s := range subs {
		if !s.Addr.IsValid() {
			continue
		}
		r, ok := a.reg.Lookup(engine.MAC48(s.HWAddr))
		if !ok || r.Source == subscribers.SourceConfig {
			continue
		}
		if !cloned {
			subs, cloned = slices.Clone(subs), true
		}
		a.log.Warn("static subscriber not bound: the API or a claim attached its MAC (the API's choice stays)", "mac", s.MAC, "isp", r.ISP, "source", r.Source)
		subs[i].Addr = netip.Addr{}
	}
	return subs
}
