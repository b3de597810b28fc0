package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/internal/shellquote"
	"github.com/ispmux/ispmux/lab"
)

// The systems under test of bench dhcp, started and run case by case:
// ispmux or dhcrelay in front of the lab's Kea, the fixed-rate steps,
// the capacity search and the outage recovery case.

// dhcpBencher runs the cases of one bench dhcp in one lab.
type dhcpBencher struct {
	o    *dhcpOptions
	t    *lab.Topology
	b    *bencher // waitReady, detachLeftovers
	logf func(string, ...any)
	tmp  string
	kea  int // Kea's pid
	seq  int // state directories made
	// keaDir holds Kea's configuration copy, lease file and log, on a
	// tmpfs (restartKea).
	keaDir string
}

// genRun is one generator run's parameters.
type genRun struct {
	clients  int
	rate     float64
	duration time.Duration
	drain    time.Duration // 0: the whole retransmission schedule
	failFast float64       // percent, 0 off
	persist  bool          // the outage case
	maxTime  time.Duration // with persist
	legs     bool          // record where the time goes (DHCPLegs)
}

// genArgv is the client generator's command, identical for ispmux and
// relay: pinned to CPU 0 in the generator namespace, bounded by timeout(1).
func (d *dhcpBencher) genArgv(g genRun) []string {
	limit := g.duration + scheduleLen(d.o.timeout, d.o.retries) + 30*time.Second
	if g.drain > 0 {
		limit = g.duration + g.drain + 30*time.Second
	}
	if g.persist {
		limit = g.maxTime + 30*time.Second
	}
	gen := d.t.Generator
	argv := []string{"timeout", "-s", "INT", "-k", "5", strconv.Itoa(int(limit.Seconds())),
		"taskset", "-c", genCPU, "ip", "netns", "exec", gen.NS, d.o.exe, "bench", "dhcp-client-gen",
		"--if", gen.If, "--clients", strconv.Itoa(g.clients), "--rate", strconv.FormatFloat(g.rate, 'f', -1, 64),
		"--timeout", d.o.timeout.String(), "--retries", strconv.Itoa(d.o.retries), "--progress", "4s"}
	if g.persist {
		argv = append(argv, "--persist", "--until", "0.999", "--max-time", g.maxTime.String())
	} else {
		argv = append(argv, "--duration", g.duration.String())
	}
	if g.drain > 0 {
		argv = append(argv, "--drain", g.drain.String())
	}
	if g.failFast > 0 {
		argv = append(argv, "--fail-fast", strconv.FormatFloat(g.failFast, 'f', -1, 64))
	}
	return argv
}

// ispmuxArgv is case ispmux's command: pinned to CPU 1.
func (d *dhcpBencher) ispmuxArgv(cfg string) []string {
	return []string{"taskset", "-c", fwdCPU, "ip", "netns", "exec", d.t.Appliance.NS, d.o.ispmuxExe, "run", "-c", cfg}
}

// sutArgv is system name's ispmux command.
func (d *dhcpBencher) sutArgv(name, cfg string) []string {
	argv := d.ispmuxArgv(cfg)
	if name == CaseDHCPISPmuxBase {
		argv[7] = d.o.baseExe
	}
	return argv
}

// relayArgv is case relay's command: ISC dhcrelay with the Option 82
// sub-option it can send in IPv4 (-a: circuit-id, the interface's name;
// it has no remote-id or subscriber-id for IPv4, and its link selection,
// -U, segfaults on the first relayed message with Debian 12's
// isc-dhcp-relay 4.4.3), pinned to CPU 1.
func (d *dhcpBencher) relayArgv() []string {
	up := d.t.Appliance.Uplinks[0].Name
	return []string{"taskset", "-c", fwdCPU, "ip", "netns", "exec", d.t.Appliance.NS, "dhcrelay", "-4", "-d", "-a",
		"-pf", filepath.Join(d.tmp, "dhcrelay.pid"), "-id", d.t.Generator.Access, "-iu", up, d.t.ISPs[0].RouterAddr}
}

