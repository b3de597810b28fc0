package dhcpproxy

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"

	"github.com/cespare/xxhash/v2"

	"github.com/ispmux/ispmux/internal/oatable"
	"github.com/ispmux/ispmux/subscribers"
)

// One subscriber must not present another's client identifier (option
// 61) to their ISP: the ISP's server keys its leases by it (RFC 2131
// §4.2), so it hands the other's address over, and records it as leased
// to this subscriber's hardware address and Option 82 (its remote-id,
// subscriber-id: the customer it bills and answers for) until the other's
// next renewal reaches it. ispmux refused the address (bind_conflict), but
// the ISP's record stayed wrong (a trial against Kea, with a neighbour's
// identifier, 01 and its MAC, which most clients use). So a DISCOVER or
// REQUEST whose client identifier another MAC's binding holds at the same
// ISP is not relayed (client_id_taken, a rejected event naming the
// holder): two devices with one identifier would get one lease anyway.
//
// The lease table keeps, per lease, a 32-bit hash of its client
// identifier and ISP (lease.cid, in what was padding) and an index from
// that hash to the MAC (leaseTable.byCID, ~16 B a lease). A hit is
// checked against the holder's stored binding (Proxy.full), so a hash
// collision refuses no one; two bindings whose hashes collide keep one
// index entry (the later), leaving the other unguarded: about one lease
// in ten thousand at a million.

// cidSeed keys cidKey, drawn at start (the leases' keys are worked out
// again at every start): a subscriber cannot search offline for an
// identifier whose 32-bit key is a neighbour's, to take over its index
// entry (a review).
var cidSeed = func() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}()

// otherClientID reports whether cid, a client's option 61, is another
// client identifier than the one binding b was granted under: b keeps one
// (a binding stored before they were kept tells nothing) and cid differs
// (none included). The ISP's server holds b's lease under b's.
func otherClientID(b *subscribers.Binding, cid []byte) bool {
	return len(b.ClientID) > 0 && !bytes.Equal(b.ClientID, cid)
}

// cidKey is the hash of client identifier cid at ISP isp; 0 for none.
func cidKey(isp uint8, cid []byte) uint32 {
	if len(cid) == 0 {
		return 0
	}
	h := oatable.Mix64(xxhash.Sum64(cid) ^ cidSeed ^ uint64(isp)*0x9e3779b97f4a7c15)
	k := uint32(h ^ h>>32)
	if k == 0 {
		k = 1
	}
	return k
}

// dropCID removes mac's entry for cid from the index (t.mu held), its
// lease with cid gone from t.m: only if the entry is mac's (a colliding
// later lease took it over otherwise), and mac holds no other lease with
// cid (a device on two circuits, its old one's binding ending).
func (t *leaseTable) dropCID(mac uint64, cid uint32) {
	if cid == 0 {
		return
	}
	if m, ok := t.byCID.Get(cid); !ok || m != mac {
		return
	}
	if _, other := t.firstOfMAC(mac, cid); !other {
		t.byCID.Delete(cid)
	}
}

// firstOfMAC returns a lease of mac's whose client identifier key is
// cid, if it has one: the probe of ofMAC, stopping at the first. t.mu
// held.
func (t *leaseTable) firstOfMAC(mac uint64, cid uint32) (h held, found bool) {
	t.m.Probe(oatable.Mix64(mac), func(k subKey, l lease) bool {
		if k.mac == mac && l.cid == cid {
			h, found = held{k, l}, true
			return false
		}
		return true
	})
	return h, found
}

// cidHolder returns, for the identifier hashed to key, the lease of the
// MAC the index has for it if that MAC is not mac (holder), and a lease
// of mac's own with that key (own), each with whether there is one.
func (t *leaseTable) cidHolder(key uint32, mac uint64) (holder, own held, isHolder, isOwn bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	own, isOwn = t.firstOfMAC(mac, key)
	if other, ok := t.byCID.Get(key); ok && other != mac {
		holder, isHolder = t.firstOfMAC(other, key)
	}
	return holder, own, isHolder, isOwn
}

// clientIDHolder returns the MAC of another subscriber whose binding at
// ISP isp holds client identifier cid, if one does and mac's own binding
// at isp does not (two bindings with one identifier, made before this
// check or at a server that keys leases otherwise, are each their
// holder's: refusing either would cut it off for as long as the other
// renews). Both are checked against the stored bindings' bytes, so a
// hash collision neither refuses nor exempts anyone.
func (p *Proxy) clientIDHolder(isp uint8, cid []byte, mac uint64) (uint64, bool) {
	key := cidKey(isp, cid)
	if key == 0 {
		return 0, false
	}
	holder, own, isHolder, isOwn := p.leases.cidHolder(key, mac)
	if !isHolder || holder.l.isp != isp {
		return 0, false
	}
	if isOwn && own.l.isp == isp && bytes.Equal(p.full(own).ClientID, cid) {
		return 0, false
	}
	if !bytes.Equal(p.full(holder).ClientID, cid) {
		return 0, false // a hash collision
	}
	return holder.k.mac, true
}
