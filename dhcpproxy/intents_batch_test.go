package dhcpproxy

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/crashtest"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

// backlogIntent is the i-th intent of a backlog: a RELEASE to alpha of
// 100.64.x.y (i+1) for MAC 02:00:00:ii:ii:ii, as an outage of alpha
// leaves them queued.
func backlogIntent(i int) subscribers.Intent {
	m := [6]byte{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}
	ip := netip.AddrFrom4([4]byte{100, 64, byte((i + 1) >> 8), byte(i + 1)})
	rel, _ := dhcpv4.New(dhcpv4.WithHwAddr(m[:]), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithClientIP(net.IP(ip.AsSlice())), dhcpv4.WithGatewayIP(net.IP(giaddr.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispSID.AsSlice()))))
	return subscribers.Intent{Kind: subscribers.IntentRelease, ISP: "alpha", MAC: m, Access: "acc0", IP: ip,
		Message: rel.ToBytes(), Created: time.Now()}
}

// seedIntents stores n backlog intents in the store file at path (a store
// without fsync for speed, side by side so the group commit batches them;
// their IDs are 1..n in no particular order of i).
func seedIntents(tb testing.TB, path string, n int) {
	tb.Helper()
	st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	var failed error
	sideBySide(n, func(i int) bool {
		if _, err := st.AddIntent(backlogIntent(i)); err != nil {
			failed = err
			return false
		}
		return true
	})
	if err := st.Close(); err != nil {
		tb.Fatal(err)
	}
	if failed != nil {
		tb.Fatal(failed)
	}
}

// markStoredSent queues in the proxy every intent stored, as sent at at
// (a round after at+intentSettle completes them), and returns how many.
func markStoredSent(tb testing.TB, p *Proxy, st *subscribers.Store, at time.Time) int {
	tb.Helper()
	ins, err := st.Intents()
	if err != nil {
		tb.Fatal(err)
	}
	for _, in := range ins {
		p.intents.add(in, false)
		p.intents.markSent(in.ID, at)
	}
	return len(ins)
}

// A round settles a backlog of intents whose RELEASEs left (an ISP back
// after a long outage) completeBatch to a store commit: before, one
// commit each (an fdatasync each) held the round, and the timeouts and
// lease expiry behind it, for minutes at 100k. An intent whose message was
// queued less than intentSettle ago is not completed, nor one not sent.
func TestRoundCompletesIntentsInBatches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	n := 2*completeBatch + 1
	seedIntents(t, path, n+2)
	r := switchRigAt(t, path)
	cs := &countingStore{Store: r.store}
	r.p = New(r.p.config(), cs, r.p.reg, r.tab, r.snd, nil)
	ins, err := r.store.Intents()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// The last two: one queued just now (not settled), one not sent
	// (alpha unreachable).
	fresh, unsent := ins[n], ins[n+1]
	for _, in := range ins[:n+1] {
		r.p.intents.add(in, false)
		r.p.intents.markSent(in.ID, now.Add(-time.Second))
	}
	r.p.intents.markSent(fresh.ID, now)
	r.p.intents.add(unsent, false)
	r.setUplinkDown(true)

	r.p.flushIntents(now)
	want := (n + completeBatch - 1) / completeBatch
	if w := cs.writes.Load(); w != int64(want) {
		t.Errorf("a round completing %d intents made %d store commits, want %d (completeBatch %d to one)", n, w, want, completeBatch)
	}
	left, err := r.store.Intents()
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, in := range left {
		ids = append(ids, in.ID)
	}
	wantIDs := []uint64{fresh.ID, unsent.ID}
	slices.Sort(wantIDs)
	if !slices.Equal(ids, wantIDs) {
		t.Errorf("intents stored after the round: %v, want only the one queued just now and the one not sent (%v)", ids, wantIDs)
	}
	if p := r.p.PendingIntents(); p != 2 {
		t.Errorf("%d intents pending after the round, want 2", p)
	}
	if pr := r.p.Progress(); pr < uint64(want) {
		t.Errorf("Progress %d after %d commits", pr, want)
	}
}

