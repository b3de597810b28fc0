package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ispmux/ispmux/internal/shellquote"
	"github.com/ispmux/ispmux/lab"
)

// Benchmark traffic: 60-byte UDP frames to an address in 198.18.0.0/15
// (RFC 2544's benchmarking range), which every ISP router drops on arrival.
const (
	benchDstIP  = "198.18.0.1"
	benchDstNet = "198.18.0.0/15"
	frameBytes  = 64 // on the wire with FCS; 60 written by the generator
	genCPU      = "0"
	fwdCPU      = "1"
	fwdCPUMask  = "2" // fwdCPU as an RPS mask
)

// Case names of bench forward, in their default order.
const (
	CaseISPmux      = "ispmux"
	CaseISPmuxXDP   = "ispmux-xdp"   // ispmux with [datapath] fastpath = "xdp"
	CaseKernel      = "kernel"       // nftables map + fwmark rules + RPS
	CaseKernelRules = "kernel-rules" // one ip rule per subscriber + RPS
	CaseBare        = "bare"
	CaseCalibration = "calibration" // the generator into a sink
)

var allCases = []string{CaseISPmux, CaseISPmuxXDP, CaseKernel, CaseKernelRules, CaseBare}

// forwardOptions are the flags of `bench forward`.
type forwardOptions struct {
	sources     []int
	rates       []float64
	cases       []string
	runs        int
	duration    time.Duration
	warmup      time.Duration
	ndr         bool
	ndrLoss     float64
	ndrDuration time.Duration
	ndrSteps    int
	rulesMax    int
	tick        time.Duration
	bindings    string        // auto, static or store: how ispmux holds the sources
	readyMax    time.Duration // longest wait for ispmux to be ready
	quietMax    float64       // busy CPU-seconds per second above which the machine is not quiet
	quietWait   time.Duration // how long a trial waits for a quiet machine
	retries     int           // attempts beyond the first for a trial other processes disturbed
	napiThread  bool          // case ispmux-xdp: the access ports' NAPI (and the XDP program) in a thread on CPU fwdCPU
	kernelRPS   bool          // cases kernel and kernel-rules: RPS moves forwarding to CPU fwdCPU
	merge       string        // an earlier forward.json whose other sweep points join this result
	asJSON      bool
	id          string
	out         string
	keep        bool
	exe         string // the ispmux binary run for the generator and cases ispmux and bare
}

