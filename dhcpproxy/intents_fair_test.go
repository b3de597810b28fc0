package dhcpproxy

import (
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/subscribers"
)

// memBacklog is a proxy on a fresh store (switchRigAt) with n intents to
// isp queued in memory (IDs 1..n, not stored: nothing here completes
// them) and then one to beta (ID n+1); alpha's next hop unresolved if
// alphaDown, and a capSender queueing sendCap frames a tick.
func memBacklog(t *testing.T, n int, isp string, alphaDown bool, sendCap int) (*Proxy, *capSender) {
	t.Helper()
	r := switchRigAt(t, filepath.Join(t.TempDir(), "s.db"))
	tab := &downTables{fakeTables: r.tab, down: map[uint8]bool{0: alphaDown}}
	snd := &capSender{left: sendCap, perIdx: map[uint8]int{}}
	p := New(switchRigConfig(), r.store, storeRegistry{r.store}, tab, snd, nil)
	for i := range n {
		in := backlogIntent(i)
		in.ID, in.ISP = uint64(i+1), isp
		p.intents.add(in, true)
	}
	in := betaIntent()
	in.ID = uint64(n + 1)
	p.intents.add(in, true)
	return p, snd
}

// A tick with a backlog of 100k intents to an ISP whose next hop is not
// resolved tries that ISP once, not each of its intents (counted:
// intent_deferred is one per attempt), and sends an intent to a
// reachable ISP stored after them at once. Before, each tick copied,
// sorted and tried all 100k (100k intent_deferred a tick; 0.28 s a tick
// at 100k, 5.6 s at a million: BenchmarkTickIntentBacklog).
func TestTickTriesUnresolvedBacklogOnce(t *testing.T) {
	const n = 100_000
	p, snd := memBacklog(t, n, "alpha", true, -1)
	now := time.Now()
	for tick := 1; tick <= 3; tick++ {
		before := p.Counters()["intent_deferred"]
		p.flushIntents(now)
		if d := p.Counters()["intent_deferred"] - before; d > 1 {
			t.Errorf("tick %d: %d attempts at the unresolved ISP's intents, want 1", tick, d)
		}
		if snd.sentTo(betaPort) != 1 {
			t.Fatalf("tick %d: beta's RELEASE sent %d times, want once from the first tick", tick, snd.sentTo(betaPort))
		}
	}
	if got := p.PendingIntents(); got != n+1 {
		t.Errorf("%d pending, want %d (beta's not settled yet)", got, n+1)
	}
}

// An intent to a reachable ISP stored after a backlog of 100k to another
// whose RELEASEs leave only as fast as the datapath's queue takes them
// (1024 a tick here) is sent within two ticks; before, it waited behind
// the whole backlog (98 ticks), and each tick tried every intent (~99k
// inject_full a tick).
func TestHealthyIntentNotStarvedByCongestedISP(t *testing.T) {
	const n = 100_000
	p, snd := memBacklog(t, n, "alpha", false, 1024)
	now := time.Now()
	for tick := 1; snd.sentTo(betaPort) == 0; tick++ {
		if tick > 2 {
			t.Fatalf("beta's RELEASE not sent after %d ticks (alpha's: %d)", tick-1, snd.sentTo(upPort))
		}
		before := p.Counters()["inject_full"]
		p.flushIntents(now) // nothing due: all sent at now or later
		if f := p.Counters()["inject_full"] - before; f > 2 {
			t.Errorf("tick %d: %d sends refused by a full queue, want one an ISP at most", tick, f)
		}
		snd.refill(1024)
	}
	if a := snd.sentTo(upPort); a == 0 || a > 2*1024 {
		t.Errorf("alpha's RELEASEs queued: %d, want within the queue's room", a)
	}
}

