package tenants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ispmux/ispmux/auth"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/circuitid"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// Proxy is what the tenant model needs of the DHCP proxy: after a change
// that takes service away from MACs, their live bindings are ended (a
// RELEASE to the old ISP through a durable intent).
type Proxy interface {
	RevalidateMACs(macs []uint64) int
	// RevalidateMACsImmediate is RevalidateMACs for an operator's
	// immediate cut: a device moved to another ISP loses its old binding
	// at once instead of at its next renewal.
	RevalidateMACsImmediate(macs []uint64) int
}

// LeaseCounter is implemented by a Proxy that counts its bindings per
// ISP (dhcpproxy.Proxy): ISPs and Stats then read no binding.
type LeaseCounter interface {
	LeasesByISP() map[string]int
}

// ClientLeases is implemented by a Proxy that knows the client leases it
// gave (dhcpproxy.Proxy): a binding's view shows when the device's own
// lease runs out beside the ISP's (Binding.ClientLeaseEnd).
type ClientLeases interface {
	// ClientLeaseEnd is the end of the client lease given on the
	// binding of mac on the circuit of access and vlan at isp's address
	// ip; false if not known or if the lease held there is another's.
	ClientLeaseEnd(access string, vlan uint16, mac uint64, isp string, ip netip.Addr) (time.Time, bool)
}

// Admission is the datapath's set of registered MACs (engine.Control).
type Admission interface {
	// SetAdmitted sets the whole set (Load) and turns filtering on.
	SetAdmitted(macs []uint64) error
	Admit(mac uint64) error
	Unadmit(mac uint64)
}

// Config is the tenant service's configuration.
type Config struct {
	// ISPs are the configured ISP names.
	ISPs []string
	// MaxDevices caps the registered MACs (the datapath's MAC table).
	MaxDevices int
	// Claim limits (zero values: the defaults below).
	Claim ClaimLimits
	// Circuits are the configured access circuits, where bindings are
	// (BindingsOf looks a MAC up on each).
	Circuits []Circuit
}

// Circuit is an access circuit: its name and VLAN, a binding's key with
// the MAC.
type Circuit struct {
	Access string
	VLAN   uint16
}

// Tenants implements Service over the store, the registry and the proxy.
// It is the one writer of the tenant model: mu serialises every change
// (read, check, write, publish), so checks made under it hold when the
// write commits. Reads go to the store (and the in-memory counts) without
// it.
type Tenants struct {
	cfg   Config
	store *subscribers.Store
	reg   *registry.Registry
	proxy Proxy
	adm   Admission
	log   *slog.Logger
	isps  map[string]bool

	mu sync.Mutex
	// counts per ISP (customers, devices), kept by the writer; read by
	// ISPs and Stats under cmu.
	cmu    sync.Mutex
	counts map[string]*ispCounts

	claims *claimLimiter
	// importLog limits the log lines of import batches the store
	// refused (importlog.go).
	importLog importLog
	// refusals bounds the attach-refused events per actor (refusals.go).
	refusals *refusalNotes

	// loaded is set by the first load: a configuration sync after it
	// publishes its changes alone (SyncConfig).
	loaded bool

	// statics are the configuration's static subscribers (SyncConfig):
	// their address, and how many each ISP has. The datapath binds them
	// from the file; the store holds no DHCP binding of theirs, so the
	// views show them from here (Device.StaticIP, ISPInfo.Static).
	smu     sync.RWMutex
	statics map[subscribers.MAC]netip.Addr
	nstatic map[string]int
}

type ispCounts struct{ customers, devices int }

// New returns the tenant service. Call Load before use.
func New(cfg Config, store *subscribers.Store, reg *registry.Registry, proxy Proxy, adm Admission, log *slog.Logger) *Tenants {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tenants{cfg: cfg, store: store, reg: reg, proxy: proxy, adm: adm, log: log,
		isps: map[string]bool{}, counts: map[string]*ispCounts{}, claims: newClaimLimiter(cfg.Claim), refusals: newRefusalNotes()}
	for _, n := range cfg.ISPs {
		t.isps[n] = true
		t.counts[n] = &ispCounts{}
	}
	return t
}