// The intents a round completes unsent, here of an ISP no longer
// configured (a backlog of RELEASEs to an ISP the operator removed after
// its outage), go completeBatch to a commit too: one each before.
func TestRoundDropsUnconfiguredISPsIntentsInBatches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	n := 2*completeBatch + 1
	st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	sideBySide(n, func(i int) bool {
		in := backlogIntent(i)
		in.ISP = "gamma" // not configured
		if _, err := st.AddIntent(in); err != nil {
			t.Error(err)
			return false
		}
		return true
	})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	r := switchRigAt(t, path)
	cs := &countingStore{Store: r.store}
	var logged bytes.Buffer
	r.p = New(r.p.config(), cs, r.p.reg, r.tab, r.snd, slog.New(slog.NewTextHandler(&logged, nil)))
	if err := r.p.loadIntents(); err != nil {
		t.Fatal(err)
	}
	r.p.flushIntents(time.Now())
	// One log line for the ISP's backlog, with its count, not a line
	// per intent.
	if got, want := strings.Count(logged.String(), "no longer configured dropped"), 1; got != want ||
		!strings.Contains(logged.String(), fmt.Sprintf("isp=gamma messages=%d", n)) {
		t.Errorf("%d lines for the backlog of an ISP not configured, want %d:\n%.600s", got, want, logged.String())
	}
	want := (n + completeBatch - 1) / completeBatch
	if w := cs.writes.Load(); w != int64(want) {
		t.Errorf("a round dropping %d intents of an ISP not configured made %d store commits, want %d", n, w, want)
	}
	if left, _ := r.store.Intents(); len(left) != 0 || r.p.PendingIntents() != 0 {
		t.Errorf("after the round: %d intents stored, %d pending", len(left), r.p.PendingIntents())
	}
	if up := r.snd.take(); len(up) != 0 {
		t.Errorf("%d frames sent for intents of an ISP not configured", len(up))
	}
}

// A round completes completeRound commits of due intents at most, the
// oldest (lowest IDs): a backlog of a million would hold the round's
// timers for ~20 s otherwise. The rest are completed by the next rounds.
func TestRoundCompletesAtMostCompleteRound(t *testing.T) {
	defer func(b int) { completeBatch = b }(completeBatch)
	completeBatch = 2
	path := filepath.Join(t.TempDir(), "s.db")
	n := completeBatch*completeRound + 3
	seedIntents(t, path, n)
	r := switchRigAt(t, path)
	cs := &countingStore{Store: r.store}
	r.p = New(r.p.config(), cs, r.p.reg, r.tab, r.snd, nil)
	now := time.Now()
	markStoredSent(t, r.p, r.store, now.Add(-time.Second))
	r.p.flushIntents(now)
	if w := cs.writes.Load(); w != int64(completeRound) {
		t.Errorf("the first round made %d commits, want completeRound (%d)", w, completeRound)
	}
	left, err := r.store.Intents()
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, in := range left {
		ids = append(ids, in.ID)
	}
	if want := []uint64{uint64(n - 2), uint64(n - 1), uint64(n)}; !slices.Equal(ids, want) {
		t.Errorf("intents stored after the first round: %v, want the three newest %v", ids, want)
	}
	r.p.flushIntents(now.Add(250 * time.Millisecond))
	if w := cs.writes.Load(); w != int64(completeRound+2) {
		t.Errorf("%d commits after the second round, want %d", w, completeRound+2)
	}
	if left, _ := r.store.Intents(); len(left) != 0 || r.p.PendingIntents() != 0 {
		t.Errorf("after the second round: %d intents stored, %d pending", len(left), r.p.PendingIntents())
	}
}

// BenchmarkRoundCompletingBacklog completes a backlog of 100k intents
// sent a while ago, on a store with fsync in the test's temporary
// directory, round after round until none is left: "before" is one
// commit (one fdatasync) each in a single round, as it was (minutes);
// the others completeBatch to a commit, with completeRound's cap or none.
// Run it with -benchtime=1x. ns/op is the time of all the rounds;
// longest-round-ms the longest (what the timers wait for), rounds their
// number.
func BenchmarkRoundCompletingBacklog(b *testing.B) {
	const n = 100_000
	const unbounded = 1 << 30
	for _, c := range []struct {
		name         string
		batch, round int
	}{
		{"before", 1, unbounded},
		{"batch=256", 256, unbounded},
		{"batch=1024", 1024, unbounded},
		{"batch=4096", 4096, unbounded},
		{"batch=1024,round=16", 1024, 16},
	} {
		b.Run(c.name, func(b *testing.B) {
			defer func(b, r int) { completeBatch, completeRound = b, r }(completeBatch, completeRound)
			completeBatch, completeRound = c.batch, c.round
			var longest time.Duration
			rounds := 0
			for range b.N {
				b.StopTimer()
				path := filepath.Join(b.TempDir(), "s.db")
				seedIntents(b, path, n)
				st, err := subscribers.Open(path, subscribers.Options{})
				if err != nil {
					b.Fatal(err)
				}
				p := New(switchRigConfig(), st, storeRegistry{st}, &fakeTables{bound: map[uint64]binding.Binding{}, store: st}, &fakeSender{}, nil)
				now := time.Now()
				markStoredSent(b, p, st, now.Add(-time.Second))
				b.StartTimer()
				for p.PendingIntents() > 0 {
					start := time.Now()
					p.flushIntents(now)
					longest = max(longest, time.Since(start))
					rounds++
				}
				b.StopTimer()
				st.Close()
			}
			b.ReportMetric(float64(longest.Milliseconds()), "longest-round-ms")
			b.ReportMetric(float64(rounds)/float64(b.N), "rounds")
		})
	}
}

const batchCrashEnv = "DHCPPROXY_BATCH_CRASH_CHILD"

