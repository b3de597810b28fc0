package dhcpproxy

import (
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/ispmux/ispmux/subscribers"
)

// The identifiers a start holds for its pending intents (holdIdentifier)
// are let go once those intents are sent, whether or not a message with
// the identifier comes again: a wait was forgotten only by the next
// message with its identifier (waiting), so every RELEASE pending at a
// start (an ISP's outage ended by a mass expiry leaves thousands) kept its
// entry, and its identifier's copy, for the whole run, one per subscriber
// that did not come back. Fails without the prune.
func TestHeldIdentifiersLetGoOnceSent(t *testing.T) {
	r := newPRig(t)
	const n = 50
	var ids [][]byte
	for i := range n {
		ids = append(ids, []byte{255, 0, 0, 0, 1, 0, 2, byte(i)})
	}
	r.startWithPendingReleases(t, ids)
	if got := r.p.reclaims.len(); got != n {
		t.Fatalf("%d identifiers held at the start, want %d (one per pending intent)", got, n)
	}
	now := time.Now()
	for i := range 3 {
		r.p.expire(now.Add(time.Duration(i) * reclaimPruneEvery))
	}
	if r.p.PendingIntents() != 0 {
		t.Fatalf("%d intents still pending: the rig sent none", r.p.PendingIntents())
	}
	if got := r.p.reclaims.len(); got != 0 {
		t.Errorf("%d identifiers still held after their intents were sent, want none", got)
	}
}

// Two intents a start finds pending whose client identifiers have one
// 32-bit cidKey are both held: the waits were keyed by that hash, and the
// later identifier's wait replaced the earlier's (about one start in four
// with 50,000 pending intents), so a message with the earlier identifier
// was relayed before its RELEASE and that RELEASE then freed the new lease
// at the ISP. Fails without the full identifier as the key.
func TestHeldIdentifiersCollidingKeys(t *testing.T) {
	r := newPRig(t)
	ids := collidingIDs(t, 0)
	r.startWithPendingReleases(t, ids[:])
	r.snd.take()
	if got := r.p.reclaims.len(); got != 2 {
		t.Errorf("%d identifiers held at the start, want 2", got)
	}
	for i, id := range ids {
		if up := r.askWithOwnID(s1, id); len(up) != 0 {
			t.Errorf("s1's DISCOVER with pending intent %d's identifier: to the ISP %v, want nothing before that intent is sent", i, up)
		}
	}
	if c := r.p.Counters(); c["client_id_reclaim_waits"] != 2 {
		t.Errorf("counters %v, want two client_id_reclaim_waits", c)
	}
}

// startWithPendingReleases stores a pending RELEASE to alpha for each
// client identifier of ids (MAC 02:00:00:00:09:i, address 100.64.0.100+i),
// as a run that ended before sending them leaves them, and starts the
// proxy again from the store.
func (r *prig) startWithPendingReleases(t *testing.T, ids [][]byte) {
	t.Helper()
	for i, id := range ids {
		m := [6]byte{2, 0, 0, 0, 9, byte(i)}
		rel, _ := dhcpv4.New(dhcpv4.WithHwAddr(m[:]), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
			dhcpv4.WithClientIP(net.IPv4(100, 64, 0, byte(100+i))), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, id))
		if _, err := r.store.AddIntent(subscribers.Intent{Kind: subscribers.IntentRelease, ISP: "alpha", MAC: m, Access: "acc0",
			IP: netip.AddrFrom4([4]byte{100, 64, 0, byte(100 + i)}), Message: rel.ToBytes(), Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	r.p = New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil)
	if _, err := r.p.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
}

// collidingIDs returns two client identifiers whose cidKey at ISP isp is
// one (this run's cidSeed): a birthday search, ~80,000 tries.
func collidingIDs(t *testing.T, isp uint8) [2][]byte {
	t.Helper()
	seen := make(map[uint32]uint32, 1<<18)
	for i := uint32(0); i < 1<<22; i++ {
		id := func(i uint32) []byte { return []byte{255, 0, 0, 0, 1, byte(i >> 16), byte(i >> 8), byte(i)} }
		k := cidKey(isp, id(i))
		if j, ok := seen[k]; ok {
			return [2][]byte{id(j), id(i)}
		}
		seen[k] = i
	}
	t.Fatal("no two identifiers of one key in 4M")
	return [2][]byte{}
}

// A message's check against the held identifiers allocates nothing, held
// or not (the key is built on the stack).
func TestHeldIdentifierCheckAllocs(t *testing.T) {
	var r reclaimWaits
	held, other := []byte{1, 2, 0, 0, 0, 0, 3}, []byte{1, 2, 0, 0, 0, 0, 4}
	r.wait(0, held, []uint64{5}, 0)
	notQueued := func(uint64) bool { return false }
	for _, cid := range [][]byte{held, other} {
		if n := testing.AllocsPerRun(100, func() { r.waiting(0, cid, s1MAC, notQueued) }); n != 0 {
			t.Errorf("waiting(%x): %v allocations, want 0", cid, n)
		}
	}
}

// A million identifiers held (a start after an ISP's outage, every
// binding's RELEASE pending) cost ~100 bytes each, all kept (the hashed
// keys lost ~140 to collisions, at ~160 bytes each), and are let go in
// one linear prune.
func TestHeldIdentifiersMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("a million identifiers")
	}
	const n = 1 << 20
	var r reclaimWaits
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		r.wait(0, []byte{1, 2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}, []uint64{uint64(i)}, uint64(i))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if r.len() != n {
		t.Errorf("%d identifiers held, want %d", r.len(), n)
	}
	if per := (after.HeapAlloc - before.HeapAlloc) / n; per > 160 {
		t.Errorf("%d bytes an identifier held, want at most 160", per)
	}
	r.prune(time.Now(), func(uint64) bool { return true })
	if r.len() != 0 {
		t.Errorf("%d identifiers held after their intents were sent", r.len())
	}
}
