package dhcpproxy

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/oatable"
	"github.com/ispmux/ispmux/registry"
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
// holder): two devices with one identifier would get one lease anyway;
// but the identifier of a subscriber's own hardware address is that
// subscriber's (checkClientID). The ISP's ACK is checked again before it
// binds (clientid_ack.go): two MACs can each be relayed with the
// identifier while neither holds it.
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

// clientIDHolder returns the lease of another subscriber's binding at
// ISP isp that holds client identifier cid (key: its cidKey at isp), if
// one does and mac's own binding
// at isp does not (two bindings with one identifier, made before this
// check or at a server that keys leases otherwise, are each their
// holder's: refusing either would cut it off for as long as the other
// renews). Both are checked against the stored bindings' bytes, so a
// hash collision neither refuses nor exempts anyone.
func (p *Proxy) clientIDHolder(isp uint8, key uint32, cid []byte, mac uint64) (held, bool) {
	if key == 0 {
		return held{}, false
	}
	holder, own, isHolder, isOwn := p.leases.cidHolder(key, mac)
	if !isHolder || holder.l.isp != isp {
		return held{}, false
	}
	if isOwn && own.l.isp == isp && bytes.Equal(p.full(own).ClientID, cid) {
		return held{}, false
	}
	if !bytes.Equal(p.full(holder).ClientID, cid) {
		return held{}, false // a hash collision
	}
	return holder, true
}

// hardwareID reports whether cid is the hardware client identifier of mac:
// type 1 (Ethernet) and mac (RFC 2132 §9.14), what most clients send.
func hardwareID(cid []byte, mac uint64) bool {
	return len(cid) == 7 && cid[0] == 1 && binary.BigEndian.Uint16(cid[1:3]) == uint16(mac>>32) &&
		binary.BigEndian.Uint32(cid[3:7]) == uint32(mac)
}

// checkClientID applies the client identifier rule (above) to subscriber
// mac's DISCOVER or REQUEST with identifier cid at isp: it reports
// whether the message may go on. Another MAC's binding holding cid,
// its lease run out, is ended as the tick would end it (an expired
// event, nothing told to the ISP: client_id_lapsed; lapsed_holder.go),
// and the identifier looked up again. One whose lease is live refuses
// it (client_id_taken), unless cid is mac's own hardware
// identifier: then the holder took mac's (a field trial: a neighbour
// binding first with 01 and a subscriber's MAC kept that subscriber off
// its ISP for as long as it renewed, for good at an ISP of infinite
// leases), and its binding is revoked, its lease released to the ISP, so
// that the owner's exchange finds the identifier free
// (client_id_reclaimed), within the bound of mayReclaim
// (clientid_reclaim.go: another customer's holder only by an older
// registration, no holder twice within reclaimHoldoff but by one; refused,
// the message is not relayed either). The owner's message goes on once that RELEASE is
// queued to the ISP (until then it is dropped, client_id_reclaim_waits,
// and a retransmission goes on): the ISP, which keys the lease by the
// identifier, would otherwise release the lease it grants the owner.
func (p *Proxy) checkClientID(c *Circuit, reg registry.Entry, isp *ISP, cid []byte, mac uint64) bool {
	key := cidKey(isp.Index, cid)
	if p.reclaims.waiting(isp.Index, cid, mac, p.intents.onWire) {
		// A retransmission after the revoke below, the holder's
		// RELEASE still not queued: it found the identifier free, and
		// would have overtaken the RELEASE (a review). Or a message
		// with the identifier of an intent a start found pending
		// (holdIdentifier).
		p.count("client_id_reclaim_waits")
		return false
	}
	h, taken := p.clientIDHolder(isp.Index, key, cid, mac)
	if taken && lapsedCID(h) {
		// Its lease ran out, the expiry tick not having ended it yet:
		// ended as the tick would (lapsed_holder.go), not refused
		// against nor revoked with a RELEASE, and looked up again.
		if p.endLapsedHolder(h, "client_id_lapsed") {
			return false // still held: the store refused (logged, counted)
		}
		ended := h.k.mac
		h, taken = p.clientIDHolder(isp.Index, key, cid, mac) // renewed meanwhile: live
		if !taken && p.waitForHolder(isp, cid, ended) {
			// Its intents to this ISP not yet queued (a RELEASE
			// of its earlier address, recorded while the ISP's
			// next hop was unresolved, say) carry the identifier:
			// relayed first, this message's new lease would be
			// freed by them at the ISP. It waits, as after a
			// reclaim.
			p.count("client_id_reclaim_waits")
			return false
		}
	}
	if !taken {
		return true
	}
	if !hardwareID(cid, mac) {
		p.count("client_id_taken")
		p.refuse(subscribers.EventRejected, regSubject(mac, c, reg), netip.Addr{},
			"client identifier of subscriber "+binding.MACString(h.k.mac)+"'s binding at this ISP; not relayed")
		return false
	}
	// Bounded (clientid_reclaim.go): from another customer, only by an
	// older registration; by a newer one, not again soon after.
	now := p.now()
	verdict := p.mayReclaim(c, reg, isp, h, mac, now, "not relayed")
	if verdict == reclaimRefused {
		return false
	}
	why := "its client identifier is subscriber " + binding.MACString(mac) + "'s hardware address, and that subscriber asked with it"
	// Only if the holder still holds that lease (revokeHeld): it may
	// have ended meanwhile, and revoked again its ISP would get a second
	// RELEASE (a review).
	if !p.reclaimHeld(h, why, verdict, now) {
		if l, ok := p.leases.get(h.k); ok && l.same(&h.l) {
			return false // still held: the store refused (logged, counted)
		}
	}
	if p.waitForHolder(isp, cid, h.k.mac) {
		p.count("client_id_reclaim_waits")
		return false
	}
	return true
}