// The crash between two commits of a round: the child queues seven
// RELEASEs (intents 1..7), sends them, and completes them three to a
// commit (completeBatch 3) in the next round; the failpoint kills it after
// the first or the second commit. After the restart, the intents of the
// commits made are gone and their RELEASEs not sent again; those of the
// commits not made are pending and each RELEASE is sent once more (a
// server takes it as a repeat); the second restart sends nothing. Before,
// each intent had its own commit, in no order: a crash after the first
// commit left six pending, after the second five (both cases fail).
func TestCrashBetweenCompletionBatches(t *testing.T) {
	const n = 7
	if path := os.Getenv(batchCrashEnv); path != "" {
		completeBatch = 3
		r := switchRigAt(t, path)
		for i := range n {
			it, err := r.store.AddIntent(backlogIntent(i))
			if err != nil {
				t.Fatal(err)
			}
			r.p.intents.add(it, false)
		}
		r.p.expire(time.Now())
		r.p.expire(time.Now().Add(time.Second))
		t.Fatal("child: the failpoint was not hit")
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	for _, c := range []struct {
		hit     int
		pending []int // the backlog's i of the intents left
	}{
		{1, []int{3, 4, 5, 6}},
		{2, []int{6}},
	} {
		t.Run(fmt.Sprintf("after commit %d", c.hit), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			crashtest.KillAt(t, "TestCrashBetweenCompletionBatches", batchCrashEnv+"="+path,
				fmt.Sprintf("%s@%d", failpoint.EndAfterComplete, c.hit))
			var want []netip.Addr
			for _, i := range c.pending {
				want = append(want, backlogIntent(i).IP)
			}
			for restart := 1; restart <= 2; restart++ {
				r := switchRigAt(t, path)
				ins, err := r.store.Intents()
				if err != nil {
					t.Fatal(err)
				}
				var stored []netip.Addr
				for _, in := range ins {
					stored = append(stored, in.IP)
				}
				if !slices.Equal(stored, want) {
					t.Fatalf("restart %d after a crash after commit %d: intents of %v stored, want %v", restart, c.hit, stored, want)
				}
				if _, err := r.p.Restore(time.Now()); err != nil {
					t.Fatal(err)
				}
				r.p.expire(time.Now())
				r.p.expire(time.Now().Add(time.Second))
				var released []netip.Addr
				for _, m := range r.sentUp(dhcpv4.MessageTypeRelease) {
					released = append(released, addrOf(m.ClientIPAddr))
				}
				slices.SortFunc(released, netip.Addr.Compare)
				if !slices.Equal(released, want) {
					t.Errorf("restart %d after a crash after commit %d: RELEASEs of %v sent, want %v once each", restart, c.hit, released, want)
				}
				if p := r.p.PendingIntents(); p != 0 {
					t.Errorf("restart %d: %d intents pending after the rounds", restart, p)
				}
				if err := r.store.Close(); err != nil {
					t.Fatal(err)
				}
				want = nil
			}
		})
	}
}

// The intents a round completes unsent are held to completeRound commits
// a round too (a review: a removed ISP's backlog of a million was ~1000
// commits in one round); the next rounds complete the rest.
func TestRoundDropsUnconfiguredISPsIntentsAtMostCompleteRound(t *testing.T) {
	defer func(b int) { completeBatch = b }(completeBatch)
	completeBatch = 2
	path := filepath.Join(t.TempDir(), "s.db")
	n := completeBatch*completeRound + 3
	st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		in := backlogIntent(i)
		in.ISP = "gamma" // not configured
		if _, err := st.AddIntent(in); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	r := switchRigAt(t, path)
	cs := &countingStore{Store: r.store}
	r.p = New(r.p.config(), cs, r.p.reg, r.tab, r.snd, nil)
	if err := r.p.loadIntents(); err != nil {
		t.Fatal(err)
	}
	r.p.flushIntents(time.Now())
	if w := cs.writes.Load(); w != int64(completeRound) {
		t.Errorf("the first round made %d commits, want completeRound (%d)", w, completeRound)
	}
	if left := r.p.PendingIntents(); left != 3 {
		t.Errorf("after the first round: %d pending, want 3", left)
	}
	r.p.flushIntents(time.Now())
	if left, _ := r.store.Intents(); len(left) != 0 || r.p.PendingIntents() != 0 {
		t.Errorf("after the second round: %d intents stored, %d pending", len(left), r.p.PendingIntents())
	}
}

// endersAtOnce is how many goroutines sideBySide runs at once.
const endersAtOnce = 64

// sideBySide calls fn(i) for every i in [0, n), endersAtOnce goroutines
// at a time: each end fn makes is a durable transaction, and side by side
// the store's group commit puts many in one fsync, where one after the
// other cost one fsync each. fn returns false to have no more started.
func sideBySide(n int, fn func(i int) bool) {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		stop atomic.Bool
	)
	for range min(endersAtOnce, n) {
		wg.Go(func() {
			for !stop.Load() {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if !fn(i) {
					stop.Store(true)
				}
			}
		})
	}
	wg.Wait()
}
