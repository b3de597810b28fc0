// Package registry is the in-memory view of who may get service: for each
// subscriber MAC, the ISP and customer it is attached to, its access pin,
// whether the operator blocked it and whether its customer is suspended.
// The DHCP path reads it for every message (never the store); the tenant
// service (package tenants) is its one writer and publishes every change
// here before it answers, so a change is visible to DHCP at once.
//
// Readers take a shard's read lock for one map lookup (64 shards: writers
// and readers of different MACs do not meet); an Entry is immutable once
// published, and a customer's suspension is one atomic flag shared by all
// its devices, so suspending a customer with many devices is O(1) for the
// readers and no copy of anything. Every write is O(1): a bulk import
// publishes as it goes, with no O(N) copy per change.
package registry

import (
	"sync"
	"sync/atomic"
)

const shards = 64

// Entry is one MAC's registration.
type Entry struct {
	ISP        string
	CustomerID string
	// Access pins the device to one access entry ("" = any).
	Access  string
	Blocked bool
	Source  string
	cust    *customer
}

// Suspended reports whether the entry's customer is suspended now.
func (e *Entry) Suspended() bool { return e.cust != nil && e.cust.suspended.Load() }

// customer is the state a customer's devices share.
type customer struct {
	suspended atomic.Bool
	devices   int // writer only
}

type custKey struct{ isp, id string }

type shard struct {
	mu sync.RWMutex
	m  map[uint64]*Entry
}

// Registry is the MAC → registration view. Lookup is safe from any
// goroutine; the writer methods (Put, Delete, SetSuspended) must be called
// by one writer at a time (they serialise themselves with wmu).
type Registry struct {
	shards [shards]shard
	n      atomic.Int64

	wmu       sync.Mutex
	customers map[custKey]*customer
	// names interns the strings few entries share (ISP, access, source):
	// one copy each, not one per MAC (writer, wmu held).
	names map[string]string
}

// New returns an empty registry.
func New() *Registry {
	r := &Registry{customers: map[custKey]*customer{}, names: map[string]string{}}
	for i := range r.shards {
		r.shards[i].m = map[uint64]*Entry{}
	}
	return r
}

func (r *Registry) shard(mac uint64) *shard {
	// MACs of one vendor share their high bytes: mix the low ones.
	return &r.shards[(mac^mac>>8^mac>>16)%shards]
}

// Reserve makes room for n MACs of customers customers in an empty
// registry (a start-up load), so the maps are built once at their size
// instead of growing step by step; on a registry that holds MACs it does
// nothing.
func (r *Registry) Reserve(n, customers int) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.n.Load() != 0 || n <= 0 {
		return
	}
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		s.m = make(map[uint64]*Entry, n/shards+n/(shards*8))
		s.mu.Unlock()
	}
	if len(r.customers) == 0 && customers > 0 {
		r.customers = make(map[custKey]*customer, min(n, customers))
	}
}

// Lookup returns mac's entry (never to be modified).
func (r *Registry) Lookup(mac uint64) (*Entry, bool) {
	s := r.shard(mac)
	s.mu.RLock()
	e, ok := s.m[mac]
	s.mu.RUnlock()
	return e, ok
}

// Len returns the number of MACs registered.
func (r *Registry) Len() int { return int(r.n.Load()) }

// Put registers mac as e says (replacing what it had). suspended is its
// customer's status (a customer seen first here takes it; SetSuspended
// changes it for all its devices).
func (r *Registry) Put(mac uint64, e Entry, suspended bool) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	e.ISP, e.Access, e.Source = r.intern(e.ISP), r.intern(e.Access), r.intern(e.Source)
	k := custKey{e.ISP, e.CustomerID}
	c := r.customers[k]
	if c == nil {
		c = &customer{}
		c.suspended.Store(suspended)
		r.customers[k] = c
	}
	e.cust = c
	s := r.shard(mac)
	s.mu.Lock()
	old := s.m[mac]
	s.m[mac] = &e
	s.mu.Unlock()
	c.devices++
	if old == nil {
		r.n.Add(1)
	} else {
		r.release(old)
	}
}

// Delete unregisters mac; it reports whether it was registered.
func (r *Registry) Delete(mac uint64) bool {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	s := r.shard(mac)
	s.mu.Lock()
	old := s.m[mac]
	delete(s.m, mac)
	s.mu.Unlock()
	if old == nil {
		return false
	}
	r.n.Add(-1)
	r.release(old)
	return true
}

// release drops old's hold on its customer (writer, wmu held).
func (r *Registry) release(old *Entry) {
	if old.cust == nil {
		return
	}
	old.cust.devices--
	if old.cust.devices == 0 && !old.cust.suspended.Load() {
		delete(r.customers, custKey{old.ISP, old.CustomerID})
	}
}

// SetSuspended sets the status of customer (isp, id) for all its devices
// (and for devices registered later).
func (r *Registry) SetSuspended(isp, id string, suspended bool) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	k := custKey{isp, id}
	c := r.customers[k]
	if c == nil {
		if !suspended {
			return
		}
		c = &customer{}
		r.customers[k] = c
	}
	c.suspended.Store(suspended)
	if !suspended && c.devices == 0 {
		delete(r.customers, k)
	}
}

// Range calls fn for every MAC (a snapshot per shard; for start-up and
// status, not for the DHCP path).
func (r *Registry) Range(fn func(mac uint64, e *Entry) bool) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.RLock()
		type kv struct {
			k uint64
			e *Entry
		}
		batch := make([]kv, 0, len(s.m))
		for k, e := range s.m {
			batch = append(batch, kv{k, e})
		}
		s.mu.RUnlock()
		for _, x := range batch {
			if !fn(x.k, x.e) {
				return
			}
		}
	}
}

// intern returns the registry's copy of v (wmu held). The set is bounded
// by what the caller interns: ISP names, access names and sources (a few
// each); a registry that met more than 4096 distinct values stops adding.
func (r *Registry) intern(v string) string {
	if c, ok := r.names[v]; ok {
		return c
	}
	if len(r.names) < 4096 {
		r.names[v] = v
	}
	return v
}
