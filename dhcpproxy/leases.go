package dhcpproxy

import (
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/oatable"
	"github.com/ispmux/ispmux/subscribers"
)

// lease is a binding ispmux holds, in the compact form the lease table
// keeps for up to a million subscribers: 48 bytes, no pointers (the GC
// never scans the table). Its circuit and MAC are its key. What only a
// few paths need — the ISP's stored ACK options for a local renewal, the
// Option 82 and client identifier for a RELEASE on the subscriber's
// behalf, the customer ID of an event — is read from the store when it
// is needed (Proxy.full), not held in RAM: the store is the authority
// and the table its mirror (a lease is put after its commit, removed
// after its end's).
type lease struct {
	expires  int64 // lease end, Unix nanoseconds
	updated  int64 // the binding's Updated, Unix nanoseconds: identifies one version of it
	renewAt  int64 // the ISP's T1 (ispRenewal), Unix nanoseconds; 0: unknown, relay every renewal
	ip       [4]byte
	serverID [4]byte // the ISP server's identifier (option 54); zero if unknown
	relay    [4]byte // the address of the server that granted it (Binding.Relay); zero if unknown
	// clientEnd: when the last client lease ispmux gave the subscriber
	// on this binding (its ACK's option 51, at most ClientLeaseMax) runs
	// out, in whole seconds after updated, rounded up (setClientEnd: 4
	// bytes, in what was the struct's padding, where Unix nanoseconds
	// would make it 56); 0: unknown (RAM only: not restored at start),
	// or the subscriber asked again since (heard). Not the ISP's lease
	// (expires). Another circuit's claim on the MAC may take the binding
	// over from then (endOtherCircuits).
	clientEnd uint32
	// cid is the binding's client identifier and ISP hashed (cidKey),
	// 0: none; its key in leaseTable.byCID (clientids.go). In what was
	// the struct's padding.
	cid   uint32
	isp   uint8 // ISP index
	flags uint8 // leaseOptions, leaseUnanswered, leaseOwnNames
	// rebind: the ISP's T2 (option 59), as the part of the time from T1
	// to the end left at T2, in 1/65536; 0: not given (7/8 of the lease
	// when T1 is half of it, a quarter).
	rebind uint16
}

// leaseOf is the compact form of b, a binding at isp.
func leaseOf(b *subscribers.Binding, isp *ISP) lease {
	l := lease{
		expires: b.Expires.UnixNano(), updated: b.Updated.UnixNano(),
		isp: isp.Index, cid: cidKey(isp.Index, b.ClientID),
	}
	if len(b.Options) > 0 {
		l.flags |= leaseOptions
	}
	if t := ispRenewal(b); !t.IsZero() {
		l.renewAt = t.UnixNano()
		if t2 := ispRebinding(b); !t2.IsZero() && t2.After(t) && t2.Before(b.Expires) {
			f := float64(b.Expires.Sub(t2)) / float64(b.Expires.Sub(t)) * 65536
			l.rebind = uint16(min(max(f, 1), 65535))
		}
	}
	if b.IP.Is4() {
		l.ip = b.IP.As4()
	}
	if b.ServerID.Is4() {
		l.serverID = b.ServerID.As4()
	}
	if b.Relay.Is4() {
		l.relay = b.Relay.As4()
	}
	return l
}

// lease.flags.
const (
	// leaseOptions: the store holds the ISP's ACK options for this
	// binding (a local renewal can be answered).
	leaseOptions = 1 << iota
	// leaseUnanswered: a renewal relayed to the ISP past its T1 went
	// unanswered on this version of the binding (unanswered), so an
	// expiry that follows says why the lease ran out. A renewal the ISP
	// answers replaces the lease, and the flag with it.
	leaseUnanswered
	// leaseOwnNames: the ISP's ACK named the client otherwise than the
	// REQUEST it answered did (its server names clients itself:
	// renamed.go), so a renewal's names are not compared with it.
	leaseOwnNames
)

// relayAddr is the address of the server that granted l (invalid if
// unknown).
func (l *lease) relayAddr() netip.Addr {
	if l.relay == [4]byte{} {
		return netip.Addr{}
	}
	return netip.AddrFrom4(l.relay)
}

