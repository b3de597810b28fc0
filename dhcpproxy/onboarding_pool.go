package dhcpproxy

import (
	"container/heap"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// The onboarding state (see onboarding.go for the protocol): each
// onboarding circuit's pool, the onboarding leases and the outstanding
// offers (RAM only), the quarantined addresses, the handovers' holds (RAM
// only), and one timer heap for all four. onboardingTable.mu guards all of it and is held only inside
// these methods.

// Onboarding defaults and limits.
const (
	// defaultOnboardingLease is the lease time when Onboarding.LeaseTime
	// is not set (configs fills it).
	defaultOnboardingLease = 20 * time.Second
	// onboardingOfferTTL is how long an OFFER holds its address.
	onboardingOfferTTL = 10 * time.Second
	// onboardingRate and onboardingBurst are each onboarding circuit's
	// budget for the messages of MACs without a device record (one
	// bucket for all of them: no per-MAC state for made-up MACs),
	// separate from the registered subscribers' circuit budget.
	onboardingRate, onboardingBurst = 50, 100
	// onboardingRetry is when an end that the store refused is tried
	// again.
	onboardingRetry = time.Second
)

// obPool is one circuit's onboarding pool. Its configuration is immutable
// after New; cursor, used and limit are guarded by onboardingTable.mu.
type obPool struct {
	c         *Circuit
	prefix    netip.Prefix
	router    netip.Addr // the pool's first address (network+1)
	mask      net.IPMask
	lo, hi    uint32 // the assignable range: network+2 .. broadcast-1
	leaseTime time.Duration
	maxLeases int // 0: the pool's size
	dns       netip.Addr
	uri       string

	cursor uint32 // next-fit: where the next search starts
	used   int    // leases and offers on this circuit
	limit  bucket // onboardingRate, onboardingBurst
}

// newPool returns c's pool, or nil and why when its configuration cannot
// be served (configs checks it; a bad one turns onboarding off there).
// PoolRouter is the router an onboarding pool's leases give (option 3):
// its first address. The datapath answers pings to it (engine.Garden).
func PoolRouter(pool netip.Prefix) netip.Addr { return pool.Masked().Addr().Next() }

func newPool(c *Circuit) (*obPool, string) {
	o := c.Onboarding
	pfx := o.Pool.Masked()
	if !pfx.Addr().Is4() || pfx.Bits() < 8 || pfx.Bits() > 30 {
		return nil, "pool must be an IPv4 prefix of /8 to /30"
	}
	net0 := ip4(pfx.Addr())
	bcast := net0 | (1<<(32-pfx.Bits()) - 1)
	pl := &obPool{
		c: c, prefix: pfx, router: PoolRouter(pfx), mask: net.CIDRMask(pfx.Bits(), 32),
		lo: net0 + 2, hi: bcast - 1, leaseTime: o.LeaseTime, maxLeases: o.MaxLeases, dns: o.DNS, uri: o.CaptiveURI,
	}
	if pl.leaseTime <= 0 {
		pl.leaseTime = defaultOnboardingLease
	}
	pl.cursor = pl.lo
	return pl, ""
}

// assignable reports whether a may be leased from pl: inside the pool,
// not its network, router or broadcast address, not our own address nor
// the portal's.
func (pl *obPool) assignable(a netip.Addr) bool {
	if !a.Is4() || !pl.prefix.Contains(a) || a == pl.c.Addr || a == pl.dns {
		return false
	}
	x := ip4(a)
	return x >= pl.lo && x <= pl.hi
}

// obLease is an onboarding lease held (the mirror of the store's).
type obLease struct {
	mac              uint64
	pool             *obPool
	ip               netip.Addr
	granted, expires time.Time
}

// obOffer is an outstanding OFFER. pinned: its REQUEST is being committed
// (expiry must not free the address meanwhile).
type obOffer struct {
	pool   *obPool
	ip     netip.Addr
	until  time.Time
	pinned bool
}

// obQuarantine keeps an address from being offered until until; owned:
// except to owner (its holder before a restart).
type obQuarantine struct {
	until time.Time
	owner uint64
	owned bool
}

// obHold keeps a MAC handed over to its ISP on the circuit of the
// onboarding lease the handover ended (pool's), until until (heldOn).
type obHold struct {
	pool  *obPool
	until time.Time
}

type obTimerKind uint8

const (
	timerLease obTimerKind = iota
	timerOffer
	timerQuarantine
	timerHold
)

// obTimer is a due time in the heap. It may be stale (the lease was
// renewed or ended, the offer taken): checked against the state when it
// fires.
type obTimer struct {
	at   time.Time
	kind obTimerKind
	mac  uint64
	ip   netip.Addr
}

type obTimers []obTimer

func (h obTimers) Len() int           { return len(h) }
func (h obTimers) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h obTimers) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *obTimers) Push(x any)        { *h = append(*h, x.(obTimer)) }
func (h *obTimers) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// onboardingTable owns the onboarding state. pools and prefixes are
// immutable after init (read without mu).
type onboardingTable struct {
	pools    map[circuitKey]*obPool
	prefixes []netip.Prefix

	mu     sync.Mutex
	leases map[uint64]*obLease // by MAC: a MAC holds one at most
	offers map[uint64]*obOffer // by MAC
	// held maps each leased or offered address to its MAC (any
	// circuit: the garden VRF is one address space).
	held       map[netip.Addr]uint64
	quarantine map[netip.Addr]obQuarantine
	qOwner     map[uint64]netip.Addr // owner → its quarantined address
	holds      map[uint64]obHold     // by MAC: handed over, see heldOn
	total      int                   // leases and offers, all circuits
	timers     obTimers
}