// Two ISPs' backlogs share a round: each gets half of its budget
// (completeBatch*completeRound), oldest first, the ISPs' order turning.
func TestRoundSharesSendsBetweenISPs(t *testing.T) {
	defer func(b int) { completeBatch = b }(completeBatch)
	completeBatch = 8
	budget := completeBatch * completeRound
	p, snd := memBacklog(t, budget, "alpha", false, -1)
	for i := range budget {
		in := betaIntent()
		in.ID = uint64(budget + 2 + i)
		in.MAC[5] = byte(i)
		p.intents.add(in, true)
	}
	p.flushIntents(time.Now())
	a, b := snd.sentTo(upPort), snd.sentTo(betaPort)
	if a+b != budget || a < budget/2-intentShare || b < budget/2-intentShare {
		t.Errorf("a round sent %d to alpha and %d to beta, want %d in all, about half each", a, b, budget)
	}
	p.flushIntents(time.Now())
	p.flushIntents(time.Now())
	if a, b := snd.sentTo(upPort), snd.sentTo(betaPort); a != budget || b != budget+1 {
		t.Errorf("after the third round: %d to alpha, %d to beta, want all (%d and %d)", a, b, budget, budget+1)
	}
}

// An intent to a reachable ISP stored after the backlog of an ISP no
// longer configured is sent in the first round, while the backlog is
// dropped completeBatch to a commit, completeRound commits a round, with
// one log line per ISP and round. Before, the round's commits went to the
// backlog first and the intent waited for all of it (1000 intents, 32 a
// round here: 32 rounds; a million at the real caps: 62).
func TestHealthyIntentNotStarvedByRemovedISP(t *testing.T) {
	defer func(b int) { completeBatch = b }(completeBatch)
	completeBatch = 2
	const n = 1000
	path := filepath.Join(t.TempDir(), "s.db")
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
	if _, err := st.AddIntent(betaIntent()); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	r := switchRigAt(t, path)
	cs := &countingStore{Store: r.store}
	var logged strings.Builder
	r.p = New(r.p.config(), cs, r.p.reg, r.tab, r.snd, slog.New(slog.NewTextHandler(&logged, nil)))
	if err := r.p.loadIntents(); err != nil {
		t.Fatal(err)
	}
	r.p.flushIntents(time.Now())
	if got := releasesTo(r.snd, betaPort); got != 1 {
		t.Errorf("the first round sent %d RELEASEs to beta, want 1", got)
	}
	if w := cs.writes.Load(); w > int64(completeRound) {
		t.Errorf("the first round made %d commits, want completeRound (%d) at most", w, completeRound)
	}
	if got := strings.Count(logged.String(), "no longer configured dropped"); got != 1 {
		t.Errorf("%d log lines for the removed ISP's backlog in a round, want 1", got)
	}
	for round := 2; r.p.PendingIntents() > 1; round++ {
		if round > n {
			t.Fatal("the removed ISP's backlog is not dropped")
		}
		r.p.flushIntents(time.Now())
	}
	if left, _ := r.store.Intents(); len(left) > 1 || len(left) == 1 && left[0].ISP != "beta" {
		t.Errorf("stored after the backlog is dropped: %v, want beta's only, if not settled yet", left)
	}
	if got := releasesTo(r.snd, betaPort) + releasesTo(r.snd, upPort); got != 0 {
		t.Errorf("%d more RELEASEs sent, want none (beta's once, none of the removed ISP's)", got)
	}
}

// releasesTo takes the frames snd queued and counts the RELEASEs among
// those to port.
func releasesTo(snd *fakeSender, port uint8) int {
	n := 0
	for _, s := range snd.take() {
		if m := dhcpOf(s.frame); s.port == port && m != nil && m.MessageType() == dhcpv4.MessageTypeRelease {
			n++
		}
	}
	return n
}

// idHeap pops the IDs pushed in ascending order, pushes and pops
// interleaved (a differential test against a sorted slice).
func TestIDHeapOrder(t *testing.T) {
	var h idHeap
	var model []uint64
	x := uint64(12345)
	for i := range 5000 {
		x = x*6364136223846793005 + 1442695040888963407
		if i%3 == 2 && len(model) > 0 {
			slices.Sort(model)
			if got := h.pop(); got != model[0] {
				t.Fatalf("pop %d: %d, want %d", i, got, model[0])
			}
			model = model[1:]
			continue
		}
		id := x >> 40
		h.push(id)
		model = append(model, id)
	}
	slices.Sort(model)
	for _, want := range model {
		if got := h.pop(); got != want {
			t.Fatalf("drain: %d, want %d", got, want)
		}
	}
	if len(h) != 0 {
		t.Errorf("%d left", len(h))
	}
}
