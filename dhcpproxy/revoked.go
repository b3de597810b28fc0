package dhcpproxy

import (
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Revoked addresses of devices ispmux no longer knows. A binding ispmux
// revokes (revokeLocked: the device deleted by its ISP, a [[subscriber]]
// entry removed by a reload, its registration moved) leaves a client
// that still believes it holds the address. While the device is still
// registered, its next REQUEST is NAKed by serveRequest (not its binding
// at its ISP). Once its registration is gone, the device is unknown, and
// ispmux's answer to an unknown MAC is silence (RFC 2131 §4.3.2: a server
// with no record of a client stays silent): the client kept the address,
// its traffic dropped, until its lease from ispmux ran out, up to
// client_lease_max (a field trial: a removed entry's client kept its
// address, REQUESTs unanswered). ispmux does have a record of it: the
// revocation. So a revoked binding's address is remembered for the
// longest lease ispmux gives (leaseMaxFor), and a REQUEST for it from the
// unknown MAC on the same circuit is NAKed (revoked_nak): the client
// drops the address at once and starts over with a DISCOVER (onboarded
// into the walled garden where the access has one; silence otherwise).
//
// At most maxRevoked addresses are remembered (an ISP purging all its
// devices would otherwise hold one entry per binding for the whole
// lease): a revocation past it is not, and its device, as one revoked
// before a restart (the memory is RAM only), gets silence, as before. The entries past their time are dropped by the proxy's tick,
// a bounded number at a time.
type revokedAddrs struct {
	mu  sync.Mutex
	m   map[subKey]revokedAddr
	mem mapMem // m's peak, for prune's remaking of it
}

// revokedAddr is a revoked binding's address and until when its client
// may hold it.
type revokedAddr struct {
	ip    netip.Addr
	until time.Time
}

// maxRevoked is how many revoked addresses are remembered at most.
const maxRevoked = 1 << 16

// revokedPruneBudget is how many entries a tick looks at.
const revokedPruneBudget = 4096

// note remembers that sk's binding of ip was revoked, its client holding
// it until until at the latest.
func (r *revokedAddrs) note(sk subKey, ip netip.Addr, until time.Time) {
	if !ip.IsValid() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[subKey]revokedAddr{}
	}
	if _, ok := r.m[sk]; !ok && len(r.m) >= maxRevoked {
		return
	}
	r.m[sk] = revokedAddr{ip, until}
	r.mem.note(len(r.m))
}

// take reports whether sk's binding of ip was revoked and its client may
// still hold it at now; it forgets the entry either way (one NAK: the
// client starts over).
func (r *revokedAddrs) take(sk subKey, ip netip.Addr, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[sk]
	if !ok || e.ip != ip {
		return false
	}
	delete(r.m, sk)
	return now.Before(e.until)
}

// prune drops up to revokedPruneBudget entries past their time, and
// remakes the map once what it holds has fallen to a quarter of its peak
// (mapMem), as the transactions' table is (shrink): a mass revocation
// fills it to maxRevoked, 9 MB kept for good once the clients NAKed
// (take) or their leases' time passed (TestBurstMapsReleaseMemory).
func (r *revokedAddrs) prune(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for sk, e := range r.m {
		if n++; n > revokedPruneBudget {
			break
		}
		if !now.Before(e.until) {
			delete(r.m, sk)
		}
	}
	if r.mem.due(len(r.m)) {
		r.m = remade(r.m)
	}
}

// len is how many revoked addresses are remembered.
func (r *revokedAddrs) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

// nakRevoked NAKs m, a REQUEST from an unknown MAC on c (subscriber sk),
// if it asks for the address ispmux revoked from sk's binding (requested
// address, else ciaddr), and reports whether it did.
func (p *Proxy) nakRevoked(c *Circuit, m *dhcpv4.DHCPv4, sk subKey, now time.Time) bool {
	if m.MessageType() != dhcpv4.MessageTypeRequest {
		return false
	}
	asked := addrOf(m.RequestedIPAddress())
	if !asked.IsValid() || asked.IsUnspecified() {
		asked = addrOf(m.ClientIPAddr)
	}
	if !asked.IsValid() || !p.revokedIPs.take(sk, asked, now) {
		return false
	}
	p.count("revoked_nak")
	p.nak(c, m, "binding revoked: start over")
	return true
}