// pastRebind reports whether now is past the ISP's rebinding time (T2)
// of l, taken as 7/8 of the lease when T1 (renewAt) is half of it: the
// last quarter of the time from T1 to the lease's end. False when T1 is
// unknown.
func (l *lease) pastRebind(now time.Time) bool {
	if l.renewAt == 0 || l.renewAt >= l.expires {
		return false
	}
	if l.rebind != 0 {
		return now.UnixNano() >= l.expires-int64(float64(l.expires-l.renewAt)*float64(l.rebind)/65536)
	}
	return now.UnixNano() >= l.expires-(l.expires-l.renewAt)/4
}

// ispRebinding is the ISP's T2 of b when its ACK gave one (option 59,
// less than the lease time), zero otherwise.
func ispRebinding(b *subscribers.Binding) time.Time {
	if b.LeaseTime <= 0 {
		return time.Time{}
	}
	t2 := ispTimer(b, optRebindingTime)
	if t2 == 0 {
		return time.Time{}
	}
	return b.Expires.Add(t2 - b.LeaseTime)
}

// setClientEnd records that the client lease ispmux gave on l runs out
// at end (clientEnd).
func (l *lease) setClientEnd(end time.Time) {
	s := (end.UnixNano() - l.updated + int64(time.Second) - 1) / int64(time.Second)
	l.clientEnd = uint32(min(max(s, 1), math.MaxUint32))
}

// clientEndAt is when the client lease ispmux last gave on l runs out, in
// Unix nanoseconds, and whether that is known.
func (l *lease) clientEndAt() (int64, bool) {
	return l.updated + int64(l.clientEnd)*int64(time.Second), l.clientEnd != 0
}

func (l *lease) addr() netip.Addr           { return netip.AddrFrom4(l.ip) }
func (l *lease) expiresAt() time.Time       { return time.Unix(0, l.expires) }
func (l *lease) endsAfter(t time.Time) bool { return l.expires > t.UnixNano() }

// sid is the ISP server's identifier, invalid if unknown.
func (l *lease) sid() netip.Addr {
	if l.serverID == [4]byte{} {
		return netip.Addr{}
	}
	return netip.AddrFrom4(l.serverID)
}

// same reports whether l and o are the same version of a binding.
func (l *lease) same(o *lease) bool {
	return l.isp == o.isp && l.ip == o.ip && l.updated == o.updated
}

// leaseTable owns the bindings ispmux holds and the count per circuit.
// mu guards it all; it is held only inside these methods. A lease value is
// never changed once stored, but for its clientEnd (gaveClient, heard):
// it is replaced whole.
type leaseTable struct {
	mu sync.Mutex
	// m holds the leases by value in one flat open-addressed table
	// (internal/oatable: 64-byte slots, no pointers, sized to the leases
	// restored instead of a Go map's power of two: about 91 B a lease,
	// where Go maps of the leases and of their MACs took about 170 at
	// 1M). Its keys are hashed by their MAC only: the leases of one MAC
	// (a device on several circuits, rare: it moved between access
	// ports) share a probe cluster, so ofMAC probes that cluster and m
	// needs no separate index by MAC.
	m          *oatable.Table[subKey, lease]
	perCircuit map[circuitKey]int
	perISP     [256]int
	// gen is each subscriber's generation, moved on by every end of its
	// binding as it begins (bumpGen), before its commit: a transaction
	// remembers the generation it started in, and its ACK binds nothing
	// once an end begun in a later one is committed (commitGen,
	// current). An end the store refused leaves it current: its binding
	// stands. An entry not moved for genKeep is dropped (pruneGens):
	// kept for good, every MAC ever ended stayed in it (random MACs:
	// without bound).
	gen       map[subKey]genEntry
	genPruned time.Time
	genMem    mapMem // gen's peak, for pruneGens' remaking of it
	// genSeq is the last generation bumpGen gave, to any subscriber:
	// generations come from one sequence, so an end's is above every
	// generation a transaction read before it, even one whose entry
	// was pruned meanwhile (a per-subscriber count started again at 0:
	// the end's generation was below the transaction's, which stayed
	// current after the end, TestGenerationPrunedThenEndCommitted).
	genSeq uint64
	// exp orders the leases by end, for the expiry scan (expiry.go).
	exp expiryHeap
	// cuts holds, for the bindings of devices moved to another ISP
	// (make-before-break, moves.go), when they end at the latest.
	cuts map[subKey]time.Time
	// cutsAt orders cuts' deadlines (cutsDue); cutsMem remakes cuts
	// once a bulk move's have drained (mapmem.go).
	cutsAt  cutHeap
	cutsMem mapMem
	// claims holds, for the bindings whose MAC asked for a lease on
	// another circuit (moves.go, endOtherCircuits), when that circuit
	// may take the MAC over unless the holder is heard from first.
	claims map[subKey]claim
	// byCID finds the MAC whose binding holds a client identifier at an
	// ISP (clientids.go): lease.cid → MAC.
	byCID *oatable.Table[uint32, uint64]
}

