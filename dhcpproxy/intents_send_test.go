package dhcpproxy

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// copySender copies each frame into a buffer of its own under a mutex, as
// the datapath's Inject does (injFree), and counts them: the send path's
// own cost is what a profile of BenchmarkSendRound shows, not a fake's.
type copySender struct {
	mu  sync.Mutex
	buf []byte
	n   int
}

func (s *copySender) Inject(port uint8, frame []byte) bool {
	s.mu.Lock()
	s.buf = append(s.buf[:0], frame...)
	s.n++
	s.mu.Unlock()
	return true
}

// sendRig is a proxy on an empty store with n backlog RELEASEs to alpha
// (IDs 1..n) queued in memory, and its sender.
func sendRig(tb testing.TB, n int, snd Sender) (*Proxy, []subscribers.Intent) {
	tb.Helper()
	st, err := subscribers.Open(filepath.Join(tb.TempDir(), "s.db"), subscribers.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	tab := &fakeTables{bound: map[uint64]binding.Binding{}, store: st}
	p := New(switchRigConfig(), st, storeRegistry{st}, tab, snd, nil)
	ins := make([]subscribers.Intent, n)
	proto := backlogIntent(0)
	for i := range ins {
		in := proto
		in.MAC = [6]byte{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}
		in.ID = uint64(i + 1)
		ins[i] = in
		p.intents.add(in, false)
	}
	return p, ins
}

// A round that finds the oldest intent of an ISP being sent by another
// goroutine (a relay's flushIntentsOf, claimed) leaves that ISP until the
// next round, sending none of it and leaving the other's claim alone;
// the next round sends each of them once.
func TestRoundLeavesClaimedIntent(t *testing.T) {
	snd := &capSender{left: -1, perIdx: map[uint8]int{}}
	p, _ := sendRig(t, 3, snd)
	if c, _ := p.intents.claim(1); !c {
		t.Fatal("intent 1 not claimed")
	}
	p.sendRound()
	if n := snd.sentTo(upPort); n != 0 {
		t.Fatalf("round with alpha's oldest being sent elsewhere: %d frames to alpha, want 0", n)
	}
	if c, done := p.intents.claim(1); c || done {
		t.Fatalf("intent 1 after the round: claimable %v, done %v; want still the other sender's", c, done)
	}
	p.intents.unclaim(1) // the other sender could not send it
	p.sendRound()
	wantEachSentOnce(t, p, snd, 3)
}

// wantEachSentOnce checks that the round just run sent alpha's intents
// 1..n once each: n frames to alpha, each intent marked sent.
func wantEachSentOnce(t *testing.T, p *Proxy, snd *capSender, n int) {
	t.Helper()
	if got := snd.sentTo(upPort); got != n {
		t.Errorf("next round: %d frames to alpha, want %d (each intent once)", got, n)
	}
	for id := uint64(1); id <= uint64(n); id++ {
		if !p.intents.queued(id) {
			t.Errorf("intent %d not marked sent", id)
		}
	}
}

// A round that cannot send an ISP's oldest intent (its next hop not
// resolved, or the datapath's queue full) leaves it pending, unclaimed
// and at the front of the ISP's queue: the round took and claimed it
// (takeUnsent), so the send's failure must end that claim (or a relay of
// the subscriber's next message, flushIntentsOf, would wait for it for
// good) and put it back (or no round would send it again before a
// restart), where it is taken first again. The next round, the cause
// gone, sends each of alpha's intents once.
func TestRoundPutsBackWhatItCannotSend(t *testing.T) {
	for _, cause := range []string{"unresolved", "queue full"} {
		t.Run(cause, func(t *testing.T) {
			sendCap := -1
			if cause == "queue full" {
				sendCap = 0
			}
			p, snd := memBacklog(t, 3, "alpha", cause == "unresolved", sendCap)
			p.sendRound()
			if n := snd.sentTo(upPort); n != 0 {
				t.Fatalf("%d frames to alpha, want 0", n)
			}
			if got := p.PendingIntents(); got != 4 {
				t.Fatalf("%d pending, want 4", got)
			}
			pi, ok, busy := p.intents.takeUnsent("alpha")
			if !ok || busy || pi.in.ID != 1 {
				t.Fatalf("alpha's next unsent after the round: %d %v (busy %v), want intent 1, not claimed", pi.in.ID, ok, busy)
			}
			p.intents.unclaim(pi.in.ID)
			p.intents.putBack(pi)
			p.tables.(*downTables).down[0] = false
			snd.refill(-1)
			p.sendRound()
			wantEachSentOnce(t, p, snd, 3)
		})
	}
}

// macSender counts the DHCP messages queued per client hardware address.
type macSender struct {
	mu    sync.Mutex
	byMAC map[[6]byte]int
}

func (s *macSender) Inject(port uint8, frame []byte) bool {
	m := dhcpOf(frame)
	s.mu.Lock()
	defer s.mu.Unlock()
	if m != nil {
		s.byMAC[[6]byte(m.ClientHWAddr)]++
	}
	return true
}

// A round and relays of the subscribers' next messages (flushIntentsOf)
// racing over the same intents queue each RELEASE once, none twice: the
// round claims what it takes in the hold of the lock that takes it, and
// leaves what a relay has claimed; the relays each send what the round
// has not claimed. A round that ignored a relay's claim sent the RELEASE
// a second time (an interleaving, not every run: -count=20 finds it).
func TestRoundAndRelaysSendEachIntentOnce(t *testing.T) {
	const n = 2000
	snd := &macSender{byMAC: map[[6]byte]int{}}
	r := switchRigAt(t, filepath.Join(t.TempDir(), "s.db"))
	p := New(switchRigConfig(), r.store, storeRegistry{r.store}, r.tab, snd, nil)
	ins := make([]subscribers.Intent, n)
	for i := range ins {
		ins[i] = backlogIntent(i)
		ins[i].ID = uint64(i + 1)
		p.intents.add(ins[i], false)
	}
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Go(func() {
			for i := g; i < n; i += 2 {
				p.flushIntentsOf(binding.MAC48(ins[i].MAC), "alpha")
			}
		})
	}
	for p.intents.len() > 0 && !allQueued(p, n) {
		p.sendRound()
	}
	wg.Wait()
	for i, in := range ins {
		if c := snd.byMAC[in.MAC]; c != 1 {
			t.Errorf("intent %d: RELEASE queued %d times, want once", i+1, c)
		}
	}
}