// SetProxy sets the DHCP proxy (built after the tenant service, which
// loads the registry it reads).
func (t *Tenants) SetProxy(p Proxy) { t.proxy = p }

// Load publishes the store's devices to the registry and the admission
// set, and counts customers and devices per ISP. Linear in the store, and
// streaming: the devices are read in one pass (no list of them is built)
// and the customers are only counted (their suspended ones listed).
func (t *Tenants) Load() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.loadLocked()
}

// warnUnconfigured logs, per ISP name the store holds customers or
// devices of and the configuration has no [[isp]] of (removed, or
// renamed), how many: they get no service and no API route reaches them
// (/v1/isps/NAME answers 404), and its devices' MACs stay taken (an attach
// at another ISP is refused) until the ISP is configured again under that
// name, or the operator moves them (ctl move MAC ISP CUSTOMER) or purges
// them (PurgeISP). Before,
// a renamed ISP's customers vanished from every count without a word.
func (t *Tenants) warnUnconfigured(customers, devices map[string]int) {
	gone := map[string][2]int{}
	for i, counts := range []map[string]int{customers, devices} {
		for isp, n := range counts {
			if !t.isps[isp] && isp != "" && n > 0 {
				g := gone[isp]
				g[i] = n
				gone[isp] = g
			}
		}
	}
	for _, isp := range slices.Sorted(maps.Keys(gone)) {
		t.log.Warn("tenants: the store holds customers and devices of an ISP that is not configured: they get no service, "+
			"no API route reaches them, and the devices' MACs stay taken; configure the ISP again under this name, move the devices (ctl move), or purge them (ctl purge-isp)",
			"isp", isp, "customers", gone[isp][0], "devices", gone[isp][1])
	}
}

// loadLocked is Load with t.mu held.
func (t *Tenants) loadLocked() error {
	sum, err := t.store.CustomerSummary()
	if err != nil {
		return fmt.Errorf("tenants: load customers: %w", err)
	}
	suspended := make(map[[2]string]bool, len(sum.Suspended))
	for _, k := range sum.Suspended {
		suspended[[2]string{k.ISP, k.ID}] = true
	}
	customers := 0
	devices := map[string]int{}
	for _, n := range sum.PerISP {
		customers += n
	}
	// A first load fills an empty registry: sized once, and nothing to
	// remove afterwards.
	fresh := t.reg.Len() == 0
	var seen map[uint64]struct{}
	if fresh {
		t.reg.Reserve(sum.Registrations, customers)
	} else {
		seen = make(map[uint64]struct{}, sum.Registrations)
	}
	macs := make([]uint64, 0, sum.Registrations)
	unusable := 0 // devices whose MAC no frame can carry
	// The registrations are decoded here (bbolt's cursor) and published
	// to the registry by another goroutine, side by side: at a million
	// devices each half is about a CPU-second of a start-up.
	type pending struct {
		mac  uint64
		e    registry.Entry
		susp bool
	}
	const batch = 4096
	full, free := make(chan []pending, 4), make(chan []pending, 6)
	var wg sync.WaitGroup
	wg.Go(func() {
		for b := range full {
			for i := range b {
				t.reg.Put(b[i].mac, b[i].e, b[i].susp)
				devices[b[i].e.ISP]++
			}
			clear(b)
			select {
			case free <- b[:0]:
			default:
			}
		}
	})
	cur := make([]pending, 0, batch)
	err = t.store.ForEachRegistration(func(r *subscribers.Registration) error {
		mac := binding.MAC48(r.MAC)
		if seen != nil {
			seen[mac] = struct{}{}
		}
		if !binding.SubscriberMAC(mac) {
			// No frame carries it as a source (an older build stored
			// one: parseMAC refuses it now). Not admitted, and not a
			// reason to refuse to start: the record stays for the
			// operator to delete.
			unusable++
		} else {
			macs = append(macs, mac)
		}
		cur = append(cur, pending{mac, registry.Entry{ISP: r.ISP, CustomerID: r.CustomerID, Access: r.Access, Blocked: r.Blocked, Source: r.Source},
			suspended[[2]string{r.ISP, r.CustomerID}]})
		if len(cur) == batch {
			full <- cur
			select {
			case cur = <-free:
			default:
				cur = make([]pending, 0, batch)
			}
		}
		return nil
	})
	if len(cur) > 0 {
		full <- cur
	}
	close(full)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("tenants: load devices: %w", err)
	}
	if unusable > 0 {
		t.log.Warn("tenants: stored devices with the all-zero or a group MAC address are not admitted (no frame carries one as its source); list them with ctl devices and delete them with ctl device-del",
			"devices", unusable)
	}
	if t.adm != nil {
		if err := t.adm.SetAdmitted(macs); err != nil {
			return fmt.Errorf("tenants: %w", err)
		}
	}
	if !fresh {
		// A customer the registry knew keeps its flag in Put: set it.
		for _, k := range sum.Suspended {
			t.reg.SetSuspended(k.ISP, k.ID, true)
		}
		var gone []uint64
		t.reg.RangeMACs(func(mac uint64) bool {
			if _, ok := seen[mac]; !ok {
				gone = append(gone, mac)
			}
			return true
		})
		for _, mac := range gone {
			t.reg.Delete(mac)
		}
	}
	t.cmu.Lock()
	for isp, c := range t.counts {
		*c = ispCounts{customers: sum.PerISP[isp], devices: devices[isp]}
	}
	t.cmu.Unlock()
	t.warnUnconfigured(sum.PerISP, devices)
	t.loaded = true
	t.log.Info("tenants loaded", "customers", customers, "devices", t.reg.Len())
	return nil
}

