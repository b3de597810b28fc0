package dhcpproxy

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// downTables is fakeTables with the next hop of the ISPs in down
// unresolved (by index), the others' resolved.
type downTables struct {
	*fakeTables
	down map[uint8]bool
}

func (t *downTables) NextHopMAC(isp uint8) (uint64, bool) {
	if t.down[isp] {
		return 0, false
	}
	return t.fakeTables.NextHopMAC(isp)
}

// capSender counts the frames queued per port, keeping none, and queues
// at most left until refill: the datapath's injection queue (1024
// frames), which its worker drains between two ticks.
type capSender struct {
	mu     sync.Mutex
	left   int // < 0: no limit
	perIdx map[uint8]int
}

func (s *capSender) Inject(port uint8, frame []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.left == 0 {
		return false
	}
	if s.left > 0 {
		s.left--
	}
	s.perIdx[port]++
	return true
}

func (s *capSender) refill(n int) {
	s.mu.Lock()
	s.left = n
	s.mu.Unlock()
}

func (s *capSender) sentTo(port uint8) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perIdx[port]
}

// seededBacklog returns the path of a store file holding n backlog
// intents to isp (backlogIntent's, 1..n) and then one RELEASE to beta
// (ID n+1). Seeding a million takes minutes: with BACKLOG_SEED_DIR set,
// the file is made there once per n and isp, kept across runs (an A/B),
// and copied for each caller; remove it when done.
func seededBacklog(tb testing.TB, n int, isp string) string {
	tb.Helper()
	dst := filepath.Join(tb.TempDir(), "s.db")
	dir := os.Getenv("BACKLOG_SEED_DIR")
	if dir == "" {
		seedBacklog(tb, dst, n, isp)
		return dst
	}
	src := filepath.Join(dir, fmt.Sprintf("%d-%s.db", n, isp))
	if _, err := os.Stat(src); err != nil {
		seedBacklog(tb, src, n, isp)
	}
	copyFile(tb, src, dst)
	return dst
}

// seedBacklog writes seededBacklog's intents to a store at path (no
// fsync, side by side so the group commit batches them).
func seedBacklog(tb testing.TB, path string, n int, isp string) {
	tb.Helper()
	st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	var failed error
	sideBySide(n, func(i int) bool {
		in := backlogIntent(i)
		in.ISP = isp
		if _, err := st.AddIntent(in); err != nil {
			failed = err
			return false
		}
		return true
	})
	if failed != nil {
		tb.Fatal(failed)
	}
	if _, err := st.AddIntent(betaIntent()); err != nil {
		tb.Fatal(err)
	}
	if err := st.Close(); err != nil {
		tb.Fatal(err)
	}
}

func copyFile(tb testing.TB, src, dst string) {
	tb.Helper()
	in, err := os.Open(src)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
}

// betaIntent is a RELEASE to beta, a configured ISP whose next hop is
// resolved and whose server answers.
func betaIntent() subscribers.Intent {
	in := backlogIntent(1<<24 - 1)
	in.ISP = "beta"
	return in
}

// backlogRig is a proxy on the store at path (fsync on) with its intents
// loaded, alpha's next hop unresolved if alphaDown, and a capSender
// queueing sendCap frames a tick (< 0: any number).
func backlogRig(tb testing.TB, path string, alphaDown bool, sendCap int) (*Proxy, *capSender, *subscribers.Store) {
	tb.Helper()
	st, err := subscribers.Open(path, subscribers.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	tab := &downTables{fakeTables: &fakeTables{bound: map[uint64]binding.Binding{}, store: st}, down: map[uint8]bool{0: alphaDown}}
	snd := &capSender{left: sendCap, perIdx: map[uint8]int{}}
	p := New(switchRigConfig(), st, storeRegistry{st}, tab, snd, nil)
	if err := p.loadIntents(); err != nil {
		tb.Fatal(err)
	}
	return p, snd, st
}

// BenchmarkTickIntentBacklog measures one timer tick (flushIntents) with
// a backlog of n intents pending, the store real (fsync on): "unresolved",
// n RELEASEs to alpha, whose next hop is not resolved (nothing to send,
// nothing due: the tick's work is all overhead); "settling", n RELEASEs
// all queued within intentSettle (nothing due yet, nothing left to send).
// ns/op is one tick.
func BenchmarkTickIntentBacklog(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("unresolved/n=%d", n), func(b *testing.B) {
			p, _, _ := backlogRig(b, seededBacklog(b, n, "alpha"), true, -1)
			now := time.Now()
			p.flushIntents(now) // beta's RELEASE leaves
			now = time.Now()
			p.flushIntents(now.Add(intentSettle)) // and is completed
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				p.flushIntents(now.Add(time.Duration(i+1) * 250 * time.Millisecond))
			}
			b.StopTimer()
			if got := p.PendingIntents(); got != n {
				b.Fatalf("%d pending, want %d", got, n)
			}
		})
		b.Run(fmt.Sprintf("settling/n=%d", n), func(b *testing.B) {
			p, snd, _ := backlogRig(b, seededBacklog(b, n, "alpha"), false, -1)
			now := time.Now()
			for snd.sentTo(upPort) < n { // all sent at now or later: none due below
				p.flushIntents(now)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				p.flushIntents(now.Add(time.Duration(i%100) * time.Millisecond))
			}
			b.StopTimer()
			if got := p.PendingIntents(); got != n+1 {
				b.Fatalf("%d pending, want %d", got, n+1)
			}
		})
	}
}

// BenchmarkHealthyBehindBacklog measures how long an intent to beta
// (configured, next hop resolved, answering) stored after a backlog of n
// to another ISP waits: ticks-to-send is the tick whose round queued its
// RELEASE (1: the first), ms-to-send the time the rounds up to it took
// (each tick also waits 250 ms). The backlog is "unresolved" (alpha's
// next hop is not), "removed" (gamma, no longer configured) or
// "congested" (alpha's RELEASEs leave 1024 a tick, the datapath's
// injection queue). Run with -benchtime=1x. A RELEASE not sent within
// maxTicks is given up on: ticks-to-send is then maxTicks+1.
func BenchmarkHealthyBehindBacklog(b *testing.B) {
	const maxTicks = 200
	for _, n := range []int{100_000, 1_000_000} {
		for _, c := range []struct {
			name      string
			isp       string
			alphaDown bool
			cap       int
		}{
			{"unresolved", "alpha", true, -1},
			{"removed", "gamma", false, -1},
			{"congested", "alpha", false, 1024},
		} {
			b.Run(fmt.Sprintf("%s/n=%d", c.name, n), func(b *testing.B) {
				var ticks int
				var took time.Duration
				for range b.N {
					b.StopTimer()
					p, snd, st := backlogRig(b, seededBacklog(b, n, c.isp), c.alphaDown, c.cap)
					b.StartTimer()
					start := time.Now()
					now := start
					ticks = 0
					for snd.sentTo(betaPort) == 0 {
						ticks++
						if ticks > maxTicks {
							b.Logf("beta's RELEASE not sent within %d ticks", maxTicks)
							break
						}
						p.flushIntents(now)
						now = now.Add(250 * time.Millisecond)
						snd.refill(c.cap)
					}
					took = time.Since(start)
					b.StopTimer()
					st.Close()
				}
				b.ReportMetric(float64(ticks), "ticks-to-send")
				b.ReportMetric(float64(took.Milliseconds()), "ms-to-send")
			})
		}
	}
}