func (t *leaseTable) init() {
	t.m = oatable.New[subKey, lease](hashSubKey)
	t.byCID = oatable.New[uint32, uint64](func(k uint32) uint64 { return oatable.Mix64(uint64(k)) })
	t.perCircuit = map[circuitKey]int{}
	t.cuts = map[subKey]time.Time{}
	t.claims = map[subKey]claim{}
	t.gen = map[subKey]genEntry{}
	t.genMem.div = 16 // see pruneGens
}

// genEntry is a subscriber's generation and when it last moved.
type genEntry struct {
	// n is the generation: moved on by every end as it begins
	// (bumpGen), committed or not.
	n uint64
	// ended is the generation of the last end committed (commitGen):
	// a transaction begun in an older one is from before that end.
	ended uint64
	at    time.Time
}

// genKeep is how long a subscriber's generation is kept after it last
// moved. Reading it does not move it: a transaction may read it just
// before it is dropped (back to 0, ended 0), which is safe as every
// generation comes from one sequence (genSeq): an end committed after
// the drop is above the transaction's, which is no longer current.
const genKeep = 10 * time.Minute

// hashSubKey hashes a lease's key by its MAC alone (see leaseTable.m).
func hashSubKey(k subKey) uint64 { return oatable.Mix64(k.mac) }

// reserve sizes an empty table for n leases (Restore).
func (t *leaseTable) reserve(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m.Len() != 0 || n <= 0 {
		return
	}
	t.m.Reserve(n)
	t.byCID.Reserve(n)
	t.exp = make(expiryHeap, 0, n+n/2)
}

// generation returns sk's generation, the one a transaction begun now is
// in.
func (t *leaseTable) generation(sk subKey) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gen[sk].n
}

// current reports whether a transaction of sk begun in generation gen
// is still current: no end of sk's binding begun after it (in a later
// generation) has been committed. An end the store refused ends
// nothing: a transaction begun before it (a renewal relayed just
// before) is still current, and its ACK binds the binding that stands.
// Called with sk's stripe of subMu held, which an end holds from its
// bumpGen through its commit to its commitGen: an end under way is
// never seen half done.
func (t *leaseTable) current(sk subKey, gen uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return gen >= t.gen[sk].ended
}

// bumpGen moves sk to a new generation (genSeq's next) as an end of its
// binding begins (before its commit), and returns it: the end's
// generation, for commitGen. A transaction begun from now on (whose relay read the
// generation without sk's stripe, while the end was being committed) is
// in it, after the end: its message is relayed after the end's RELEASE
// (sendAfterIntents) and its ACK may bind.
func (t *leaseTable) bumpGen(sk subKey) uint64 {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.gen[sk]
	t.genSeq++
	e.n = t.genSeq
	e.at = now
	t.gen[sk] = e
	return e.n
}

// commitGen records that the end of sk's binding begun in generation n
// (bumpGen's) is committed: a transaction begun before it is no longer
// current. Called with sk's stripe of subMu held since that bumpGen.
func (t *leaseTable) commitGen(sk subKey, n uint64) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.gen[sk]
	e.n = max(e.n, n) // pruned since bumpGen (not within genKeep): never behind its end
	e.ended = max(e.ended, n)
	e.at = now
	t.gen[sk] = e
}