// publish makes r visible to the DHCP path and the datapath. A blocked
// MAC is admitted too: its DHCP reaches the proxy, which refuses it
// (blocked_subscriber) and says so, within the datapath's budget of each
// subscriber's DHCP (engine, dhcp_flood), so a blocked device's flood
// neither fills the punt queue nor spends the port's sample of
// unregistered MACs' DHCP, which new devices' onboarding goes through.
func (t *Tenants) publish(r subscribers.Registration, suspended bool) error {
	mac := binding.MAC48(r.MAC)
	if t.adm != nil {
		if err := t.adm.Admit(mac); err != nil {
			return fmt.Errorf("tenants: device %s: %w", binding.MACString(mac), err)
		}
	}
	t.reg.Put(mac, registry.Entry{ISP: r.ISP, CustomerID: r.CustomerID, Access: r.Access, Blocked: r.Blocked, Source: r.Source}, suspended)
	return nil
}

func (t *Tenants) unpublish(mac uint64) {
	t.reg.Delete(mac)
	if t.adm != nil {
		t.adm.Unadmit(mac)
	}
}

// revalidate ends the live bindings of macs that no longer match their
// registration.
func (t *Tenants) revalidate(macs ...uint64) {
	if t.proxy != nil && len(macs) > 0 {
		t.proxy.RevalidateMACs(macs)
	}
}

// ispDeviceShare is how many of the box's device places (MaxDevices) what
// actor a attaches to one ISP may hold, with several ISPs configured:
// three quarters, as one ISP's share of max_pending (0: no share, the box's
// cap alone). An ISP's token, its customers' claims (the portal's
// included) and its imports are held to it, so that one ISP's tenant
// attaching made-up MACs cannot take every place and have every other
// ISP's attaches refused; the operator and the configuration are not.
func (t *Tenants) ispDeviceShare(a Actor) int {
	if t.cfg.MaxDevices <= 0 || len(t.cfg.ISPs) < 2 || a.Kind == ActorOperator || a.Kind == ActorConfig {
		return 0
	}
	return max(1, t.cfg.MaxDevices*3/4)
}

