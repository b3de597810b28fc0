package dhcpproxy

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// removedCircuitMAC is the hardware address of the removed circuit's
// binding i (TestStartEndsRemovedCircuitInBatches).
func removedCircuitMAC(i int) [6]byte { return [6]byte{2, 0, 7, byte(i >> 16), byte(i >> 8), byte(i)} }

// removedCircuitIP is the address of binding i.
func removedCircuitIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{100, 64 | byte(i>>16), byte(i >> 8), byte(i)})
}

// seedRemovedCircuit stores n bindings at alpha on acc1 VLAN 5, a circuit
// switchRigConfig does not configure, and n more on acc0 that the start
// restores, in a store at path written without fsync (the seed only).
func seedRemovedCircuit(t testing.TB, path string, n, live int) {
	t.Helper()
	seed, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	op82 := (&relayInfo{CircuitID: []byte("acc1:5"), RemoteID: []byte{2, 0, 0, 7, 0, 0}}).encode()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n+live; i += 8 {
				hw := removedCircuitMAC(i)
				b := subscribers.Binding{MAC: hw, Access: "acc1", VLAN: 5, ISP: "alpha", IP: removedCircuitIP(i),
					Expires: now.Add(time.Hour), Updated: now, LeaseTime: 2 * time.Hour, ServerID: ispSID, Option82: op82}
				if i >= n {
					if err := seed.PutRegistration(subscribers.Registration{MAC: hw, CustomerID: "c-s1", ISP: "alpha", Source: "api"}); err != nil {
						errs <- err
						return
					}
					b.Access, b.VLAN, b.Option82 = "acc0", 0, nil
				}
				if err := seed.CommitBinding(b); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := seed.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestStartEndsRemovedCircuitInBatches: a start ends every binding of an
// access circuit no longer configured, each with its RELEASE intent to its
// ISP (configured) and its revoked event, before the box forwards. One
// durable transaction each (side by side, the group commit put ~64 in an
// fsync) held the start up ~0.15 s a thousand bindings; batched
// (Store.EndBindings with intents) it is a transaction per startEndBatch.
// The commits are counted, not timed; each binding is gone, its intent
// stored (one each, none lost) and its event written once; the configured
// circuit's bindings are restored. DHCPPROXY_BULKEND_N sets the count (a
// trial at 100k).
func TestStartEndsRemovedCircuitInBatches(t *testing.T) {
	n, live := 20000, 10
	if testing.Short() {
		n = 5000
	}
	if s := os.Getenv("DHCPPROXY_BULKEND_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "s.db")
	seedRemovedCircuit(t, path, n, live)
	r := switchRigAt(t, path)
	before := r.store.CommitStats().Transactions
	start := time.Now()
	got, err := r.p.Restore(time.Now())
	took := time.Since(start)
	if err != nil || got != live {
		t.Fatalf("Restore = %d, %v; want the %d bindings of acc0", got, err, live)
	}
	r.p.lapsing.Wait()
	txs := r.store.CommitStats().Transactions - before
	t.Logf("%d bindings of a removed circuit ended at the start in %v, %d store transactions", n, took.Round(time.Millisecond), txs)
	// The intents loaded, the bindings restored and ended: a few
	// transactions besides the ends' (none today; slack for the start's
	// own writes).
	if max := uint64((n+startEndBatch-1)/startEndBatch) + 8; txs > max {
		t.Errorf("%d store transactions to end %d bindings, want at most %d (batches of %d)", txs, n, max, startEndBatch)
	}
	left := 0
	if err := r.store.ForEachBindingBorrowed(func(b *subscribers.Binding) error {
		if b.Access == "acc1" {
			left++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d bindings of the removed circuit still stored", left)
	}
	ins, err := r.store.Intents()
	if err != nil {
		t.Fatal(err)
	}
	released := map[[6]byte]int{}
	for _, in := range ins {
		if in.Kind == subscribers.IntentRelease && in.ISP == "alpha" && in.Access == "acc1" {
			released[[6]byte(in.MAC)]++
		}
	}
	evs, err := r.store.Events(0, 2*n+100)
	if err != nil {
		t.Fatal(err)
	}
	revoked := map[[6]byte]int{}
	for _, e := range evs {
		if e.Kind == subscribers.EventRevoked && e.Access == "acc1" {
			revoked[[6]byte(e.MAC)]++
		}
	}
	for i := range n {
		m := removedCircuitMAC(i)
		if released[m] != 1 || revoked[m] != 1 {
			t.Fatalf("binding %d: %d RELEASE intents stored, %d revoked events; want 1 each", i, released[m], revoked[m])
		}
	}
	if p := r.p.PendingIntents(); p != n {
		t.Errorf("%d intents pending in memory, want %d", p, n)
	}
	for i := n; i < n+live; i++ {
		if _, ok := r.p.Lease(accPort, 0, binding.MAC48(removedCircuitMAC(i))); !ok {
			t.Errorf("live binding %d not restored", i)
		}
	}
}

// blockingRegistry is the store's registry with every MAC blocked once
// blocked is set: a bulk suspension, as the registry reads it.
type blockingRegistry struct {
	storeRegistry
	blocked *atomic.Bool
}

func (r blockingRegistry) Lookup(mac uint64) (registry.Entry, bool) {
	e, ok := r.storeRegistry.Lookup(mac)
	e.Blocked = e.Blocked || r.blocked.Load()
	return e, ok
}

// bulkRig restores n bindings on acc0 at alpha (seedRemovedCircuit,
// leases of an hour) from a store at a fresh path, fsync'd as in service.
// blocked, if not nil, blocks every registration while set
// (blockingRegistry): a bulk revocation's subscribers.
func bulkRig(t *testing.T, n int, blocked *atomic.Bool) (*Proxy, *subscribers.Store, *fakeTables) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	seedRemovedCircuit(t, path, 0, n)
	st, err := subscribers.Open(path, subscribers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var reg Registry = storeRegistry{st}
	if blocked != nil {
		reg = blockingRegistry{storeRegistry{st}, blocked}
	}
	tab := &fakeTables{bound: map[uint64]binding.Binding{}, store: st}
	p := New(switchRigConfig(), st, reg, tab, &fakeSender{}, nil)
	if got, err := p.Restore(time.Now()); err != nil || got != n {
		t.Fatalf("Restore = %d, %v; want %d", got, err, n)
	}
	return p, st, tab
}

// TestBulkRevocationInBatches: a tenant change that revokes many bindings
// at once (an import suspending 50k devices, a customer's deletion, a
// purge; RevalidateMACs) ends them revokeBatch to a store transaction,
// each with its RELEASE intent and revoked event. One transaction each
// (side by side, the group commit put ~35 in an fsync) revoked ~N a
// second; the commits are counted, not timed. Each binding is gone from
// the store, the lease table and the forwarding tables, its intent stored
// and queued once, its event written once.
func TestBulkRevocationInBatches(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 5000
	}
	if s := os.Getenv("DHCPPROXY_BULKEND_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	var blocked atomic.Bool
	p, st, tab := bulkRig(t, n, &blocked) // all on acc0, registered at alpha
	macs := make([]uint64, n)
	for i := range n {
		macs[i] = binding.MAC48(removedCircuitMAC(i))
	}
	blocked.Store(true)
	before := st.CommitStats().Transactions
	start := time.Now()
	revoked := p.RevalidateMACs(macs)
	took := time.Since(start)
	txs := st.CommitStats().Transactions - before
	t.Logf("%d bindings revoked in %v, %d store transactions", n, took.Round(time.Millisecond), txs)
	if revoked != n {
		t.Fatalf("RevalidateMACs = %d, want %d", revoked, n)
	}
	if max := uint64((n+revokeBatch-1)/revokeBatch) + 8; txs > max {
		t.Errorf("%d store transactions to revoke %d bindings, want at most %d (batches of %d)", txs, n, max, revokeBatch)
	}
	left := 0
	if err := st.ForEachBindingBorrowed(func(*subscribers.Binding) error { left++; return nil }); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d bindings still stored", left)
	}
	ins, err := st.Intents()
	if err != nil {
		t.Fatal(err)
	}
	released := map[[6]byte]int{}
	for _, in := range ins {
		if in.Kind == subscribers.IntentRelease {
			released[[6]byte(in.MAC)]++
		}
	}
	evs, err := st.Events(0, 2*n+100)
	if err != nil {
		t.Fatal(err)
	}
	ended := map[[6]byte]int{}
	for _, e := range evs {
		if e.Kind == subscribers.EventRevoked {
			ended[[6]byte(e.MAC)]++
		}
	}
	for i := range n {
		m := removedCircuitMAC(i)
		if released[m] != 1 || ended[m] != 1 {
			t.Fatalf("binding %d: %d RELEASE intents, %d revoked events; want 1 each", i, released[m], ended[m])
		}
		if _, ok := p.Lease(accPort, 0, binding.MAC48(m)); ok || tab.isBound(binding.MAC48(m)) {
			t.Fatalf("binding %d still leased (%v) or forwarding (%v)", i, ok, tab.isBound(binding.MAC48(m)))
		}
	}
	if got := p.PendingIntents(); got != n {
		t.Errorf("%d intents pending in memory, want %d", got, n)
	}
}

// movingRegistry is the store's registry with every MAC registered at
// beta once moved is set: an ISP's devices moved to another at once.
type movingRegistry struct {
	storeRegistry
	moved *atomic.Bool
}

func (r movingRegistry) Lookup(mac uint64) (registry.Entry, bool) {
	e, ok := r.storeRegistry.Lookup(mac)
	if ok && r.moved.Load() {
		e.ISP = "beta"
	}
	return e, ok
}

// TestBulkMoveCutInBatches: devices moved to another ISP at once keep
// their old bindings until ClientLeaseMax after the move (make-before-
// break); those that never asked are cut in the same tick (cutMoves),
// revokeBatch to a store transaction (one each, one after the other, held
// the tick ~5 ms a binding), each with its RELEASE to the old ISP and its
// revoked event, out of the lease and forwarding tables.
func TestBulkMoveCutInBatches(t *testing.T) {
	n := 3000
	if s := os.Getenv("DHCPPROXY_BULKEND_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "s.db")
	seedRemovedCircuit(t, path, 0, n)
	st, err := subscribers.Open(path, subscribers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var moved atomic.Bool
	tab := &fakeTables{bound: map[uint64]binding.Binding{}, store: st}
	p := New(switchRigConfig(), st, movingRegistry{storeRegistry{st}, &moved}, tab, &fakeSender{}, nil)
	now := time.Now()
	if got, err := p.Restore(now); err != nil || got != n {
		t.Fatalf("Restore = %d, %v; want %d", got, err, n)
	}
	macs := make([]uint64, n)
	for i := range n {
		macs[i] = binding.MAC48(removedCircuitMAC(i))
	}
	moved.Store(true)
	if got := p.RevalidateMACs(macs); got != n || p.MovesPending() != n {
		t.Fatalf("RevalidateMACs = %d, %d moves pending; want %d", got, p.MovesPending(), n)
	}
	before := st.CommitStats().Transactions
	start := time.Now()
	p.cutMoves(time.Now().Add(switchRigConfig().Limits.ClientLeaseMax + time.Minute))
	took := time.Since(start)
	txs := st.CommitStats().Transactions - before
	t.Logf("%d moved devices' old bindings cut in %v, %d store transactions", n, took.Round(time.Millisecond), txs)
	if max := uint64((n+revokeBatch-1)/revokeBatch) + 4; txs > max {
		t.Errorf("%d store transactions to cut %d bindings, want at most %d (batches of %d)", txs, n, max, revokeBatch)
	}
	ins, err := st.Intents()
	if err != nil {
		t.Fatal(err)
	}
	released := map[[6]byte]int{}
	for _, in := range ins {
		if in.Kind == subscribers.IntentRelease && in.ISP == "alpha" {
			released[[6]byte(in.MAC)]++
		}
	}
	for i := range n {
		m := removedCircuitMAC(i)
		if released[m] != 1 {
			t.Fatalf("binding %d: %d RELEASE intents to alpha, want 1", i, released[m])
		}
		if _, err := st.Binding("acc0", 0, m); err == nil {
			t.Fatalf("binding %d still stored", i)
		}
		if _, ok := p.Lease(accPort, 0, binding.MAC48(m)); ok || tab.isBound(binding.MAC48(m)) {
			t.Fatalf("binding %d still leased (%v) or forwarding (%v)", i, ok, tab.isBound(binding.MAC48(m)))
		}
	}
	if got := p.MovesPending(); got != 0 {
		t.Errorf("%d moves still pending", got)
	}
}

// A bulk revocation's batches are cut stripe by stripe (byStripe): with
// one stripe of subMu held (a DHCP commit of one of its subscribers under
// way), the batches of the stripes before it commit meanwhile, and those
// subscribers' bindings are revoked; the rest wait for the stripe and go
// on once it is let go. Before, each batch of 512 had subscribers of all
// 64 stripes and took them all for its commit, so every DHCP commit
// waited for every batch (a concurrent lock's mean wait during 20k
// revocations ~45-85 ms, against ~2 ms, median 0.4 µs, now), and here no
// batch committed while the stripe was held. Fails without byStripe.
func TestBulkRevocationBatchesByStripe(t *testing.T) {
	const n = 5000
	var blocked atomic.Bool
	p, _, _ := bulkRig(t, n, &blocked)
	macs := make([]uint64, n)
	for i := range n {
		macs[i] = binding.MAC48(removedCircuitMAC(i))
	}
	blocked.Store(true)
	done := make(chan int, 1)
	got, before, last := endedWithLastStripeHeld(t, p, macs, func() { done <- p.RevalidateMACs(macs) })
	if got < before-revokeBatch {
		t.Errorf("with stripe %d held, %d of the %d bindings of the other stripes revoked; want all but the last batch's", last, got, before)
	}
	if r := <-done; r != n {
		t.Errorf("RevalidateMACs = %d, want %d", r, n)
	}
}

// endedWithLastStripeHeld runs end (a bulk end of macs' leases, on acc0)
// with the last stripe of subMu held, as an ACK committing holds it,
// until all of the other stripes' leases but a batch's have ended (or 20
// s), then lets it go and waits for end. It returns how many of the
// other stripes' leases ended meanwhile, how many there are, and the
// stripe held.
func endedWithLastStripeHeld(t *testing.T, p *Proxy, macs []uint64, end func()) (got, before, last int) {
	t.Helper()
	last = len(p.subMu) - 1
	for _, m := range macs {
		if p.subStripe(m) < last {
			before++
		}
	}
	ended := func() int {
		k := 0
		for _, m := range macs {
			if _, ok := p.Lease(accPort, 0, m); !ok && p.subStripe(m) < last {
				k++
			}
		}
		return k
	}
	p.subMu[last].Lock()
	done := make(chan struct{})
	go func() { end(); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for ended() < before-revokeBatch && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got = ended()
	p.subMu[last].Unlock()
	<-done
	return got, before, last
}

// byStripe orders by stripe and loses nothing.
func TestByStripe(t *testing.T) {
	p := &Proxy{}
	var hs []held
	for i := range 3000 {
		hs = append(hs, held{k: subKey{mac: uint64(i) * 0x10001}})
	}
	out := p.byStripe(slices.Clone(hs))
	if len(out) != len(hs) {
		t.Fatalf("%d out of %d", len(out), len(hs))
	}
	seen := map[uint64]bool{}
	for i, h := range out {
		seen[h.k.mac] = true
		if i > 0 {
			a, b := p.subStripe(out[i-1].k.mac), p.subStripe(h.k.mac)
			if a > b {
				t.Fatalf("out of order at %d: stripe %d, then %d", i, a, b)
			}
		}
	}
	if len(seen) != len(hs) {
		t.Errorf("%d distinct of %d", len(seen), len(hs))
	}
}