// pruneGens drops, once a minute, the generations not moved for genKeep.
func (t *leaseTable) pruneGens(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.genPruned) < time.Minute {
		return
	}
	t.genPruned = now
	// At most genPruneBudget entries a minute under the lease table's
	// lock (after a mass end of a million, the whole map at once held
	// DHCP up for tens of ms: a review); the map's random order reaches
	// the rest in the next minutes.
	t.genMem.note(len(t.gen))
	n := 0
	for sk, e := range t.gen {
		if now.Sub(e.at) > genKeep {
			delete(t.gen, sk)
		}
		if n++; n == genPruneBudget {
			break
		}
	}
	// The map is remade once it has fallen to a sixteenth of its peak
	// (mapMem), as the transactions' table is at a quarter (shrink): a
	// mass end (an ISP's purge, a reload removing its subscribers) leaves
	// a generation for each of a million, and the map kept their room for
	// good (200K: 17 MB, TestBurstMapsReleaseMemory). Only pruneGens
	// deletes from it, so the peak it sees before deleting is the map's.
	// The copy is made under the lease table's lock, on every DHCP
	// message's path: on the 2-CPU lab VM, 77–310 ms (median 87) for a
	// quarter left of a million, 23–77 ms (median 26) for a sixteenth,
	// where a round of pruneGens takes ~5 ms. A mass end's generations
	// all fall due genKeep after it and are dropped genPruneBudget a
	// minute, so a sixteenth costs the memory no more than about three
	// minutes more than a quarter would, for a quarter of the copy.
	if t.genMem.due(len(t.gen)) {
		t.gen = remade(t.gen)
	}
}

// genPruneBudget is how many generations pruneGens looks at a minute.
const genPruneBudget = 1 << 16

// ofMAC returns mac's leases (nil if none), in no particular order: they
// are in the probe cluster of mac's hash, among other MACs' leases.
func (t *leaseTable) ofMAC(mac uint64) []held {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []held
	t.m.Probe(oatable.Mix64(mac), func(k subKey, l lease) bool {
		if k.mac == mac {
			out = append(out, held{k, l})
		}
		return true
	})
	return out
}

// get returns sk's lease.
func (t *leaseTable) get(sk subKey) (lease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m.Get(sk)
}

// unanswered marks sk's lease leaseUnanswered if it is still the binding
// at isp's address ip whose renewal the ISP left unanswered.
func (t *leaseTable) unanswered(sk subKey, isp uint8, ip netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.m.Ptr(sk); l != nil && l.isp == isp && l.addr() == ip {
		l.flags |= leaseUnanswered
	}
}

// put stores sk's lease.
func (t *leaseTable) put(sk subKey, l lease) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.putLocked(sk, l)
	t.noteExpiry(sk, &l)
}

// putLocked stores sk's lease without noting its expiry (t.mu held).
func (t *leaseTable) putLocked(sk subKey, l lease) {
	old, had := t.m.Put(sk, l)
	if had {
		t.perISP[old.isp]--
		t.dropCID(sk.mac, old.cid)
	} else {
		t.perCircuit[sk.circuit]++
	}
	t.perISP[l.isp]++
	if l.cid != 0 {
		t.byCID.Put(l.cid, sk.mac)
	}
	delete(t.cuts, sk)
	delete(t.claims, sk)
}

// load stores the leases restored at start in one step: the expiry heap
// is built once (O(n)) instead of pushed into lease by lease.
func (t *leaseTable) load(ks [][]subKey, ls [][]lease) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c, ks := range ks {
		for i, k := range ks {
			t.putLocked(k, ls[c][i])
		}
	}
	t.rebuildExpiry()
}

// remove removes sk's lease and reports whether it had one.
func (t *leaseTable) remove(sk subKey) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.cuts, sk)
	delete(t.claims, sk)
	l, ok := t.m.Delete(sk)
	if !ok {
		return false
	}
	t.dropCID(sk.mac, l.cid)
	t.perISP[l.isp]--
	t.perCircuit[sk.circuit]--
	return true
}

// full reports whether sk holds no lease and its circuit has max.
func (t *leaseTable) full(sk subKey, max int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m.Ptr(sk) == nil && t.perCircuit[sk.circuit] >= max
}

// held is a lease and its key, for scans done outside the lock.
type held struct {
	k subKey
	l lease
}

// is reports whether h is o: the same subscriber's same lease (a holder
// found again at a later pass, say).
func (h held) is(o held) bool { return h.k == o.k && h.l.same(&o.l) }