// allQueued reports whether intents 1..n are all marked sent.
func allQueued(p *Proxy, n int) bool {
	for id := uint64(1); id <= uint64(n); id++ {
		if !p.intents.queued(id) {
			return false
		}
	}
	return true
}

// counterSink keeps a counter's name escaping, as p.count's does: a
// concatenation whose result stays on the stack allocates nothing.
var counterSink string

// intentSentCounter names the counter of every intent kind as
// "intent_sent_" and the kind (the names Prometheus exports: CounterNames,
// docs/OPERATIONS.md), a kind unknown to this build's too (one a newer
// build stored), and builds no string for a known kind.
func TestIntentSentCounter(t *testing.T) {
	known := CounterNames()
	for _, k := range []subscribers.IntentKind{subscribers.IntentRelease, subscribers.IntentDecline, subscribers.IntentReleaseUnbound} {
		want := "intent_sent_" + string(k)
		if got := intentSentCounter(k); got != want {
			t.Errorf("kind %q: counter %q, want %q", k, got, want)
		}
		if !slices.Contains(known, want) {
			t.Errorf("%q is not in CounterNames", want)
		}
		if a := testing.AllocsPerRun(100, func() { counterSink = intentSentCounter(k) }); a != 0 {
			t.Errorf("kind %q: %v allocations a name, want 0", k, a)
		}
	}
	if got := intentSentCounter("renew"); got != "intent_sent_renew" {
		t.Errorf("unknown kind: counter %q, want intent_sent_renew", got)
	}
}