// perfdhcpArgv is case kea_direct's command.
func (d *dhcpBencher) perfdhcpArgv(rate float64) []string {
	limit := d.o.duration + 30*time.Second
	return []string{"timeout", "-s", "INT", "-k", "5", strconv.Itoa(int(limit.Seconds())),
		"taskset", "-c", genCPU, "ip", "netns", "exec", d.t.Appliance.NS, "perfdhcp", "-4",
		"-l", lab.RelayAddr, "-r", strconv.FormatFloat(rate, 'f', 0, 64), "-R", strconv.Itoa(d.o.clients),
		"-p", strconv.Itoa(int(d.o.duration / time.Second)), d.t.ISPs[0].RouterAddr}
}

// sut is a running system under test.
type dhcpSUT struct {
	name  string
	p     *child
	state string // ispmux's state directory
	off   func() error
}

// startSUT restarts Kea (empty lease file) and starts system name:
// ispmux with clients subscribers and the [dhcp] table limits, or
// dhcrelay.
func (d *dhcpBencher) startSUT(ctx context.Context, name string, clients int, limits string) (_ *dhcpSUT, err error) {
	if err := d.b.detachLeftovers(ctx); err != nil {
		return nil, err
	}
	if err := d.restartKea(ctx); err != nil {
		return nil, err
	}
	if name == CaseDHCPRelay {
		if err := d.relayOn(ctx, true); err != nil {
			return nil, err
		}
		p, err := startChild("dhcrelay", d.relayArgv(), nil, syscall.SIGTERM)
		if err != nil {
			_ = d.relayOff(ctx)
			return nil, err
		}
		s := &dhcpSUT{name: name, p: p, off: func() error { return d.relayOff(ctx) }}
		defer func() {
			if err != nil {
				_ = s.stop()
			}
		}()
		if err := d.waitUDP67(ctx, d.t.Appliance.NS, "dhcrelay"); err != nil {
			return nil, fmt.Errorf("%w%s", err, p.tail())
		}
		if err := sleep(ctx, 300*time.Millisecond); err != nil { // its LPF sockets open after the UDP one
			return nil, err
		}
		if p.exited() {
			return nil, fmt.Errorf("dhcrelay exited: %v%s", p.err, p.tail())
		}
		return s, nil
	}
	d.seq++
	dir := filepath.Join(d.tmp, fmt.Sprintf("ispmux-%d", d.seq))
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "dhcp-ispmux.toml")
	if err := os.WriteFile(cfg, dhcpConfigTOML(d.t, state, clients, limits), 0o644); err != nil {
		return nil, err
	}
	p, err := startChild("ispmux", d.sutArgv(name, cfg), nil, syscall.SIGTERM)
	if err != nil {
		return nil, err
	}
	s := &dhcpSUT{name: name, p: p, state: state}
	if err := d.b.waitReady(ctx, p, filepath.Join(state, appliance.SocketName)); err != nil {
		_ = s.stop()
		return nil, err
	}
	return s, nil
}

// stop stops the system: ispmux waits for its commits in flight, closes
// its store and detaches XDP.
func (s *dhcpSUT) stop() error {
	err := s.p.stop(syscall.SIGTERM, 15*time.Second)
	if s.off != nil {
		err = errors.Join(err, s.off())
	}
	return err
}