func (t *onboardingTable) init(circuits []Circuit, log *slog.Logger) {
	t.pools = map[circuitKey]*obPool{}
	t.leases = map[uint64]*obLease{}
	t.offers = map[uint64]*obOffer{}
	t.held = map[netip.Addr]uint64{}
	t.quarantine = map[netip.Addr]obQuarantine{}
	t.qOwner = map[uint64]netip.Addr{}
	t.holds = map[uint64]obHold{}
	for i := range circuits {
		c := &circuits[i]
		if c.Onboarding == nil {
			continue
		}
		pl, why := newPool(c)
		if pl == nil {
			log.Error("dhcp: onboarding off on this access: "+why, "access", c.Name, "vlan", c.VLAN, "pool", c.Onboarding.Pool)
			continue
		}
		t.pools[circuitKey{c.Port, c.VLAN}] = pl
		t.prefixes = append(t.prefixes, pl.prefix)
	}
}

// inAnyPool reports whether a is inside some circuit's onboarding pool.
func (t *onboardingTable) inAnyPool(a netip.Addr) bool {
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// allow takes one token of pl's onboarding budget.
func (t *onboardingTable) allow(pl *obPool, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return pl.limit.take(now, onboardingRate, onboardingBurst)
}

// leaseOf returns a copy of mac's lease.
func (t *onboardingTable) leaseOf(mac uint64) (obLease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.leases[mac]
	if l == nil {
		return obLease{}, false
	}
	return *l, true
}

// heldOn returns the pool whose circuit holds mac against the other
// circuits at now: its lease's while the lease is live (its holder renews
// it before its end: T1 half of it, T2 7/8), else, once its handover
// ended it, that lease's until its hold lapses (hold, keepHold). No other circuit is
// served mac's DHCP meanwhile (takeOnboarding).
func (t *onboardingTable) heldOn(mac uint64, now time.Time) (*obPool, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.leases[mac]; l != nil && l.expires.After(now) {
		return l.pool, true
	}
	if h, ok := t.holds[mac]; ok && h.until.After(now) {
		return h.pool, true
	}
	return nil, false
}

// hold keeps mac on pl's circuit until until: its handover ended its
// onboarding lease there, and its DORA with its ISP follows there.
func (t *onboardingTable) hold(mac uint64, pl *obPool, until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.holds[mac] = obHold{pool: pl, until: until}
	heap.Push(&t.timers, obTimer{at: until, kind: timerHold, mac: mac})
}

// liveHolds returns up to limit of the holds lasting at now, by MAC.
func (t *onboardingTable) liveHolds(now time.Time, limit int) map[uint64]obHold {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[uint64]obHold{}
	for mac, h := range t.holds {
		if h.until.After(now) && len(out) < limit {
			out[mac] = h
		}
	}
	return out
}

// keepHold extends mac's hold on c (its handover's, still lasting at
// now) to one lease time from now: the device handed over asks on c
// (its DORA with its ISP, which may take longer than a lease time when
// the ISP is silent), and c keeps it against the other circuits for as
// long as it does.
func (t *onboardingTable) keepHold(mac uint64, c *Circuit, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.holds[mac]
	if !ok || h.pool.c != c || !h.until.After(now) {
		return
	}
	if until := now.Add(h.pool.leaseTime); until.After(h.until) {
		t.holds[mac] = obHold{pool: h.pool, until: until}
		heap.Push(&t.timers, obTimer{at: until, kind: timerHold, mac: mac})
	}
}

// offer returns the address to offer mac on pl: its lease's, its
// outstanding offer's (held onboardingOfferTTL longer), or a new one
// (next-fit), unless a cap (pl's MaxLeases, maxTotal over every circuit,
// 0: none, and pl's share of it, oneShare) is reached or the pool
// is full.
func (t *onboardingTable) offer(pl *obPool, mac uint64, now time.Time, maxTotal int) (netip.Addr, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.leases[mac]; l != nil && l.pool == pl {
		return l.ip, true
	}
	if o := t.offers[mac]; o != nil {
		if o.pool == pl {
			o.until = now.Add(onboardingOfferTTL)
			heap.Push(&t.timers, obTimer{at: o.until, kind: timerOffer, mac: mac})
			return o.ip, true
		}
		t.dropOfferLocked(mac)
	}
	if (pl.maxLeases > 0 && pl.used >= pl.maxLeases) ||
		(maxTotal > 0 && (t.total >= maxTotal || pl.used >= oneShare(maxTotal, len(t.pools)))) {
		return netip.Addr{}, false
	}
	ip, ok := t.allocateLocked(pl, mac, now)
	if !ok {
		return netip.Addr{}, false
	}
	o := &obOffer{pool: pl, ip: ip, until: now.Add(onboardingOfferTTL)}
	t.offers[mac] = o
	t.held[ip] = mac
	pl.used++
	t.total++
	heap.Push(&t.timers, obTimer{at: o.until, kind: timerOffer, mac: mac})
	return ip, true
}

// allocateLocked finds a free address in pl for mac: the address kept
// for mac itself (its lease's after a restart, its own after its
// handover), else the next free one from the cursor on (the cursor moves
// past it, so an address freed is taken again last), skipping the leased,
// offered and quarantined ones, else one kept for another device. Linear
// in the pool's size (and the kept addresses) at worst.
func (t *onboardingTable) allocateLocked(pl *obPool, mac uint64, now time.Time) (netip.Addr, bool) {
	if a, ok := t.qOwner[mac]; ok && pl.assignable(a) {
		if _, taken := t.held[a]; !taken {
			delete(t.quarantine, a)
			delete(t.qOwner, mac)
			return a, true
		}
	}
	for n := uint64(pl.hi-pl.lo) + 1; n > 0; n-- {
		x := pl.cursor
		if pl.cursor++; pl.cursor > pl.hi || pl.cursor < pl.lo {
			pl.cursor = pl.lo
		}
		a := addr4(x)
		if a == pl.c.Addr || a == pl.dns {
			continue
		}
		if _, taken := t.held[a]; taken {
			continue
		}
		if q, ok := t.quarantine[a]; ok && now.Before(q.until) && !(q.owned && q.owner == mac) {
			continue
		}
		return a, true
	}
	// None free: an address kept for another device (after its
	// handover, or its lease's at a restart) rather than none (a
	// review: a small pool in an onboarding burst ran out while every
	// address kept after a successful handover sat unused). The owner
	// gets another when it comes back.
	var a netip.Addr
	var q obQuarantine
	for ka, kq := range t.quarantine {
		if !kq.owned || !pl.assignable(ka) {
			continue
		}
		if _, taken := t.held[ka]; taken {
			continue
		}
		if !a.IsValid() || kq.until.Before(q.until) {
			a, q = ka, kq // the one kept longest ago
		}
	}
	if a.IsValid() {
		delete(t.quarantine, a)
		if t.qOwner[q.owner] == a {
			delete(t.qOwner, q.owner) // not another address kept for it
		}
		return a, true
	}
	return netip.Addr{}, false
}

// mine reports whether ip is mac's lease or offer on pl.
func (t *onboardingTable) mine(mac uint64, pl *obPool, ip netip.Addr) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.leases[mac]; l != nil && l.pool == pl && l.ip == ip {
		return true
	}
	o := t.offers[mac]
	return o != nil && o.pool == pl && o.ip == ip
}