// expired returns the leases that ended at or before now, limit at most,
// the oldest first: O(log n) per lease returned (expiry.go), not a walk
// of every lease.
func (t *leaseTable) expired(now time.Time, limit int) []held {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.expiredAt(now, limit)
}

func (t *leaseTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m.Len()
}

// full returns the whole stored binding of h (the ACK's options, Option
// 82, client identifier, customer: what the table does not keep). If the
// store holds another version of it or none (it cannot, but a store read
// can fail), it returns what the table knows, without those fields.
func (p *Proxy) full(h held) subscribers.Binding {
	b, _ := p.stored(h)
	return b
}

// stored is full, and whether the binding came from the store (true) or
// is only what the table knows (false: counted as lease_not_in_store).
func (p *Proxy) stored(h held) (subscribers.Binding, bool) {
	access, isp := p.names(h)
	b := subscribers.Binding{
		MAC: binding.MACBytes(h.k.mac), Access: access, VLAN: h.k.circuit.vlan, ISP: isp, IP: h.l.addr(), ServerID: h.l.sid(),
		Relay: h.l.relayAddr(), Expires: h.l.expiresAt().UTC(), Updated: time.Unix(0, h.l.updated).UTC(),
	}
	if access == "" {
		return b, false
	}
	sb, err := p.store.Binding(access, h.k.circuit.vlan, b.MAC)
	if err != nil || sb.ISP != b.ISP || sb.IP != b.IP || sb.Updated.UnixNano() != h.l.updated {
		p.count("lease_not_in_store")
		return b, false
	}
	return sb, true
}

// LeaseInfo is what the lease table knows of a DHCP binding (status).
type LeaseInfo struct {
	IP       netip.Addr
	ServerID netip.Addr // invalid if unknown
	Expires  time.Time
	// ClientEnd is when the client lease ispmux last gave the subscriber
	// runs out (zero: not known, e.g. restored): the subscriber asks
	// again before it.
	ClientEnd time.Time
}

// Lease returns the DHCP binding of the subscriber at port, vlan, mac.
func (p *Proxy) Lease(port uint8, vlan uint16, mac uint64) (LeaseInfo, bool) {
	l, ok := p.leases.get(subKey{circuitKey{port, vlan}, mac})
	if !ok {
		return LeaseInfo{}, false
	}
	li := LeaseInfo{IP: l.addr(), ServerID: l.sid(), Expires: l.expiresAt()}
	if end, ok := l.clientEndAt(); ok {
		li.ClientEnd = time.Unix(0, end)
	}
	return li, true
}

// ClientLeaseEnd is when the client lease ispmux last gave the subscriber
// mac on the circuit of access and vlan runs out, on its binding at isp's
// address ip: false when ispmux holds no binding of it there, or has given
// it none since its start or since the device's last message. A lease the
// table holds at another ISP or address (the store's binding read just
// before a move's or a new address's commit, the table's after) is not
// that binding's: its client lease is not shown to the binding's ISP (the
// tenant API shows it beside the ISP's lease end: tenants.ClientLeases).
func (p *Proxy) ClientLeaseEnd(access string, vlan uint16, mac uint64, isp string, ip netip.Addr) (time.Time, bool) {
	c := p.circuitByName(access, vlan)
	if c == nil {
		return time.Time{}, false
	}
	l, ok := p.leases.get(subKey{circuitKey{c.Port, c.VLAN}, mac})
	if !ok || l.addr() != ip || p.ispAt[l.isp] == nil || p.ispAt[l.isp].Name != isp {
		return time.Time{}, false
	}
	end, ok := l.clientEndAt()
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, end), true
}

// Leases returns the number of leases held.
func (p *Proxy) Leases() int { return p.leases.len() }

// LeasesOn returns how many leases are held on the circuit of port and
// vlan.
func (p *Proxy) LeasesOn(port uint8, vlan uint16) int {
	p.leases.mu.Lock()
	defer p.leases.mu.Unlock()
	return p.leases.perCircuit[circuitKey{port, vlan}]
}

// hasLease reports whether ispmux holds a binding for sk.
func (p *Proxy) hasLease(sk subKey) bool {
	_, ok := p.leases.get(sk)
	return ok
}