// dropHandler drops every frame a worker receives (none: its ports are
// in memory and transmit only).
type dropHandler struct{}

func (dropHandler) Process(b *datapath.Batch) {}
func (dropHandler) Flush()                    {}

// workerSender is a datapath worker running over in-memory ports (the
// proxy's ports: access, alpha, beta), counting the frames it puts on
// them: Inject's own cost, its queue's bound (injectCap) and its
// wake-ups of the worker, with the worker draining alongside.
func workerSender(b *testing.B) (*datapath.Worker, *atomic.Int64) {
	var onWire atomic.Int64
	qs := make([]datapath.Queue, 3)
	for i := range qs {
		q := datapath.NewMemQueue(4096, 2048)
		q.Sink = func([]byte) { onWire.Add(1) }
		qs[i] = q
	}
	w, err := datapath.NewWorker(0, qs, dropHandler{}, 64, 100*time.Millisecond)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- w.Run() }()
	b.Cleanup(func() {
		w.Stop()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	return w, &onWire
}

// BenchmarkSendRound measures one round of sendRound over a backlog of n
// RELEASEs to alpha (next hop resolved): a round sends
// completeBatch*completeRound of them at most, completed in memory
// before the next, timer stopped, as the next tick would (the store's
// commits aside); the backlog is queued again once a round could find
// fewer. The sender is
// "copy" (copySender: every frame queued, the proxy's own cost) or
// "worker" (a datapath worker over in-memory ports, draining alongside:
// a round stops at an ISP when its injection queue is full). ns/intent
// is the rounds' time over the intents they sent, cpu-ns/intent the
// process's CPU time in them (the GC's included) over the same.
func BenchmarkSendRound(b *testing.B) {
	for _, kind := range []string{"copy", "worker"} {
		for _, n := range []int{completeBatch * completeRound, 1_000_000} {
			b.Run(fmt.Sprintf("%s/n=%d", kind, n), func(b *testing.B) {
				benchSendRound(b, kind, n)
			})
		}
	}
}

func benchSendRound(b *testing.B, kind string, n int) {
	var snd Sender
	var queued func() int64
	switch kind {
	case "copy":
		cs := &copySender{}
		snd, queued = cs, func() int64 { cs.mu.Lock(); defer cs.mu.Unlock(); return int64(cs.n) }
	case "worker":
		w, onWire := workerSender(b)
		snd, queued = w, onWire.Load
	}
	p, ins := sendRig(b, n, snd)
	p.count("intent_sent_release")
	c, _ := p.counters.Load("intent_sent_release")
	sentCount := c.(*atomic.Uint64).Load // Counters() would allocate its map each round
	round := completeBatch * completeRound
	left, sent := n, 0
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	var cpu time.Duration // the process's CPU time in the rounds: less noisy than their wall time on a shared machine
	for range b.N {
		c0 := cpuTime()
		if left < round {
			b.StopTimer()
			p.intents.init()
			for _, in := range ins {
				p.intents.add(in, false)
			}
			left = n
			runtime.GC() // the refill's garbage is not the rounds'
			b.StartTimer()
		}
		before := sentCount()
		p.sendRound()
		cpu += cpuTime() - c0
		d := int(sentCount() - before)
		if kind == "copy" && d != round {
			b.Fatalf("a round sent %d, want %d", d, round)
		}
		left -= d
		sent += d
		// Completed, as the next tick would (flushIntents, the store's
		// commits aside): the sent ones do not pile up in the queue.
		b.StopTimer()
		for _, id := range p.intents.due(time.Now().Add(time.Hour), d) {
			p.intents.done(id)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent), "ns/intent")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(sent), "cpu-ns/intent")
	if kind == "worker" {
		// Every frame queued reaches the wire.
		deadline := time.Now().Add(5 * time.Second)
		for queued() < int64(sent) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if q := queued(); q != int64(sent) {
			b.Fatalf("%d frames on the wire, %d queued", q, sent)
		}
	}
}

// cpuTime is the CPU time the process has used (user and system, every
// thread: the GC's and a worker's included).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