// pin checks, before a commit, that ip is still mac's lease on pl
// (renewal, with its first grant's time) or its offer (pinned until commit
// or unpin).
func (t *onboardingTable) pin(mac uint64, pl *obPool, ip netip.Addr) (renewal bool, granted time.Time, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.leases[mac]; l != nil && l.pool == pl && l.ip == ip {
		return true, l.granted, true
	}
	if o := t.offers[mac]; o != nil && o.pool == pl && o.ip == ip {
		o.pinned = true
		return false, time.Time{}, true
	}
	return false, time.Time{}, false
}

// unpin releases a pin whose commit failed (the offer stays until its
// time).
func (t *onboardingTable) unpin(mac uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if o := t.offers[mac]; o != nil {
		o.pinned = false
	}
}

// put records mac's lease on pl (committed): it takes the place of its
// offer, or extends its lease, or (restore) is new.
func (t *onboardingTable) put(mac uint64, pl *obPool, ip netip.Addr, granted, expires time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if o := t.offers[mac]; o != nil {
		delete(t.offers, mac)
		if o.ip != ip {
			delete(t.held, o.ip)
		}
		o.pool.used--
		t.total--
	}
	if l := t.leases[mac]; l != nil {
		if l.ip != ip {
			delete(t.held, l.ip)
		}
		l.pool.used--
		t.total--
	}
	t.leases[mac] = &obLease{mac: mac, pool: pl, ip: ip, granted: granted, expires: expires}
	t.held[ip] = mac
	pl.used++
	t.total++
	heap.Push(&t.timers, obTimer{at: expires, kind: timerLease, mac: mac})
}