// ispDevices is the number of devices registered to isp (t.mu held by
// the writer asking, which keeps it).
func (t *Tenants) ispDevices(isp string) int {
	t.cmu.Lock()
	defer t.cmu.Unlock()
	if n := t.counts[isp]; n != nil {
		return n.devices
	}
	return 0
}

func (t *Tenants) count(isp string, customers, devices int) {
	t.cmu.Lock()
	if n := t.counts[isp]; n != nil {
		n.customers += customers
		n.devices += devices
	}
	t.cmu.Unlock()
}

// HasISP reports whether name is a configured ISP.
func (t *Tenants) HasISP(name string) bool { return t.isps[name] }

// ISPs lists the configured ISPs with their counts.
func (t *Tenants) ISPs(ctx context.Context) ([]ISPInfo, error) {
	var bindings map[string]int
	if c, ok := t.proxy.(LeaseCounter); ok {
		// The proxy's lease table mirrors the stored bindings and counts
		// them as they come and go: O(ISPs), not a read of the store.
		bindings = c.LeasesByISP()
	} else {
		bindings = map[string]int{}
		if err := t.store.ForEachBinding(func(b subscribers.Binding) error {
			bindings[b.ISP]++
			return nil
		}); err != nil {
			return nil, err
		}
	}
	t.cmu.Lock()
	defer t.cmu.Unlock()
	out := make([]ISPInfo, 0, len(t.cfg.ISPs))
	for _, n := range t.cfg.ISPs {
		c := t.counts[n]
		out = append(out, ISPInfo{Name: n, Customers: c.customers, Devices: c.devices, Bindings: bindings[n]})
	}
	t.smu.RLock()
	for i := range out {
		out[i].Static = t.nstatic[out[i].Name]
	}
	t.smu.RUnlock()
	return out, nil
}

// Counts returns the customers and devices per ISP, from memory (for
// metrics at scrape time; ISPs also counts bindings, from the store).
func (t *Tenants) Counts() map[string]ISPInfo {
	t.cmu.Lock()
	defer t.cmu.Unlock()
	out := make(map[string]ISPInfo, len(t.counts))
	for n, c := range t.counts {
		out[n] = ISPInfo{Name: n, Customers: c.customers, Devices: c.devices}
	}
	return out
}

// Stats returns the box's counts.
func (t *Tenants) Stats(ctx context.Context) (Stats, error) {
	isps, err := t.ISPs(ctx)
	if err != nil {
		return Stats{}, err
	}
	s := Stats{ISPs: len(isps)}
	for _, i := range isps {
		s.Customers += i.Customers
		s.Devices += i.Devices
		s.Bindings += i.Bindings
	}
	return s, nil
}

// event builds a store event of a change made by a.
func event(a Actor, kind subscribers.EventKind, isp, customer string, mac subscribers.MAC, reason string) subscribers.Event {
	return subscribers.Event{Time: time.Now(), Kind: kind, ISP: isp, Customer: customer, MAC: mac, Reason: reason,
		Actor: a.String(), RequestID: a.RequestID}
}

// String names the actor for the event log: "operator:NAME", "isp:NAME".
func (a Actor) String() string {
	if a.Name == "" {
		return string(a.Kind)
	}
	return string(a.Kind) + ":" + a.Name
}

// apply commits w (its events wake the event streams).
func (t *Tenants) apply(w subscribers.TenantWrite) (subscribers.TenantResult, error) {
	res, err := t.store.ApplyTenant(w)
	if err != nil {
		return res, fmt.Errorf("store: %w", err)
	}
	return res, nil
}

// checkISP refuses an unknown ISP name.
func (t *Tenants) checkISP(isp string) error {
	if !t.isps[isp] {
		return fmt.Errorf("%w: ISP %q", ErrNotFound, isp)
	}
	return nil
}

