package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ispmux/ispmux/lab"
)

// The kill -9 loop (issue 6): real dhclient and udhcpc subscribers with
// short leases churn (DORA, renew, release) while ispmux is killed at
// random instants and restarted, again and again; after every restart the
// three views of every subscriber must agree (nothing lost, phantom or
// orphaned), and the time from the restart to forwarding is measured.

// KillCyclesEnv sets the number of cycles (default 25; make soak: 1000).
const KillCyclesEnv = "ISPMUX_KILL_CYCLES"

// killLease is Kea's lease time in the loop: T1 (10 s) renewals run all
// the time besides the churn.
const killLease = 20 * time.Second

type durStats struct {
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
	N     int     `json:"n"`
}

func statsOf(ds []time.Duration) durStats {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	var mx time.Duration
	for _, d := range ds {
		mx = max(mx, d)
	}
	return durStats{P50MS: ms(percentile(ds, 50)), P99MS: ms(percentile(ds, 99)), MaxMS: ms(mx), N: len(ds)}
}

// killViolation is one subscriber inconsistent after a restart.
type killViolation struct {
	Cycle   int     `json:"cycle"`
	Verdict string  `json:"verdict"`
	View    subView `json:"view"`
	// What was going on when ispmux was killed.
	LastAction string `json:"last_action"`
	SinceMS    int64  `json:"kill_after_action_ms"`
}

type killLoopReport struct {
	runInfo
	Cycles     int      `json:"cycles"`
	LeaseTimeS int      `json:"lease_time_s"`
	Clients    []string `json:"clients"`
	Lost       int      `json:"lost"`
	Phantom    int      `json:"phantom"`
	Orphaned   int      `json:"orphaned"`
	BadCycles  int      `json:"cycles_with_violations"`
	// Distinct: the same lease seen inconsistent after several restarts
	// (until it expires) counts once here, once per cycle above.
	Distinct    int            `json:"distinct_violations,omitempty"`
	StaleClient int            `json:"stale_client"` // informational: a client holding an address nobody leases it
	Unsettled   int            `json:"unsettled"`    // informational: a client not bound again within the settle time
	Churn       map[string]int `json:"churn"`
	// Kills timed 0-40 ms after a churn action (the others at a
	// uniformly random instant).
	KillsAfterAction int `json:"kills_right_after_action"`
	// From ispmux's start to its control socket answering with every
	// ISP's next hop resolved, and to the first ping of a bound
	// subscriber (s1) through it reaching its ISP's host.
	RestartToReady      durStats        `json:"restart_to_ready"`
	RestartToForwarding durStats        `json:"restart_to_forwarding"`
	Violations          []killViolation `json:"violations,omitempty"`
}

// churner drives the churning clients: every 150-600 ms one of them does
// something (DORA, renew, release) unless paused.
type churner struct {
	r       *rig
	conf    string
	mu      sync.Mutex // held during an action; pause takes it
	paused  bool
	clients []*client
	counts  map[string]int
	last    string
	lastAt  time.Time
	fired   chan struct{}
	stop    chan struct{}
	done    chan struct{}
	rng     *rand.Rand
}

func (ch *churner) run() {
	defer close(ch.done)
	for {
		select {
		case <-ch.stop:
			return
		case <-time.After(time.Duration(150+ch.rng.IntN(450)) * time.Millisecond):
		}
		ch.mu.Lock()
		if !ch.paused {
			if what := ch.act(ch.clients[ch.rng.IntN(len(ch.clients))]); what != "" {
				ch.counts[what]++
				ch.last, ch.lastAt = what, time.Now()
				select {
				case ch.fired <- struct{}{}:
				default:
				}
			}
		}
		ch.mu.Unlock()
	}
}

// act makes c do something fitting its state; it returns what ("" for
// nothing: a client still getting its lease is left to it).
func (ch *churner) act(c *client) string {
	_, bound := ch.r.topo.SubAddr(context.Background(), c.sub)
	name := c.sub.Name + " "
	switch c.kind {
	case "dhclient":
		switch {
		case !c.running():
			c.start(ch.r.topo.Dhclient(context.Background(), c.sub, "-cf", ch.conf))
			return name + "dora"
		case !bound:
			return ""
		case ch.rng.IntN(10) < 6:
			// dhclient renews only at T1: a restarted one asks for
			// its lease again at once (INIT-REBOOT REQUEST).
			c.kill()
			c.start(ch.r.topo.Dhclient(context.Background(), c.sub, "-cf", ch.conf))
			return name + "renew"
		default:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = ch.r.topo.DhclientRelease(ctx, c.sub) // stops the running dhclient
			c.kill()
			c.released = true
			return name + "release"
		}
	default: // udhcpc
		switch {
		case !c.running():
			c.start(ch.r.topo.Udhcpc(context.Background(), c.sub, "-T", "1", "-t", "3", "-A", "1"))
			return name + "dora"
		case c.released:
			c.signal(syscall.SIGUSR1) // from RELEASED: INIT, DORA
			c.released = false
			return name + "dora"
		case !bound:
			return ""
		case ch.rng.IntN(10) < 6:
			c.signal(syscall.SIGUSR1)
			return name + "renew"
		default:
			c.signal(syscall.SIGUSR2)
			c.released = true
			return name + "release"
		}
	}
}

