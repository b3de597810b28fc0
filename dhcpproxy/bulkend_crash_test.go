package dhcpproxy

import (
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

const bulkEndCrashEnv = "DHCPPROXY_BULKEND_CRASH_CHILD"

// TestCrashBetweenRemovedCircuitBatches: a start ends a removed circuit's
// bindings startEndBatch to a transaction, each with its RELEASE intent
// (endEach). Killed right after the first batch's commit (failpoint
// restart/end-after-batch), the store holds that batch's bindings ended,
// each with its intent, and the others stored with none: no intent lost,
// none without its end. The next start ends the rest; every binding is
// gone, has one intent and one revoked event, the event log has no gap,
// and each RELEASE is sent once.
func TestCrashBetweenRemovedCircuitBatches(t *testing.T) {
	n, live := 2*startEndBatch+100, 5
	if path := os.Getenv(bulkEndCrashEnv); path != "" {
		r := switchRigAt(t, path)
		_, err := r.p.Restore(time.Now())
		t.Fatalf("child: the failpoint was not hit (restore: %v)", err)
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	path := filepath.Join(t.TempDir(), "s.db")
	seedRemovedCircuit(t, path, n, live)

	runKilledAt(t, "TestCrashBetweenRemovedCircuitBatches", bulkEndCrashEnv, path, failpoint.RestartEndAfterBatch+"@1")

	r := switchRigAt(t, path)
	stored := map[[6]byte]bool{}
	if err := r.store.ForEachBindingBorrowed(func(b *subscribers.Binding) error {
		if b.Access == "acc1" {
			stored[b.MAC] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ins, err := r.store.Intents()
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != n-startEndBatch || len(ins) != startEndBatch {
		t.Fatalf("after the crash: %d bindings of acc1 stored and %d intents; want %d and %d (the first batch ended, the rest not)",
			len(stored), len(ins), n-startEndBatch, startEndBatch)
	}
	for _, in := range ins {
		if stored[[6]byte(in.MAC)] {
			t.Fatalf("an intent of a binding still stored: %+v", in)
		}
	}

	now := time.Now()
	if got, err := r.p.Restore(now); err != nil || got != live {
		t.Fatalf("the start after the crash restored %d, %v; want %d", got, err, live)
	}
	r.p.expire(now)
	r.p.expire(now.Add(time.Second))
	r.p.notes.wait()
	released := map[netip.Addr]int{}
	for _, m := range r.sentUp(dhcpv4.MessageTypeRelease) {
		ip, _ := netip.AddrFromSlice(m.ClientIPAddr.To4())
		released[ip]++
	}
	evs, err := r.store.Events(0, 2*n)
	if err != nil {
		t.Fatal(err)
	}
	revoked := map[[6]byte]int{}
	for i, e := range evs {
		if i > 0 && e.Seq != evs[i-1].Seq+1 {
			t.Fatalf("event %d has seq %d after %d: a gap", i, e.Seq, evs[i-1].Seq)
		}
		if e.Kind == subscribers.EventRevoked && e.Access == "acc1" {
			revoked[[6]byte(e.MAC)]++
		}
	}
	for i := range n {
		m := removedCircuitMAC(i)
		if _, err := r.store.Binding("acc1", 5, m); err == nil {
			t.Fatalf("binding %d of the removed circuit is stored after the restart", i)
		}
		if ip := removedCircuitIP(i); revoked[m] != 1 || released[ip] != 1 {
			t.Fatalf("binding %d: %d revoked events, %d RELEASEs sent; want 1 each", i, revoked[m], released[ip])
		}
	}
}

const revokeCrashEnv = "DHCPPROXY_REVOKE_CRASH_CHILD"

// blockedRigAt is switchRigAt with every MAC's registration read as
// blocked (blockingRegistry): what a bulk suspension leaves.
func blockedRigAt(t *testing.T, path string, blocked *atomic.Bool) *prig {
	st, err := subscribers.Open(path, subscribers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &prig{t: t, store: st, tab: &fakeTables{bound: map[uint64]binding.Binding{}, store: st}, snd: &fakeSender{}}
	r.p = New(switchRigConfig(), st, blockingRegistry{storeRegistry{st}, blocked}, r.tab, r.snd, nil)
	return r
}

// TestCrashBetweenRevocationBatches: a bulk revocation (RevalidateMACs
// after a suspension of many devices) commits revokeBatch ends to a
// transaction, each with its RELEASE intent. Killed right after the first
// batch's commit (failpoint restart/end-after-batch, Store.EndBindings'),
// before the state in memory changed: that batch's bindings are ended,
// each with its intent, the others stored with none. The start after
// revokes the rest (their registrations blocked); each binding has one
// intent, one revoked event and one RELEASE sent.
func TestCrashBetweenRevocationBatches(t *testing.T) {
	n := 2*revokeBatch + 50
	if path := os.Getenv(revokeCrashEnv); path != "" {
		var blocked atomic.Bool
		r := blockedRigAt(t, path, &blocked)
		if got, err := r.p.Restore(time.Now()); err != nil || got != n {
			t.Fatalf("child: Restore = %d, %v", got, err)
		}
		macs := make([]uint64, n)
		for i := range n {
			macs[i] = binding.MAC48(removedCircuitMAC(i))
		}
		blocked.Store(true)
		r.p.RevalidateMACs(macs)
		t.Fatal("child: the failpoint was not hit")
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	path := filepath.Join(t.TempDir(), "s.db")
	seedRemovedCircuit(t, path, 0, n)

	runKilledAt(t, "TestCrashBetweenRevocationBatches", revokeCrashEnv, path, failpoint.RestartEndAfterBatch+"@1")

	var blocked atomic.Bool
	blocked.Store(true)
	r := blockedRigAt(t, path, &blocked)
	stored := map[[6]byte]bool{}
	if err := r.store.ForEachBindingBorrowed(func(b *subscribers.Binding) error { stored[b.MAC] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	ins, err := r.store.Intents()
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != n-revokeBatch || len(ins) != revokeBatch {
		t.Fatalf("after the crash: %d bindings stored and %d intents; want %d and %d (the first batch ended, the rest not)",
			len(stored), len(ins), n-revokeBatch, revokeBatch)
	}
	for _, in := range ins {
		if stored[[6]byte(in.MAC)] {
			t.Fatalf("an intent of a binding still stored: %+v", in)
		}
	}
	now := time.Now()
	if got, err := r.p.Restore(now); err != nil || got != 0 {
		t.Fatalf("the start after the crash restored %d, %v; want none (all blocked)", got, err)
	}
	r.p.expire(now)
	r.p.expire(now.Add(time.Second))
	r.p.notes.wait()
	released := map[netip.Addr]int{}
	for _, m := range r.sentUp(dhcpv4.MessageTypeRelease) {
		ip, _ := netip.AddrFromSlice(m.ClientIPAddr.To4())
		released[ip]++
	}
	evs, err := r.store.Events(0, 2*n)
	if err != nil {
		t.Fatal(err)
	}
	revoked := map[[6]byte]int{}
	for _, e := range evs {
		if e.Kind == subscribers.EventRevoked {
			revoked[[6]byte(e.MAC)]++
		}
	}
	for i := range n {
		m := removedCircuitMAC(i)
		if _, err := r.store.Binding("acc0", 0, m); err == nil {
			t.Fatalf("binding %d is stored after the restart", i)
		}
		if ip := removedCircuitIP(i); revoked[m] != 1 || released[ip] != 1 {
			t.Fatalf("binding %d: %d revoked events, %d RELEASEs sent; want 1 each", i, revoked[m], released[ip])
		}
	}
}

const expiryCrashEnv = "DHCPPROXY_EXPIRY_CRASH_CHILD"

// TestCrashBetweenExpiryBatches: leases that ran out together (an area's
// power cut) end revokeBatch to a store transaction (expireEach). Killed
// before the second batch's commit (failpoint expire/before-commit, the
// second hit), the store holds exactly the first batch ended, each with
// its expired event ("lease expired"), and the others stored with none.
// The start after (their leases ran out) installs none of them and ends
// the rest as lapsed ("while ispmux was stopped"): every binding is gone
// with exactly one expired event, none restored, the event log without a
// gap.
func TestCrashBetweenExpiryBatches(t *testing.T) {
	n := 2*revokeBatch + 50
	if path := os.Getenv(expiryCrashEnv); path != "" {
		r := switchRigAt(t, path)
		now := time.Now()
		if got, err := r.p.Restore(now); err != nil || got != n {
			t.Fatalf("child: Restore = %d, %v", got, err)
		}
		r.p.expire(now.Add(3 * time.Hour)) // every lease (an hour) ran out
		t.Fatal("child: the failpoint was not hit")
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	path := filepath.Join(t.TempDir(), "s.db")
	seedRemovedCircuit(t, path, 0, n)

	runKilledAt(t, "TestCrashBetweenExpiryBatches", expiryCrashEnv, path, failpoint.ExpireBeforeCommit+"@2")

	r := switchRigAt(t, path)
	stored := map[[6]byte]bool{}
	if err := r.store.ForEachBindingBorrowed(func(b *subscribers.Binding) error { stored[b.MAC] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	evs, err := r.store.Events(0, 2*n)
	if err != nil {
		t.Fatal(err)
	}
	atRuntime := map[[6]byte]bool{}
	for _, e := range evs {
		if e.Kind != subscribers.EventExpired {
			continue
		}
		if e.Reason != "lease expired" || atRuntime[[6]byte(e.MAC)] || stored[[6]byte(e.MAC)] {
			t.Fatalf("after the crash: expired event %+v (its binding stored: %v); want one \"lease expired\" of an ended binding each",
				e, stored[[6]byte(e.MAC)])
		}
		atRuntime[[6]byte(e.MAC)] = true
	}
	if len(stored) != n-revokeBatch || len(atRuntime) != revokeBatch {
		t.Fatalf("after the crash: %d bindings stored, %d expired events; want %d and %d (the first batch ended, the rest not)",
			len(stored), len(atRuntime), n-revokeBatch, revokeBatch)
	}

	// Restarted after the leases ran out.
	if got, err := r.p.Restore(time.Now().Add(3 * time.Hour)); err != nil || got != 0 {
		t.Fatalf("the start after the crash restored %d, %v; want none (all lapsed)", got, err)
	}
	r.p.lapsing.Wait()
	if evs, err = r.store.Events(0, 2*n); err != nil {
		t.Fatal(err)
	}
	expired := map[[6]byte]int{}
	lapsed := 0
	for i, e := range evs {
		if i > 0 && e.Seq != evs[i-1].Seq+1 {
			t.Fatalf("event %d has seq %d after %d: a gap", i, e.Seq, evs[i-1].Seq)
		}
		if e.Kind == subscribers.EventExpired {
			expired[[6]byte(e.MAC)]++
			if e.Reason == startEndWhy(true) {
				lapsed++
				if atRuntime[[6]byte(e.MAC)] {
					t.Fatalf("binding %x ended at runtime and again at the start", e.MAC)
				}
			}
		}
	}
	if lapsed != n-revokeBatch {
		t.Errorf("%d ended at the start as lapsed, want %d", lapsed, n-revokeBatch)
	}
	for i := range n {
		m := removedCircuitMAC(i)
		if _, err := r.store.Binding("acc0", 0, m); err == nil {
			t.Fatalf("binding %d is stored after the restart", i)
		}
		if _, ok := r.p.Lease(accPort, 0, binding.MAC48(m)); ok || r.tab.isBound(binding.MAC48(m)) {
			t.Fatalf("binding %d leased or forwarding after the restart", i)
		}
		if expired[m] != 1 {
			t.Fatalf("binding %d: %d expired events, want 1", i, expired[m])
		}
	}
}