// parseMAC parses the MAC of a device to register, attach or block: an
// EUI-48 unicast address, not the all-zero one (no frame carries either
// as its source; configs refuses them too).
func parseMAC(s string) (subscribers.MAC, error) {
	m, err := parseAnyMAC(s)
	if err != nil {
		return m, err
	}
	if m[0]&1 != 0 {
		return subscribers.MAC{}, fmt.Errorf("%w: MAC %q is a group address", ErrInvalid, s)
	}
	if m == (subscribers.MAC{}) {
		return subscribers.MAC{}, fmt.Errorf("%w: MAC %q: the all-zero MAC address is not a subscriber", ErrInvalid, s)
	}
	return m, nil
}

// parseAnyMAC parses a MAC to look up, unblock or detach: any EUI-48
// address, so that a record an older build let in (the all-zero MAC)
// can be seen and removed.
func parseAnyMAC(s string) (subscribers.MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return subscribers.MAC{}, fmt.Errorf("%w: MAC %q is not an EUI-48 address", ErrInvalid, s)
	}
	return subscribers.MAC(hw), nil
}

// validCustomerID checks a customer ID (circuitid.CustomerIDProblem: it
// becomes the Option 82 subscriber-id).
func validCustomerID(id string) error {
	if why := circuitid.CustomerIDProblem(id); why != "" {
		if id == "" || len(id) > circuitid.MaxCustomerID {
			return fmt.Errorf("%w: customer_id %s", ErrInvalid, why)
		}
		return fmt.Errorf("%w: customer_id %q %s", ErrInvalid, id, why)
	}
	return nil
}

// hashPassword hashes or checks the password of in.
func hashOf(password, hash string) (string, error) {
	switch {
	case password != "" && hash != "":
		return "", fmt.Errorf("%w: give password or password_hash, not both", ErrInvalid)
	case password != "":
		if len(password) > 1024 {
			return "", fmt.Errorf("%w: password longer than 1024 bytes", ErrInvalid)
		}
		return auth.HashPassword(password)
	case hash != "":
		if err := auth.CheckImportedHash(hash); err != nil {
			return "", fmt.Errorf("%w: password_hash: %v", ErrInvalid, err)
		}
		return hash, nil
	}
	return "", nil
}

// listErr maps a store error of a list to the API's: a bad cursor is the
// caller's mistake (ErrInvalid), not the box's.
func listErr(err error) error {
	if errors.Is(err, subscribers.ErrInvalid) {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return err
}

// notFound maps a store error of a lookup by key to the API's: no such
// record is ErrNotFound, and so is a key the store refuses (empty, too
// long, a NUL): nothing can be stored under it. Input that names a record
// to create or attach to is checked before (validCustomerID) and refused
// as ErrInvalid instead.
func notFound(what string, err error) error {
	if errors.Is(err, subscribers.ErrNotFound) || errors.Is(err, subscribers.ErrInvalid) {
		return fmt.Errorf("%w: %s", ErrNotFound, what)
	}
	return err
}

func macString(m subscribers.MAC) string { return strings.ToLower(net.HardwareAddr(m[:]).String()) }

// setStatics records the configuration's static subscribers (SyncConfig).
func (t *Tenants) setStatics(devs []ConfigDevice) {
	m, n := map[subscribers.MAC]netip.Addr{}, map[string]int{}
	for _, d := range devs {
		if d.StaticIP.IsValid() {
			m[d.MAC] = d.StaticIP
			n[d.ISP]++
		}
	}
	t.smu.Lock()
	t.statics, t.nstatic = m, n
	t.smu.Unlock()
}

// deviceView is the device as the API shows it, with its configured
// static address if it has one.
func (t *Tenants) deviceView(r subscribers.Registration) Device {
	d := Device{MAC: macString(r.MAC), ISP: r.ISP, CustomerID: r.CustomerID, Access: r.Access, Source: r.Source,
		Blocked: r.Blocked, Updated: r.Updated}
	t.smu.RLock()
	d.StaticIP = t.statics[r.MAC]
	t.smu.RUnlock()
	return d
}