func (ch *churner) pause() {
	ch.mu.Lock()
	ch.paused = true
	ch.mu.Unlock()
}

func (ch *churner) resume() {
	ch.mu.Lock()
	ch.paused = false
	ch.mu.Unlock()
}

// wanting are the clients that want a lease now (running, not released).
func (ch *churner) wanting() []*client {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	var w []*client
	for _, c := range ch.clients {
		if c.running() && !c.released {
			w = append(w, c)
		}
	}
	return w
}

func TestKill9Loop(t *testing.T) {
	t.Parallel()
	cycles := 25
	if v := os.Getenv(KillCyclesEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive count", KillCyclesEnv, v)
		}
		cycles = n
	}
	r := newRig(t, lab.Options{Subscribers: 8, DHCP: true, LeaseTime: killLease})
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>7))
	conf := r.writeClientConf("")

	var cur *proc
	ch := &churner{r: r, conf: conf, counts: map[string]int{}, fired: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}), rng: rand.New(rand.NewPCG(seed+1, seed>>3))}
	var probe *client
	t.Cleanup(func() {
		select {
		case <-ch.stop:
		default:
			close(ch.stop)
			<-ch.done
		}
		probe.kill()
		for _, c := range ch.clients {
			c.kill()
		}
		cur.kill9()
	})
	cur = r.launch(binPath)
	if _, err := r.waitReady(cur, 15*time.Second); err != nil {
		t.Fatal(err)
	}

	// s1 (dhclient) is the forwarding probe: bound throughout, renewing
	// at T1, never churned. The others churn: dhclient and udhcpc.
	var subs []lab.Sub
	rep := &killLoopReport{Cycles: cycles, LeaseTimeS: int(killLease / time.Second)}
	udhcpc := true
	for _, s := range r.topo.Subscribers {
		if s.Role != lab.RoleValid {
			continue
		}
		subs = append(subs, s)
		switch {
		case s.Name == "s1":
			probe = r.startDhclient(s, conf)
			rep.Clients = append(rep.Clients, s.Name+" dhclient (forwarding probe, not churned)")
		case udhcpc:
			ch.clients = append(ch.clients, r.startUdhcpc(s))
			rep.Clients = append(rep.Clients, s.Name+" udhcpc")
		default:
			ch.clients = append(ch.clients, r.startDhclient(s, conf))
			rep.Clients = append(rep.Clients, s.Name+" dhclient")
		}
		if s.Name != "s1" {
			udhcpc = !udhcpc
		}
	}
	m := &matrix{r: r}
	for _, s := range subs {
		if _, _, ok := m.waitBound(s, 20*time.Second, netip.Addr{}); !ok {
			t.Fatalf("%s not bound before the loop; ispmux log:\n%s", s.Name, lastLines(cur.log.String(), 20))
		}
	}
	// The probe forwards before the first kill (and has its gateway's
	// ARP entry, as a subscriber that was forwarding has: the first
	// restart is then measured like the others, not with an ARP retry).
	if !r.ping("s1", hostAddr, 3) {
		t.Fatalf("s1 cannot reach its ISP before the loop; ispmux log:\n%s", lastLines(cur.log.String(), 20))
	}
	go ch.run()

	start := time.Now()
	var ready, fwd []time.Duration
	seen := map[string]bool{}
	for cycle := 1; cycle <= cycles; cycle++ {
		ch.resume()
		runFor := time.Duration(1500+rng.IntN(2500)) * time.Millisecond
		afterAction := rng.IntN(2) == 0
		if afterAction {
			time.Sleep(runFor / 2)
			select { // an action fired before now does not count
			case <-ch.fired:
			default:
			}
			select {
			case <-ch.fired:
				time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
			case <-time.After(3 * time.Second):
				afterAction = false
			}
		} else {
			time.Sleep(runFor)
		}
		cur.kill9()
		ch.mu.Lock()
		lastAction, since := ch.last, time.Since(ch.lastAt)
		ch.mu.Unlock()
		if afterAction {
			rep.KillsAfterAction++
		}
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond) // churn goes on while ispmux is down

		cur = r.launch(binPath)
		pingDone := make(chan time.Duration, 1)
		go func(started time.Time) {
			// One echo request every 10 ms until the first reply.
			cmd := exec.Command("ip", "netns", "exec", probe.sub.NS, "ping", "-q", "-n", "-c", "1", "-w", "15", "-i", "0.01", hostAddr)
			if err := cmd.Run(); err != nil {
				pingDone <- -1
				return
			}
			pingDone <- time.Since(started)
		}(cur.started)
		rd, err := r.waitReady(cur, 15*time.Second)
		if err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		ready = append(ready, rd)
		if f := <-pingDone; f < 0 {
			t.Errorf("cycle %d: s1 does not forward within 15 s of the restart; ispmux log:\n%s", cycle, lastLines(cur.log.String(), 20))
		} else {
			fwd = append(fwd, f)
		}

		// Quiesce: no new actions; clients that want a lease get it.
		ch.pause()
		deadline := time.Now().Add(15 * time.Second)
		var unsettled []string
		for {
			unsettled = unsettled[:0]
			for _, c := range append(ch.wanting(), probe) {
				a, ok := r.topo.SubAddr(context.Background(), c.sub)
				b, bok := r.boundNoFail(c.sub.MAC)
				if !ok || !bok || b.IP != a.Addr().String() {
					unsettled = append(unsettled, c.sub.Name)
				}
			}
			if len(unsettled) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		rep.Unsettled += len(unsettled)
		vs, ds, err := r.checkViews(subs, 3*time.Second)
		if err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		bad := false
		for i, v := range vs {
			d := ds[i]
			if d.StaleClient {
				rep.StaleClient++
			}
			if !d.bad() {
				continue
			}
			bad = true
			if d.Lost {
				rep.Lost++
			}
			if d.Phantom {
				rep.Phantom++
			}
			if d.Orphaned {
				rep.Orphaned++
			}
			if k := fmt.Sprintf("%s %s %v %v %v", d, v.Sub, v.Ispmux, v.Kea, v.KeaExpires); !seen[k] {
				seen[k] = true
				rep.Distinct++
			}
			if len(rep.Violations) < 50 {
				rep.Violations = append(rep.Violations, killViolation{Cycle: cycle, Verdict: d.String(), View: v,
					LastAction: lastAction, SinceMS: since.Milliseconds()})
			}
			t.Errorf("cycle %d (killed %v after %q): %s: %s\nKea's log of %s:\n%s", cycle, since.Round(time.Millisecond), lastAction, d, v,
				v.MAC, r.keaLogOf(v.MAC, 12))
		}
		if bad || rd > time.Second {
			t.Logf("cycle %d: ispmux log since the restart:\n%s", cycle, lastLines(cur.log.String(), 30))
		}
		if bad {
			rep.BadCycles++
		}
		verdict := "consistent"
		if bad {
			verdict = "INCONSISTENT"
		}
		f := time.Duration(-1)
		if len(fwd) > 0 {
			f = fwd[len(fwd)-1]
		}
		t.Logf("cycle %d: killed %v after %q; ready %v, forwarding %v; %s", cycle, since.Round(time.Millisecond), lastAction,
			rd.Round(time.Millisecond), f.Round(time.Millisecond), verdict)
		if len(unsettled) > 0 {
			t.Logf("cycle %d: not bound again within 15 s: %v", cycle, unsettled)
		}
		if cycle%25 == 0 || cycle == cycles {
			t.Logf("cycle %d/%d: lost %d phantom %d orphaned %d; restart→ready p50 %v, →forwarding p50 %v p99 %v",
				cycle, cycles, rep.Lost, rep.Phantom, rep.Orphaned, percentile(ready, 50).Round(time.Millisecond),
				percentile(fwd, 50).Round(time.Millisecond), percentile(fwd, 99).Round(time.Millisecond))
		}
	}
	close(ch.stop)
	<-ch.done
	rep.Churn = ch.counts
	rep.RestartToReady, rep.RestartToForwarding = statsOf(ready), statsOf(fwd)
	rep.runInfo = newRunInfo(start)
	t.Logf("kill -9 loop: %d cycles in %.0f s: lost %d, phantom %d, orphaned %d (%d distinct; stale clients %d, unsettled %d); churn %v; restart→ready p50 %.0f ms p99 %.0f ms; restart→forwarding p50 %.0f ms p99 %.0f ms",
		cycles, rep.DurationS, rep.Lost, rep.Phantom, rep.Orphaned, rep.Distinct, rep.StaleClient, rep.Unsettled, summarizeChurn(rep.Churn),
		rep.RestartToReady.P50MS, rep.RestartToReady.P99MS, rep.RestartToForwarding.P50MS, rep.RestartToForwarding.P99MS)
	writeReport(t, func(rr *reliabilityReport) {
		if os.Getenv(KillCyclesEnv) != "" {
			rr.Soak = rep
		} else {
			rr.KillLoop = rep
		}
	})
}

// summarizeChurn totals the churn by kind of action.
func summarizeChurn(c map[string]int) string {
	tot := map[string]int{}
	for k, n := range c {
		f := strings.Fields(k)
		tot[f[len(f)-1]] += n
	}
	return fmt.Sprintf("dora %d, renew %d, release %d", tot["dora"], tot["renew"], tot["release"])
}