// remove forgets mac's lease and returns it.
func (t *onboardingTable) remove(mac uint64) (obLease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.leases[mac]
	if l == nil {
		return obLease{}, false
	}
	delete(t.leases, mac)
	if t.held[l.ip] == mac {
		delete(t.held, l.ip)
	}
	l.pool.used--
	t.total--
	return *l, true
}

// forgetOffer drops mac's outstanding offer, if any (pinned or not: the
// client chose another server).
func (t *onboardingTable) forgetOffer(mac uint64) (netip.Addr, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.offers[mac]
	if o == nil {
		return netip.Addr{}, false
	}
	t.dropOfferLocked(mac)
	return o.ip, true
}

func (t *onboardingTable) dropOfferLocked(mac uint64) {
	o := t.offers[mac]
	delete(t.offers, mac)
	if t.held[o.ip] == mac {
		delete(t.held, o.ip)
	}
	o.pool.used--
	t.total--
}

// quarantineAddr keeps ip from being offered until until (owned: except
// to owner).
func (t *onboardingTable) quarantineAddr(ip netip.Addr, until time.Time, owner uint64, owned bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if q, ok := t.quarantine[ip]; ok && q.owned && t.qOwner[q.owner] == ip {
		delete(t.qOwner, q.owner)
	}
	t.quarantine[ip] = obQuarantine{until: until, owner: owner, owned: owned}
	if owned {
		t.qOwner[owner] = ip
	}
	heap.Push(&t.timers, obTimer{at: until, kind: timerQuarantine, ip: ip})
}

// holder returns the MAC leasing or offered ip.
func (t *onboardingTable) holder(ip netip.Addr) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	mac, ok := t.held[ip]
	return mac, ok
}

// due returns the leases that ran out at or before now (their end is the
// caller's, under the subscriber's lock), and drops the offers,
// quarantines and holds that did. O(k log n) for k timers due.
func (t *onboardingTable) due(now time.Time) []obLease {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []obLease
	for len(t.timers) > 0 && !t.timers[0].at.After(now) {
		tm := heap.Pop(&t.timers).(obTimer)
		switch tm.kind {
		case timerLease:
			if l := t.leases[tm.mac]; l != nil && !l.expires.After(now) {
				out = append(out, *l)
			}
		case timerOffer:
			o := t.offers[tm.mac]
			if o == nil || o.until.After(now) {
				continue // taken, or held longer (its own timer)
			}
			if o.pinned {
				heap.Push(&t.timers, obTimer{at: now.Add(onboardingRetry), kind: timerOffer, mac: tm.mac})
				continue
			}
			t.dropOfferLocked(tm.mac)
		case timerQuarantine:
			if q, ok := t.quarantine[tm.ip]; ok && !q.until.After(now) {
				delete(t.quarantine, tm.ip)
				if q.owned && t.qOwner[q.owner] == tm.ip {
					delete(t.qOwner, q.owner)
				}
			}
		case timerHold:
			if h, ok := t.holds[tm.mac]; ok && !h.until.After(now) {
				delete(t.holds, tm.mac)
			}
		}
	}
	return out
}

// retry sets mac's lease to be looked at again at at (its end failed).
func (t *onboardingTable) retry(mac uint64, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	heap.Push(&t.timers, obTimer{at: at, kind: timerLease, mac: mac})
}

// counts returns the leases and offers held.
func (t *onboardingTable) counts() (leases, offers int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.leases), len(t.offers)
}

// lookup returns the lease of address a.
func (t *onboardingTable) lookup(a netip.Addr) (obLease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	mac, ok := t.held[a]
	if !ok {
		return obLease{}, false
	}
	l := t.leases[mac]
	if l == nil || l.ip != a {
		return obLease{}, false // an offer
	}
	return *l, true
}

// all returns every lease.
func (t *onboardingTable) all() []obLease {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]obLease, 0, len(t.leases))
	for _, l := range t.leases {
		out = append(out, *l)
	}
	return out
}