func parseForward(args []string, stderr io.Writer) (*forwardOptions, error) {
	fs := flag.NewFlagSet("bench forward", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &forwardOptions{}
	var sources, rates, cases string
	fs.StringVar(&sources, "sources", "256,64K,1M", "the sweep: distinct subscriber sources per point (K = 1024, M = 1048576; at most 1M)")
	fs.StringVar(&rates, "rates", "100k,200k,300k", "fixed offered rates in packets per second (k = 1000)")
	fs.StringVar(&cases, "cases", strings.Join(allCases, ","), "systems under test")
	fs.IntVar(&o.runs, "runs", 5, "interleaved runs per sweep point: every case once per run, medians with min and max")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measurement window per fixed-rate trial")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "generator warm-up before each window")
	fs.BoolVar(&o.ndr, "ndr", true, "search each case's no-drop rate")
	fs.Float64Var(&o.ndrLoss, "ndr-loss", 0.1, "highest loss in percent the no-drop rate allows")
	fs.DurationVar(&o.ndrDuration, "ndr-duration", 2*time.Second, "window per no-drop-rate trial")
	fs.IntVar(&o.ndrSteps, "ndr-steps", 5, "most bisection trials per no-drop-rate search")
	fs.IntVar(&o.rulesMax, "rules-max", 4096, "largest sweep point for the kernel-rules case (its rule list is linear)")
	fs.DurationVar(&o.readyMax, "ready-timeout", 10*time.Minute, "longest wait for ispmux to forward with a sweep point's bindings (at most 20 s + 1 ms per source); a start that fails skips ispmux for the point's other runs")
	fs.StringVar(&o.bindings, "bindings", "auto", "how ispmux holds the sources: static ([[subscriber]] entries), store (API devices with a DHCP binding each, restored at start) or auto (static up to 100,000, the supported maximum of a configuration file)")
	fs.Float64Var(&o.quietMax, "quiet-max", 0.15, "before each trial, wait until the machine is quiet: at most this many busy CPU-seconds per second")
	fs.DurationVar(&o.quietWait, "quiet-wait", 30*time.Second, "longest wait for a quiet machine before a trial (then it runs anyway, marked)")
	fs.IntVar(&o.retries, "retries", 2, "a trial during which other processes used more than --quiet-max CPU is run again up to this many times (the quietest attempt is kept)")
	fs.BoolVar(&o.napiThread, "xdp-napi-thread", false, "case ispmux-xdp: run the access ports' receive, and so the fast path, in threaded NAPI pinned to CPU "+fwdCPU+" (by default it runs in the softirq of the generator's CPU)")
	fs.BoolVar(&o.kernelRPS, "kernel-rps", true, "cases kernel and kernel-rules: RPS moves forwarding off the generator's CPU to CPU "+fwdCPU+" (=false: it runs in the generator's softirq, where XDP programs run)")
	fs.StringVar(&o.merge, "merge", "", "an earlier forward.json: its sweep points that this run does not measure join the result (a sweep measured point by point)")
	fs.BoolVar(&o.asJSON, "json", false, "print one JSON object instead of the table")
	fs.StringVar(&o.id, "id", "benchfw", "lab ID (namespace prefix)")
	fs.StringVar(&o.out, "out", "bench-out", "directory for forward.json, forward.md and forward.svg")
	fs.BoolVar(&o.keep, "keep", false, "leave the lab up afterwards, with ispmux's configuration and state")
	// Hidden: tests run a freshly built ispmux binary instead of themselves.
	fs.StringVar(&o.exe, "exe", "", "")
	fs.DurationVar(&o.tick, "tick", 100*time.Microsecond, "")
	setUsage(fs, stderr, "usage: ispmux bench forward [--sources 256,64K,1M] [--rates 100k,200k,300k] [--runs 5] [--duration 5s] [--cases ...] [--json] [--id benchfw] [--out DIR] [--keep]")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("bench forward: unexpected arguments %q", fs.Args())
	}
	var err error
	if o.sources, err = parseCounts(sources, 1024, 1<<20); err != nil {
		return nil, fmt.Errorf("bench forward: --sources: %w", err)
	}
	for _, n := range o.sources {
		if n < 1 || n > maxSources {
			return nil, fmt.Errorf("bench forward: --sources %d: want 1..%d", n, maxSources)
		}
	}
	counts, err := parseCounts(rates, 1000, 1000000)
	if err != nil {
		return nil, fmt.Errorf("bench forward: --rates: %w", err)
	}
	for _, c := range counts {
		if c < 1000 || c > 10_000_000 {
			return nil, fmt.Errorf("bench forward: --rates %d: want 1k..10M", c)
		}
		o.rates = append(o.rates, float64(c))
	}
	seen := map[string]bool{}
	for _, c := range strings.Split(cases, ",") {
		c = strings.TrimSpace(c)
		if !containsStr(allCases, c) || seen[c] {
			return nil, fmt.Errorf("bench forward: --cases: %q: want some of %s, once each", c, strings.Join(allCases, ","))
		}
		seen[c] = true
		o.cases = append(o.cases, c)
	}
	switch {
	case o.runs < 1 || o.runs > 50:
		return nil, fmt.Errorf("bench forward: --runs %d: want 1..50", o.runs)
	case o.duration < 500*time.Millisecond || o.duration > time.Hour:
		return nil, fmt.Errorf("bench forward: --duration %v: want 0.5s..1h", o.duration)
	case o.warmup < 0 || o.warmup > time.Minute:
		return nil, fmt.Errorf("bench forward: --warmup %v: want 0..1m", o.warmup)
	case o.ndrLoss < 0 || o.ndrLoss > 50:
		return nil, fmt.Errorf("bench forward: --ndr-loss %v: want 0..50 %%", o.ndrLoss)
	case o.ndrDuration < 500*time.Millisecond || o.ndrDuration > time.Minute:
		return nil, fmt.Errorf("bench forward: --ndr-duration %v: want 0.5s..1m", o.ndrDuration)
	case o.ndrSteps < 0 || o.ndrSteps > 20:
		return nil, fmt.Errorf("bench forward: --ndr-steps %d: want 0..20", o.ndrSteps)
	case o.tick <= 0 || o.tick > 100*time.Millisecond:
		return nil, fmt.Errorf("bench forward: --tick %v", o.tick)
	case o.readyMax < 20*time.Second || o.readyMax > 2*time.Hour:
		return nil, fmt.Errorf("bench forward: --ready-timeout %v: want 20s..2h", o.readyMax)
	case o.bindings != "auto" && o.bindings != BindingsStatic && o.bindings != BindingsStore:
		return nil, fmt.Errorf("bench forward: --bindings %q: want auto, static or store", o.bindings)
	case o.retries < 0 || o.retries > 10:
		return nil, fmt.Errorf("bench forward: --retries %d: want 0..10", o.retries)
	case o.quietMax <= 0 || o.quietWait < 0 || o.quietWait > time.Hour:
		return nil, fmt.Errorf("bench forward: --quiet-max %v / --quiet-wait %v", o.quietMax, o.quietWait)
	}
	return o, nil
}

