// Package registry is the in-memory view of who may get service: for each
// subscriber MAC, the ISP and customer it is attached to, its access pin,
// whether the operator blocked it and whether its customer is suspended.
// The DHCP path reads it for every message (never the store); the tenant
// service (package tenants) is its one writer and publishes every change
// here before it answers, so a change is visible to DHCP at once.
//
// It is sized for a million MACs: a MAC's registration is a 24-byte slot
// held by value in a flat open-addressed table (internal/oatable), its
// names (ISP, access, source: a handful, shared by all) are indices into
// an interned list, and its customer is an index into the customer table
// (strtab.go), which holds each customer's ID once for all its devices
// and its suspension as one atomic flag, so suspending a customer with
// many devices is O(1) and no copy of anything. Nothing in the MAC table
// is a pointer: the GC never scans it.
//
// Readers take a shard's read lock for one lookup and build the Entry
// they return under it (4 shards: writers and readers of different MACs
// seldom meet). Every write is O(1): a bulk import publishes as it goes,
// with no O(N) copy per change.
package registry

import (
	"sync"
	"sync/atomic"

	"github.com/ispmux/ispmux/internal/oatable"
)

// shards is few: each shard's table is large enough (≥ 4 MB at a million
// MACs) for transparent huge pages (internal/oatable).
const shards = 4

// Entry is one MAC's registration, as Lookup returns it (a copy).
type Entry struct {
	ISP        string
	CustomerID string
	// Access pins the device to one access entry ("" = any).
	Access  string
	Blocked bool
	// Source is who made the registration: SourceConfig, SourceAPI or
	// SourceClaim.
	Source string
	// suspended is the customer's status when the entry was looked up.
	suspended bool
}

// Registration sources (Entry.Source).
const (
	// SourceConfig: a [[subscriber]] entry of the configuration file.
	SourceConfig = "config"
	// SourceAPI: the tenant API (an ISP or the operator).
	SourceAPI = "api"
	// SourceClaim: a claim, the subscriber's own choice with its
	// customer's password (the portal, a claim token).
	SourceClaim = "claim"
)

// Suspended reports whether the entry's customer was suspended when the
// entry was looked up.
func (e *Entry) Suspended() bool { return e.suspended }

// slot is a MAC's registration in the table: indices, no pointers.
type slot struct {
	cust    uint32 // custs record
	access  uint32 // access record
	isp     uint16 // isps index
	source  uint16 // sources index
	blocked bool
}

type shard struct {
	mu sync.RWMutex
	t  *oatable.Table[uint64, slot]
}

// Registry is the MAC → registration view. Lookup and RangeMACs are safe
// from any goroutine; the writer methods (Reserve, Put, Delete, SetSuspended)
// serialise themselves with wmu.
type Registry struct {
	shards [shards]shard
	n      atomic.Int64
	// custs: the customers (scope: ISP index, string: customer ID, flag:
	// suspended); access: the access pins; isps, sources: the few names.
	custs, access strtab
	isps, sources list

	wmu sync.Mutex
}

// New returns an empty registry.
func New() *Registry {
	r := &Registry{}
	for i := range r.shards {
		r.shards[i].t = oatable.New[uint64, slot](oatable.Mix64)
	}
	r.custs.init("customers")
	r.access.init("access names")
	r.isps.init("ISP names")
	r.sources.init("sources")
	return r
}

func (r *Registry) shard(mac uint64) *shard {
	// MACs of one vendor share their high bytes: mix the low ones.
	return &r.shards[(mac^mac>>8^mac>>16)%shards]
}

// Reserve makes room for n MACs of customers customers (a start-up load),
// so the tables are built once at their size instead of growing step by
// step. It never shrinks anything.
func (r *Registry) Reserve(n, customers int) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if n > 0 {
		per := n/shards + n/(shards*8)
		for i := range r.shards {
			s := &r.shards[i]
			s.mu.Lock()
			s.t.Reserve(per)
			s.mu.Unlock()
		}
	}
	if customers > 0 {
		r.custs.reserve(min(n, customers))
	}
}

// Lookup returns mac's entry.
func (r *Registry) Lookup(mac uint64) (Entry, bool) {
	s := r.shard(mac)
	s.mu.RLock()
	defer s.mu.RUnlock()
	sl, ok := s.t.Get(mac)
	if !ok {
		return Entry{}, false
	}
	return r.entry(sl), true
}

// entry builds sl's Entry. The caller holds the read lock of the shard
// where sl is: its customer stays in the table while it does (a customer
// is freed only after its last MAC left its shard under the write lock).
func (r *Registry) entry(sl slot) Entry {
	c := r.custs.at(sl.cust)
	return Entry{
		ISP: r.isps.get(sl.isp), CustomerID: c.s, Access: r.access.at(sl.access).s, Source: r.sources.get(sl.source),
		Blocked: sl.blocked, suspended: c.flag.Load(),
	}
}

// Len returns the number of MACs registered.
func (r *Registry) Len() int { return int(r.n.Load()) }

// Put registers mac as e says (replacing what it had). suspended is its
// customer's status (a customer seen first here takes it; SetSuspended
// changes it for all its devices).
func (r *Registry) Put(mac uint64, e Entry, suspended bool) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	isp := r.isps.intern(e.ISP)
	sl := slot{
		isp: isp, source: r.sources.intern(e.Source), blocked: e.Blocked,
		access: r.access.hold(0, e.Access, false), cust: r.custs.hold(uint32(isp), e.CustomerID, suspended),
	}
	s := r.shard(mac)
	s.mu.Lock()
	old, had := s.t.Put(mac, sl)
	s.mu.Unlock()
	if had {
		r.release(old)
	} else {
		r.n.Add(1)
	}
}

// Delete unregisters mac; it reports whether it was registered.
func (r *Registry) Delete(mac uint64) bool {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	s := r.shard(mac)
	s.mu.Lock()
	old, had := s.t.Delete(mac)
	s.mu.Unlock()
	if !had {
		return false
	}
	r.n.Add(-1)
	r.release(old)
	return true
}

// release drops a removed slot's holds (wmu held, the slot out of its
// shard).
func (r *Registry) release(old slot) {
	r.custs.release(old.cust)
	r.access.release(old.access)
}

// SetSuspended sets the status of customer (isp, id) for all its devices
// (and for devices registered later).
func (r *Registry) SetSuspended(isp, id string, suspended bool) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.custs.setFlag(uint32(r.isps.intern(isp)), id, suspended)
}

// RangeMACs calls fn for every MAC registered (a snapshot per shard; for
// start-up, not for the DHCP path).
func (r *Registry) RangeMACs(fn func(mac uint64) bool) {
	var batch []uint64
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.RLock()
		batch = batch[:0]
		s.t.Range(func(mac uint64, _ slot) bool {
			batch = append(batch, mac)
			return true
		})
		s.mu.RUnlock()
		for _, mac := range batch {
			if !fn(mac) {
				return
			}
		}
	}
}
