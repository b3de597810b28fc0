package dhcpproxy

import "time"

// Revalidate is RevalidateMACs for every binding held, which the tests use
// to revalidate after changing a registry by hand: it walks every lease,
// so the appliance never calls it (a reload or a tenant change names the
// MACs it changed). It returns how many bindings no longer match.
func (p *Proxy) Revalidate() int {
	n := 0
	now := time.Now()
	for _, h := range p.leases.all() {
		if p.revalidate(h, false, now) {
			n++
		}
	}
	return n
}

// all returns every lease.
func (t *leaseTable) all() []held {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]held, 0, t.m.Len())
	t.m.Range(func(k subKey, l lease) bool {
		out = append(out, held{k, l})
		return true
	})
	return out
}