// parseCounts parses "256,64K,1M": k/K multiply by kilo, m/M by mega.
func parseCounts(s string, kilo, mega int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		mul := 1
		switch {
		case strings.HasSuffix(f, "k"), strings.HasSuffix(f, "K"):
			mul, f = kilo, f[:len(f)-1]
		case strings.HasSuffix(f, "m"), strings.HasSuffix(f, "M"):
			mul, f = mega, f[:len(f)-1]
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 || v*float64(mul) > 1<<31 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		out = append(out, int(v*float64(mul)+0.5))
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func containsStr(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// forward runs `ispmux bench forward`.
func forward(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseForward(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	tmp, err := prepare("forward", "generator", []string{"ip", "taskset", "timeout", "nft"},
		"install the lab's packages: lab/deps.sh", &o.exe, &o.out, o.id)
	if err != nil {
		return err
	}
	p := newHeartbeat(stderr, 3*time.Second)
	defer p.close()
	r := newForwardResult(o, args)
	var prev *ForwardResult
	if o.merge != "" {
		js, err := os.ReadFile(o.merge)
		if err != nil {
			return fmt.Errorf("bench forward: --merge: %w", err)
		}
		prev = &ForwardResult{}
		if err := json.Unmarshal(js, prev); err != nil {
			return fmt.Errorf("bench forward: --merge %s: %w", o.merge, err)
		}
	}

	b := &fwdBench{o: o, p: p, r: r, tmp: tmp, bencher: &bencher{logf: p.logf}, stats: genStatsPath(tmp, o.id)}
	defer os.Remove(b.stats)
	defer func() { err = errors.Join(err, teardown(ctx, "forward", o.id, tmp, o.keep, b.t != nil, p.logf)) }()
	if err := b.labUp(ctx); err != nil {
		return err
	}
	defer b.closeCounters()
	if err := backgroundLoad(ctx, &r.Result, p.logf); err != nil {
		return err
	}
	r.LoadBefore = loadAvg()
	r.Generator = shellquote.Join(b.genArgv(o.sources[0], o.rates[0], o.duration))
	for _, n := range o.sources {
		if err := b.point(ctx, n); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("bench forward: interrupted: %w", ctx.Err())
			}
			return err
		}
	}
	r.LoadAfter = loadAvg()
	r.Finished = time.Now().UTC().Format(time.RFC3339)
	r.Sessions = []Session{{Command: r.Command, Sources: o.sources, Started: r.Started, Finished: r.Finished, LoadBefore: r.LoadBefore, LoadAfter: r.LoadAfter}}
	if prev != nil {
		if err := r.merge(prev); err != nil {
			return err
		}
	}
	r.finish()

	if err := writeOutputs(o.out, r); err != nil {
		return err
	}
	if err := emit(stdout, r, o.asJSON, o.out, "forward"); err != nil {
		return err
	}
	if len(r.Errors) > 0 {
		return fmt.Errorf("bench forward: %d trial(s) failed, first: %s (details in %s/forward.json)", len(r.Errors), r.Errors[0], o.out)
	}
	return nil
}

// labUp builds the lab (again, after someone removed it): the ISP
// routers' sink for the benchmark's traffic, the netlink handles in their
// namespaces.
func (b *fwdBench) labUp(ctx context.Context) error {
	b.closeCounters()
	b.p.set("lab %s up", b.o.id)
	t, err := lab.Up(ctx, lab.Options{ID: b.o.id, Generator: true})
	if err != nil {
		return fmt.Errorf("bench forward: %w", err)
	}
	b.t, b.bencher.t = t, t
	// The ISP routers drop the benchmark's traffic on arrival (netdev
	// ingress, before IP), the same for every case; the blackhole route
	// stays as a second net.
	for _, isp := range t.ISPs {
		if _, err := t.Run(ctx, isp.NS, "ip", "route", "add", "blackhole", benchDstNet); err != nil {
			return fmt.Errorf("bench forward: %w", err)
		}
		if err := lab.NetdevDrop(ctx, isp.NS, isp.RouterIf, benchDstNet, true); err != nil {
			return fmt.Errorf("bench forward: %w", err)
		}
	}
	return b.openCounters()
}

// errLabGone: the lab's namespaces disappeared while the benchmark ran.
var errLabGone = errors.New("the lab's namespaces are gone (removed by someone else while the benchmark ran)")

// labGone wraps err with errLabGone when the appliance's namespace no
// longer exists.
func (b *fwdBench) labGone(err error) error {
	if err != nil && !exists("/var/run/netns/"+b.t.Appliance.NS) {
		return fmt.Errorf("%w: %v", errLabGone, err)
	}
	return err
}

// dropRun forgets what run of sweep point n measured (it is measured again).
func (b *fwdBench) dropRun(n, run int) {
	r := b.r
	other := func(sources, r int) bool { return sources != n || r != run }
	r.Trials = filtered(r.Trials, func(t Trial) bool { return other(t.Sources, t.Run) })
	r.NDRRuns = filtered(r.NDRRuns, func(x NDRRun) bool { return other(x.Sources, x.Run) })
	r.Diagnostics = filtered(r.Diagnostics, func(x Diagnostic) bool { return other(x.Sources, x.Run) })
	tag := fmt.Sprintf(", %s sources, run %d:", sizeLabel(n), run)
	r.Errors = filtered(r.Errors, func(e string) bool { return !strings.Contains(e, tag) })
}

// filtered is the items of s that keep accepts, in order: nil when it
// accepts none (a result's JSON then has null, as it had before).
func filtered[T any](s []T, keep func(T) bool) []T {
	var out []T
	for _, x := range s {
		if keep(x) {
			out = append(out, x)
		}
	}
	return out
}

// genStatsPath is where the generator keeps its counters: tmpfs when there
// is one (the file is written at every burst).
func genStatsPath(tmp, id string) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return filepath.Join("/dev/shm", "ispmux-bench-"+id+"-"+strconv.Itoa(os.Getpid())+".stats")
	}
	return filepath.Join(tmp, "gen.stats")
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// backgroundLoad measures for a second how busy the CPUs are before any
// case runs and warns when the machine is not idle: whatever else runs is
// included in the whole-machine CPU figures and competes with the cases.
func backgroundLoad(ctx context.Context, r *Result, logf func(string, ...any)) error {
	a, err := readProcStat()
	if err != nil {
		return err
	}
	if err := sleep(ctx, time.Second); err != nil {
		return err
	}
	b, err := readProcStat()
	if err != nil {
		return err
	}
	r.BackgroundCPUPct = busyPct(a, b)
	for i, p := range r.BackgroundCPUPct {
		if p > 5 {
			msg := fmt.Sprintf("the machine was not idle before the run (CPU %d %.0f %% busy): other load competes with the cases and is counted in the whole-machine CPU figures", i, p)
			logf("warning: %s", msg)
			r.Notes = append(r.Notes, "Warning: "+msg+".")
			break
		}
	}
	return nil
}

// writeOutputs writes forward.json, forward.md and forward.svg into dir.
func writeOutputs(dir string, r *ForwardResult) error {
	return writeFiles(dir, "forward", r, r.chart)
}