// runSystem runs one system's cases of one run: the fixed rates and the
// search against one instance, then the outage against a fresh one.
func (d *dhcpBencher) runSystem(ctx context.Context, name string, run int, r *DHCPResult) ([]DHCPCase, error) {
	var cases []DHCPCase
	if len(d.o.rates) > 0 || d.o.search {
		s, err := d.startSUT(ctx, name, d.o.clients, dhcpLimits(d.o.clients, d.o.maxRate(), d.o.retries))
		if err != nil {
			return nil, err
		}
		acked := map[string]bool{}
		for _, rate := range d.o.rates {
			c, res := d.step(ctx, s, run, PhaseRate, genRun{clients: d.o.clients, rate: rate, duration: d.o.duration, drain: fixedDrain(d.o.timeout), legs: d.o.legs})
			cases = append(cases, c)
			d.settle(ctx)
			markAcked(acked, res)
			if ctx.Err() != nil {
				_ = s.stop()
				return cases, ctx.Err()
			}
		}
		if d.o.search {
			steps, res := d.search(ctx, s, run)
			cases = append(cases, steps...)
			for _, g := range res {
				markAcked(acked, g)
			}
		}
		if isISPmux(name) {
			d.diagnose(ctx, s, cases)
		}
		if err := s.stop(); err != nil {
			return cases, err
		}
		if name == CaseDHCPISPmux { // the build under test only
			n, err := durableBindings(filepath.Join(s.state, appliance.StoreName), d.t.Generator.Access)
			if err != nil {
				return cases, fmt.Errorf("reading ispmux's store after the run: %w", err)
			}
			r.Durable = append(r.Durable, DurableCheck{Run: run, ClientsACKed: len(acked), Durable: n})
			d.logf("run %d: ispmux: %d clients ACKed, %d bindings durable in its store", run, len(acked), n)
		}
	}
	if d.o.outage > 0 {
		cases = append(cases, d.runOutage(ctx, name, run, false))
	}
	return cases, ctx.Err()
}

// fixedDrain bounds the wait for the last exchanges of a fixed rate: two
// retransmissions (4 + 8 s ± 1 with the default timeout); an exchange
// still unfinished then counts as failed (unfinished).
func fixedDrain(timeout time.Duration) time.Duration {
	return scheduleLen(timeout, 1) + time.Second
}

// settle waits (at most 10 s) until Kea and the system under test are
// idle: after an overloaded step Kea still works through the stale
// requests in its socket buffer, which would count against the next step.
func (d *dhcpBencher) settle(ctx context.Context) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, a, err := readPIDStat(d.kea)
		if err != nil {
			return
		}
		if sleep(ctx, 500*time.Millisecond) != nil {
			return
		}
		_, b, err := readPIDStat(d.kea)
		if err != nil || sub(b, a) <= 2 { // ≤ 4 % of a CPU
			return
		}
	}
}

// markAcked records the clients that got an ACK in res.
func markAcked(acked map[string]bool, res *GenResult) {
	if res == nil {
		return
	}
	for _, c := range res.Results {
		if c.BoundUs > 0 {
			acked[c.MAC] = true
		}
	}
}