// reclaimWaits holds, by client identifier and ISP (waitKey), the
// holder's intents (its RELEASE) a reclaim of that identifier waits for
// (checkClientID): until they are queued to the ISP, the owner's messages
// with the identifier are not relayed, retransmissions included, or the
// ISP, which keys leases by the identifier, would apply the late RELEASE
// to the lease it grants the owner. Entries go once their intents are
// queued or done: at the next message with the identifier (waiting), or
// at the next prune (at most reclaimPruneEvery after): a start holds the
// identifier of every intent it found pending (holdIdentifier), thousands
// after an ISP's outage, most of them of subscribers that do not come
// back. Keyed by the whole identifier, not its 32-bit cidKey: two pending
// intents' identifiers of one key (about one start in four with 50,000
// pending) each wait (a review: the later replaced the earlier's wait).
// An entry costs its identifier (~8 bytes, at most 256), its intents and
// the map's slot, as the hashed key's did with the identifier kept to
// compare: linear in the intents held. Not kept across a restart: a start
// has every pending intent's identifier wait (holdIdentifier).
type reclaimWaits struct {
	mu     sync.Mutex
	m      map[string]*reclaimWait
	pruned time.Time
	mem    mapMem // m's peak, for prune's remaking of it
}

// reclaimPruneEvery is how often the identifier waits whose intents are
// all queued or done are let go (reclaimWaits.prune).
const reclaimPruneEvery = 10 * time.Second

// reclaimWait is one reclaim's wait: the intents, and own, the MAC whose
// messages do not wait (0: none): the subscriber whose intents a start
// found pending (holdIdentifier).
type reclaimWait struct {
	ids []uint64
	own uint64
}

// waitKey is the reclaimWaits key of client identifier cid at ISP isp:
// the ISP's index, then the identifier, in buf (no allocation for an
// identifier of up to 255 bytes, what option 61 holds).
func waitKey(buf *[256]byte, isp uint8, cid []byte) []byte {
	return append(append(buf[:0], isp), cid...)
}

// holdIdentifier has the client identifier of intent in, one a previous
// run left pending (loadIntents), wait for it as a reclaim's does: its
// message (a revoked holder's RELEASE, say, the run killed before it was
// sent) goes to an ISP that keys leases by the identifier, and an
// exchange of the identifier's owner relayed before it would have its new
// lease freed by it (a crash test: the owner's DISCOVER went first; the
// waits are not kept across a restart). An intent whose message carries
// no identifier holds nothing.
func (p *Proxy) holdIdentifier(in subscribers.Intent) {
	isp := p.isps[in.ISP]
	if isp == nil {
		return
	}
	m, err := dhcpv4.FromBytes(in.Message)
	if err != nil {
		return
	}
	if cid := m.Options.Get(dhcpv4.OptionClientIdentifier); len(cid) > 0 {
		p.reclaims.wait(isp.Index, cid, []uint64{in.ID}, binding.MAC48(in.MAC))
	}
}

// wait notes that identifier cid at ISP isp waits for intents ids,
// besides any it waited for already; own is a MAC whose messages do not
// wait (0: none).
func (r *reclaimWaits) wait(isp uint8, cid []byte, ids []uint64, own uint64) {
	var buf [256]byte
	k := waitKey(&buf, isp, cid)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]*reclaimWait{}
	}
	w := r.m[string(k)]
	if w == nil {
		r.m[string(k)] = &reclaimWait{slices.Clone(ids), own}
		r.mem.note(len(r.m))
		return
	}
	w.ids = append(w.ids, ids...)
	if w.own != own {
		w.own = 0
	}
}

// prune lets go of the waits whose intents queued reports on the wire, at
// most once per reclaimPruneEvery (now) and only when some wait: linear in
// the waits. It remakes the map once what it holds, pruned or let go by
// waiting, has fallen to a quarter of its peak (mapMem), as the
// transactions' table is (shrink): a start after an outage holds the
// identifier of each RELEASE pending, and the map kept their room for
// good (200K: 7 MB, TestBurstMapsReleaseMemory).
func (r *reclaimWaits) prune(now time.Time, queued func(uint64) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.m) > 0 && now.Sub(r.pruned) >= reclaimPruneEvery {
		r.pruned = now
		for k, w := range r.m {
			if w.ids = slices.DeleteFunc(w.ids, queued); len(w.ids) == 0 {
				delete(r.m, k)
			}
		}
	}
	if r.mem.due(len(r.m)) {
		r.m = remade(r.m)
	}
}

// len is the number of identifiers waiting.
func (r *reclaimWaits) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

// waiting reports whether a message of mac with identifier cid at ISP isp
// still waits for an intent queued does not report on the wire (queued,
// or done), forgetting the wait once none is left.
func (r *reclaimWaits) waiting(isp uint8, cid []byte, mac uint64, queued func(uint64) bool) bool {
	if len(cid) == 0 {
		return false
	}
	var buf [256]byte
	k := waitKey(&buf, isp, cid)
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.m[string(k)]
	if w == nil {
		return false
	}
	w.ids = slices.DeleteFunc(w.ids, queued)
	if len(w.ids) == 0 {
		delete(r.m, string(k))
		return false
	}
	// The intents' own subscriber does not wait: its pending intents
	// hold its messages already (relayLater).
	return mac != w.own
}