// diagnose attaches ispmux's status (DHCP counters, leases) to its last
// case.
func (d *dhcpBencher) diagnose(ctx context.Context, s *dhcpSUT, cases []DHCPCase) {
	if len(cases) == 0 {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	st, err := ctlsock.FetchStatus(sctx, filepath.Join(s.state, appliance.SocketName))
	cancel()
	if err != nil {
		d.logf("ispmux status: %v", err)
		return
	}
	c := &cases[len(cases)-1]
	if c.Diagnostics == nil {
		c.Diagnostics = map[string]any{}
	}
	c.Diagnostics["dhcp"], c.Diagnostics["leases"] = st.DHCP, st.Leases
}

// step runs the generator once against s and fills a case from it.
func (d *dhcpBencher) step(ctx context.Context, s *dhcpSUT, run int, phase string, g genRun) (DHCPCase, *GenResult) {
	c := DHCPCase{Name: s.name, Phase: phase, Run: run, OfferedRate: g.rate, Command: shellquote.Join(d.genArgv(g))}
	if s.p.exited() {
		c.Error = fmt.Sprintf("%s exited: %v%s", s.name, s.p.err, s.p.tail())
		return c, nil
	}
	res, err := d.runGen(ctx, &c, s.p, g)
	if err != nil {
		c.Error = err.Error()
		d.logf("%s %s %g/s: %v", s.name, phase, g.rate, err)
		return c, nil
	}
	if phase != PhaseOutage {
		d.logf("run %d %s %s %g/s: %d/%d completed, loss %.2f %%, OFFER p50/p99 %s/%s ms, ACK p50/p99 %s/%s ms, CPU %s µs/DORA; busiest: %s",
			run, s.name, phase, g.rate, c.Completed, c.Exchanges, c.LossPct, fmtOpt(c.OfferP50Ms, "%.2f"), fmtOpt(c.OfferP99Ms, "%.2f"),
			fmtOpt(c.AckP50Ms, "%.2f"), fmtOpt(c.AckP99Ms, "%.2f"), fmtOpt(c.CPUUsPerDORA, "%.0f"), c.Saturated)
	}
	return c, res
}

// search finds s's capacity: the highest rate with at most failLimitPct
// failed exchanges (skipped starts included), by searchRate.
func (d *dhcpBencher) search(ctx context.Context, s *dhcpSUT, run int) ([]DHCPCase, []*GenResult) {
	var steps []DHCPCase
	var results []*GenResult
	// An exchange still unfinished a first retransmission wait after the
	// window counts as failed; a step stops as soon as its failures
	// exceed the criterion.
	drain := d.o.timeout + d.o.timeout/4 + time.Second
	_, _, _ = searchRate(d.o.searchMin, d.o.searchMax, searchPrecision, func(rate float64) (bool, error) {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		c, res := d.step(ctx, s, run, PhaseSearch, genRun{clients: d.o.clients, rate: rate, duration: d.o.searchDuration,
			drain: drain, failFast: failLimitPct})
		steps = append(steps, c)
		results = append(results, res)
		if c.Error != "" {
			return false, errors.New(c.Error)
		}
		d.settle(ctx)
		return c.LossPct <= failLimitPct, nil
	})
	return steps, results
}

// runOutage starts a fresh system with the outage's subscribers and runs
// the outage case: every client starts DORA within one second and keeps
// trying until bound.
func (d *dhcpBencher) runOutage(ctx context.Context, name string, run int, defaults bool) DHCPCase {
	n := d.o.outage
	limits := dhcpLimits(n, float64(n), d.o.retries)
	label := "the benchmark's [dhcp] limits"
	if defaults {
		limits, label = "", "ispmux's default [dhcp] limits"
	}
	g := genRun{clients: n, rate: float64(n), persist: true, maxTime: d.o.outageMax}
	c := DHCPCase{Name: name, Phase: PhaseOutage, Run: run, OfferedRate: float64(n), Subscribers: n, Command: shellquote.Join(d.genArgv(g))}
	if isISPmux(name) {
		c.Limits = limits
		if defaults {
			c.Limits = "defaults"
			c.Name = CaseDHCPISPmux + "_defaults"
		}
		c.Description = fmt.Sprintf("ispmux, %d subscribers, %s", n, label)
	} else {
		c.Description = fmt.Sprintf("dhcrelay, %d clients (dhcrelay has no limits)", n)
	}
	s, err := d.startSUT(ctx, name, n, limits)
	if err != nil {
		c.Error = err.Error()
		return c
	}
	defer func() {
		if err := s.stop(); err != nil && c.Error == "" {
			c.Error = err.Error()
		}
	}()
	res, err := d.runGen(ctx, &c, s.p, g)
	if err != nil {
		c.Error = err.Error()
		return c
	}
	fillOutage(&c, res, 0.999)
	d.logf("run %d %s outage: %d/%d bound; 50 %%, 90 %%, 99.9 %% bound after %s, %s, %s s (stopped: %s)", run, c.Name, c.Bound, n,
		fmtOpt(c.Bound50S, "%.2f"), fmtOpt(c.Bound90S, "%.2f"), fmtOpt(c.BoundS, "%.2f"), res.Stopped)
	return c
}

// fillOutage computes the outage figures: Bound, and BoundS the time from
// the first start until frac of the clients were bound (nil if they never
// were).
func fillOutage(c *DHCPCase, g *GenResult, frac float64) {
	var t []int64
	for _, cl := range g.Results {
		if cl.BoundUs > 0 {
			t = append(t, cl.BoundUs)
		}
	}
	c.Bound = len(t)
	sort.Slice(t, func(i, j int) bool { return t[i] < t[j] })
	at := func(f float64) *float64 {
		need := int(math.Ceil(f * float64(g.Clients)))
		if need < 1 || len(t) < need {
			return nil
		}
		return ptr(round(float64(t[need-1]-g.FirstStartUs)/1e6, 3))
	}
	c.BoundS, c.Bound50S, c.Bound90S = at(frac), at(0.5), at(0.9)
}
