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
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/lab"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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
	CaseKernel      = "kernel"       // nftables map + fwmark rules + RPS
	CaseKernelRules = "kernel-rules" // one ip rule per subscriber + RPS
	CaseBare        = "bare"
	CaseCalibration = "calibration" // the generator into a sink
)

var allCases = []string{CaseISPmux, CaseKernel, CaseKernelRules, CaseBare}

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
	fs.StringVar(&o.merge, "merge", "", "an earlier forward.json: its sweep points that this run does not measure join the result (a sweep measured point by point)")
	fs.BoolVar(&o.asJSON, "json", false, "print one JSON object instead of the table")
	fs.StringVar(&o.id, "id", "benchfw", "lab ID (namespace prefix)")
	fs.StringVar(&o.out, "out", "bench-out", "directory for forward.json, forward.md and forward.svg")
	fs.BoolVar(&o.keep, "keep", false, "leave the lab up afterwards")
	// Hidden: tests run a freshly built ispmux binary instead of themselves.
	fs.StringVar(&o.exe, "exe", "", "")
	fs.DurationVar(&o.tick, "tick", 100*time.Microsecond, "")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ispmux bench forward [--sources 256,64K,1M] [--rates 100k,200k,300k] [--runs 5] [--duration 5s] [--cases ...] [--json] [--id benchfw] [--out DIR] [--keep]")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Usage != "" {
				fmt.Fprintf(stderr, "  --%s (default %q)\n    \t%s\n", f.Name, f.DefValue, f.Usage)
			}
		})
	}
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
	r.Generator = shellQuote(b.genArgv(o.sources[0], o.rates[0], o.duration))
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
	var trials []Trial
	for _, t := range r.Trials {
		if t.Sources != n || t.Run != run {
			trials = append(trials, t)
		}
	}
	r.Trials = trials
	var ndr []NDRRun
	for _, x := range r.NDRRuns {
		if x.Sources != n || x.Run != run {
			ndr = append(ndr, x)
		}
	}
	r.NDRRuns = ndr
	var diags []Diagnostic
	for _, x := range r.Diagnostics {
		if x.Sources != n || x.Run != run {
			diags = append(diags, x)
		}
	}
	r.Diagnostics = diags
	var errs []string
	tag := fmt.Sprintf(", %s sources, run %d:", sizeLabel(n), run)
	for _, e := range r.Errors {
		if !strings.Contains(e, tag) {
			errs = append(errs, e)
		}
	}
	r.Errors = errs
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

// fwdBench runs the sweep of one bench forward.
type fwdBench struct {
	o     *forwardOptions
	t     *lab.Topology
	p     *heartbeat
	r     *ForwardResult
	tmp   string
	stats string // the generator's counters file
	*bencher
	// isp reads the ISP routers' eth0 counters over netlink sockets
	// opened in their namespaces: a reading takes microseconds, so the
	// forwarded count is taken at the same instant as the generator's.
	isp []ispCounter
	// noStart names the cases that could not start at a sweep point
	// (case + sources): their other runs there are skipped.
	noStart map[string]string
}

type ispCounter struct {
	h   *netlink.Handle
	if_ string
}

// openCounters opens a netlink handle in every ISP router's namespace.
func (b *fwdBench) openCounters() error {
	for _, isp := range b.t.ISPs {
		ns, err := netns.GetFromName(isp.NS)
		if err != nil {
			return fmt.Errorf("bench forward: namespace %s: %w", isp.NS, err)
		}
		h, err := netlink.NewHandleAt(ns)
		ns.Close()
		if err != nil {
			return fmt.Errorf("bench forward: netlink in %s: %w", isp.NS, err)
		}
		b.isp = append(b.isp, ispCounter{h: h, if_: isp.RouterIf})
	}
	return nil
}

func (b *fwdBench) closeCounters() {
	for _, c := range b.isp {
		c.h.Close()
	}
	b.isp = nil
}

// point measures sweep point n: its set-up, then o.runs interleaved runs
// of the calibration and every case.
func (b *fwdBench) point(ctx context.Context, n int) (err error) {
	t, o := b.t, b.o
	stateDir := filepath.Join(b.tmp, "state-"+strconv.Itoa(n))
	cfg := filepath.Join(b.tmp, "ispmux-"+strconv.Itoa(n)+".toml")
	mode := bindingsFor(o.bindings, n)
	pi := PointInfo{Sources: n, Bindings: mode}
	defer func() { b.r.Points = append(b.r.Points, pi) }()
	if containsStr(o.cases, CaseISPmux) {
		if err := os.WriteFile(cfg, forwardConfig(t, stateDir, n, mode == BindingsStatic), 0o644); err != nil {
			return err
		}
		defer os.Remove(cfg)
		if mode == BindingsStore {
			if err := os.MkdirAll(stateDir, 0o750); err != nil {
				return err
			}
			b.p.set("%s sources: seeding ispmux's store", sizeLabel(n))
			start := time.Now()
			var isps []string
			for _, isp := range t.ISPs {
				isps = append(isps, isp.Name)
			}
			last := map[string]int{}
			if err := seedForwardStore(ctx, filepath.Join(stateDir, appliance.StoreName), n, isps, t.Generator.Access, func(what string, done int) {
				if tenth := done * 10 / n; tenth > last[what] || done == n {
					last[what] = tenth
					b.p.logf("%s sources: store seeded with %d of %d %s", sizeLabel(n), done, n, what)
				}
			}); err != nil {
				return fmt.Errorf("bench forward: seeding the store: %w", err)
			}
			pi.SeedS = round(time.Since(start).Seconds(), 1)
		}
	}
	loadMap := func() error {
		if !containsStr(o.cases, CaseKernel) {
			return nil
		}
		b.p.set("%s sources: loading the nftables map", sizeLabel(n))
		start := time.Now()
		if err := b.t.NFTLoadMap(ctx, n, nftSource(len(b.t.ISPs)), func(done int) {
			b.p.logf("%s sources: nftables map %d of %d elements", sizeLabel(n), done, n)
		}); err != nil {
			return fmt.Errorf("bench forward: %w", err)
		}
		pi.NFTLoadS = round(time.Since(start).Seconds(), 1)
		b.p.logf("%s sources: nftables map loaded in %.1fs", sizeLabel(n), pi.NFTLoadS)
		return nil
	}
	if err := loadMap(); err != nil {
		return err
	}
	if containsStr(o.cases, CaseKernel) {
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if exists("/var/run/netns/" + b.t.Appliance.NS) {
				err = errors.Join(err, b.t.NFTDelete(cctx))
			}
		}()
	}
	rebuilt := 0
	for run := 1; run <= o.runs; run++ {
		err := b.run(ctx, n, run, cfg, stateDir, &pi)
		if errors.Is(err, errLabGone) && rebuilt < 3 && ctx.Err() == nil {
			rebuilt++
			b.p.logf("warning: %v; rebuilding the lab and measuring %s sources, run %d again", err, sizeLabel(n), run)
			b.r.Notes = append(b.r.Notes, fmt.Sprintf("Warning: the lab's namespaces were removed by someone else during run %d at %s sources; the lab was rebuilt and the run measured again.", run, sizeLabel(n)))
			b.dropRun(n, run)
			b.noStart = nil
			if err := b.labUp(ctx); err != nil {
				return err
			}
			if err := loadMap(); err != nil {
				return err
			}
			run--
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// run is one interleaved run of sweep point n: the calibration, then
// every case, starting with another case each run.
func (b *fwdBench) run(ctx context.Context, n, run int, cfg, stateDir string, pi *PointInfo) error {
	o := b.o
	if err := b.calibrate(ctx, n, run); err != nil {
		return b.labGone(err)
	}
	for i := range o.cases {
		c := o.cases[(i+run-1)%len(o.cases)]
		if c == CaseKernelRules && n > o.rulesMax {
			continue
		}
		if why, ok := b.noStart[c+"/"+strconv.Itoa(n)]; ok {
			b.p.logf("%s, %s sources, run %d: skipped (it did not start in run 1: %s)", c, sizeLabel(n), run, why)
			continue
		}
		if err := b.runCase(ctx, c, n, run, cfg, stateDir, pi); err != nil {
			if ctx.Err() != nil {
				return err
			}
			if err := b.labGone(err); errors.Is(err, errLabGone) {
				return err
			}
			msg := fmt.Sprintf("%s, %s sources, run %d: %v", c, sizeLabel(n), run, err)
			b.p.logf("case failed: %s", msg)
			b.r.Errors = append(b.r.Errors, msg)
		}
	}
	return nil
}

// nftSource is the benchmark's sources as the lab's nftables map wants them.
func nftSource(isps int) lab.NFTSource {
	return func(i int) ([6]byte, [4]byte, int) {
		mac, ip := forwardSource(i)
		return mac, ip, i % isps
	}
}

// forwardConfig is ispmux's configuration for sweep point n: the lab's
// (its own three subscribers included) with a MAC table that holds the n
// benchmark sources and, with static, the sources as static subscribers on
// the generator's access port (else they come from the store).
func forwardConfig(t *lab.Topology, stateDir string, n int, static bool) []byte {
	base := string(t.ConfigTOML(stateDir))
	table := fmt.Sprintf("mac_table_size = %d\n", max(1<<20, n+4096))
	// The lab's [datapath] table ends with completion_ring; the key joins it.
	base = strings.Replace(base, "completion_ring = ", table+"completion_ring = ", 1)
	if !static {
		return []byte(base)
	}
	var sb strings.Builder
	sb.Grow(len(base) + n*100)
	sb.WriteString(base)
	for k := range n {
		mac, ip := forwardSource(k)
		fmt.Fprintf(&sb, "\n[[subscriber]]\nmac = \"%02x:%02x:%02x:%02x:%02x:%02x\"\nisp = %q\nip = \"%d.%d.%d.%d\"\naccess = %q\n",
			mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], t.ISPs[k%len(t.ISPs)].Name, ip[0], ip[1], ip[2], ip[3], t.Generator.Access)
	}
	return []byte(sb.String())
}

// sizeLabel is n as in the tables: 256, 64K, 1M.
func sizeLabel(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "M"
	case n >= 1024 && n%1024 == 0:
		return strconv.Itoa(n>>10) + "K"
	}
	return strconv.Itoa(n)
}

// calibrate measures the generator alone at every fixed rate and flat
// out: the appliance's access port drops the frames at ingress, nothing
// forwards, no XDP program is attached.
func (b *fwdBench) calibrate(ctx context.Context, n, run int) (err error) {
	app, acc := b.t.Appliance.NS, b.t.Generator.Access
	if err := b.detachLeftovers(ctx); err != nil {
		return err
	}
	if err := b.t.KernelRouter(ctx, false); err != nil {
		return err
	}
	if err := lab.NetdevDrop(ctx, app, acc, benchDstNet, true); err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err = errors.Join(err, lab.NetdevDrop(cctx, app, acc, benchDstNet, false))
	}()
	for _, rate := range b.o.rates {
		if _, err := b.trial(ctx, CaseCalibration, n, run, rate, "fixed", b.o.duration, b.o.warmup, nil); err != nil {
			return fmt.Errorf("bench forward: calibration: %w", err)
		}
	}
	if _, err := b.trial(ctx, CaseCalibration, n, run, 0, "ceiling", b.o.ndrDuration, b.o.warmup/2, nil); err != nil {
		return fmt.Errorf("bench forward: calibration: %w", err)
	}
	return nil
}

// runCase brings case c up, runs its fixed-rate trials and its no-drop
// rate search, and brings it down.
func (b *fwdBench) runCase(ctx context.Context, c string, n, run int, cfg, stateDir string, pi *PointInfo) (err error) {
	start := time.Now()
	proc, down, err := b.up(ctx, c, n, cfg, stateDir)
	if err != nil {
		if b.noStart == nil {
			b.noStart = map[string]string{}
		}
		b.noStart[c+"/"+strconv.Itoa(n)] = err.Error()
		return err
	}
	if c == CaseISPmux {
		pi.ISPmuxReadyS = append(pi.ISPmuxReadyS, round(time.Since(start).Seconds(), 1))
	}
	defer func() {
		b.p.set("%s, %s sources: stopping", c, sizeLabel(n))
		err = errors.Join(err, down())
	}()
	var lo, hi float64
	for _, rate := range b.o.rates {
		tr, err := b.trial(ctx, c, n, run, rate, "fixed", b.o.duration, b.o.warmup, proc)
		if err != nil {
			return err
		}
		switch {
		case tr.LossPct > b.o.ndrLoss:
			if hi == 0 || rate < hi {
				hi = rate
			}
		case tr.OfferedPPS >= 0.97*rate:
			lo = max(lo, rate)
		}
	}
	if !b.o.ndr {
		return nil
	}
	trial := func(ctx context.Context, rate float64) (float64, float64, error) {
		tr, err := b.trial(ctx, c, n, run, rate, "ndr", b.o.ndrDuration, b.o.warmup/2, proc)
		if err != nil {
			return 0, 0, err
		}
		return tr.OfferedPPS, tr.LossPct, nil
	}
	res, err := searchNDR(ctx, trial, b.o.ndrLoss, lo, hi, 0.03, b.o.ndrSteps)
	if err != nil {
		return err
	}
	b.r.NDRRuns = append(b.r.NDRRuns, NDRRun{Case: c, Sources: n, Run: run, Result: res})
	b.p.logf("%s, %s sources, run %d: no-drop rate %s (generator ceiling %s)", c, sizeLabel(n), run, res, humanPPS(res.Ceiling))
	if proc != nil && c == CaseISPmux {
		b.ispmuxDiagnostics(ctx, c, n, run, stateDir)
	}
	return nil
}

// up starts case c: the forwarder process (nil for the kernel's cases) and
// how to stop it.
func (b *fwdBench) up(ctx context.Context, c string, n int, cfg, stateDir string) (*child, func() error, error) {
	t := b.t
	app := t.Appliance.NS
	if err := b.detachLeftovers(ctx); err != nil {
		return nil, nil, err
	}
	b.p.set("%s, %s sources: starting", c, sizeLabel(n))
	switch c {
	case CaseISPmux:
		argv := b.caseArgv(c, cfg)
		p, err := startChild("ispmux", argv, nil, syscall.SIGTERM)
		if err != nil {
			return nil, nil, err
		}
		stop := func() error {
			// SIGTERM: ispmux stops its workers and detaches XDP.
			return p.stop(syscall.SIGTERM, 60*time.Second)
		}
		start := time.Now()
		b.readyTimeout = min(b.o.readyMax, 20*time.Second+time.Duration(n)*time.Millisecond)
		b.maxRSS = memTotal() / 2
		if err := b.waitReady(ctx, p, filepath.Join(stateDir, appliance.SocketName)); err != nil {
			b.p.set("ispmux, %s sources: stopping after %v", sizeLabel(n), err)
			return nil, nil, errors.Join(err, stop())
		}
		b.p.logf("ispmux ready with %s bound sources after %.1fs", sizeLabel(n), time.Since(start).Seconds())
		return p, stop, nil
	case CaseBare:
		ready := newLineWaiter("ready", nil)
		p, err := startChild("bare-forwarder", b.caseArgv(c, ""), ready, syscall.SIGTERM)
		if err != nil {
			return nil, nil, err
		}
		stop := func() error {
			err := p.stop(syscall.SIGTERM, 15*time.Second)
			if s := strings.TrimSpace(p.out.String()); s != "" {
				b.p.logf("%s", s)
			}
			return err
		}
		select {
		case <-ready.seen:
		case <-p.done:
			return nil, nil, fmt.Errorf("bare-forwarder exited before it was ready: %v%s", p.err, p.tail())
		case <-time.After(20 * time.Second):
			return nil, nil, errors.Join(fmt.Errorf("bare-forwarder not ready after 20s%s", p.tail()), stop())
		case <-ctx.Done():
			return nil, nil, errors.Join(ctx.Err(), stop())
		}
		return p, stop, nil
	case CaseKernel, CaseKernelRules:
		on := func(ctx context.Context, on bool) error {
			if c == CaseKernel {
				return t.NFTRouter(ctx, on)
			}
			return t.RuleRouter(ctx, on, n, nftSource(len(t.ISPs)))
		}
		stop := func() error {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			var errs []error
			for _, a := range t.Appliance.Access {
				errs = append(errs, lab.SetRPS(cctx, app, a.Name, "0"))
			}
			return errors.Join(append(errs, on(cctx, false))...)
		}
		if err := on(ctx, true); err != nil {
			return nil, nil, errors.Join(err, stop())
		}
		for _, a := range t.Appliance.Access {
			if err := lab.SetRPS(ctx, app, a.Name, fwdCPUMask); err != nil {
				return nil, nil, errors.Join(err, stop())
			}
		}
		// Resolve the ISP routers before the clock starts.
		for i, isp := range t.ISPs {
			_, _ = t.Run(ctx, app, "ping", "-c", "1", "-W", "1", "-I", t.Appliance.Uplinks[i].Name, isp.RouterAddr)
		}
		return nil, stop, nil
	}
	return nil, nil, fmt.Errorf("bench forward: unknown case %q", c)
}

// caseArgv is the command of case c (nil for the kernel's cases).
func (b *fwdBench) caseArgv(c, cfg string) []string {
	t := b.t
	app := t.Appliance.NS
	switch c {
	case CaseISPmux:
		return []string{"taskset", "-c", fwdCPU, "ip", "netns", "exec", app, b.o.exe, "run", "-c", cfg}
	case CaseBare:
		var in, out, macs []string
		for _, a := range t.Appliance.Access {
			in = append(in, a.Name)
		}
		for i, u := range t.Appliance.Uplinks {
			out = append(out, u.Name)
			macs = append(macs, t.ISPs[i].RouterMAC)
		}
		return []string{"taskset", "-c", fwdCPU, "ip", "netns", "exec", app, b.o.exe, "bench", "bare-forwarder",
			"--in", strings.Join(in, ","), "--out", strings.Join(out, ","), "--dst-mac", strings.Join(macs, ","), "--attach", "native"}
	}
	return nil
}

// genArgv is the generator's command, the same for every case: one
// process pinned to CPU 0, bounded by timeout(1) in case the benchmark
// dies without stopping it.
func (b *fwdBench) genArgv(n int, rate float64, d time.Duration) []string {
	limit := d + 30*time.Second
	g := b.t.Generator
	return []string{"timeout", "-s", "INT", "-k", "5", strconv.Itoa(int(limit.Seconds())),
		"taskset", "-c", genCPU, "ip", "netns", "exec", g.NS, b.o.exe, "bench", "forward-gen",
		"--dev", g.If, "--dst-mac", g.AccessMAC, "--dst-ip", benchDstIP, "--sources", strconv.Itoa(n),
		"--rate", strconv.FormatFloat(rate, 'f', 0, 64), "--duration", d.String(), "--tick", b.o.tick.String(), "--stats", b.stats}
}

// fwdSample is one reading of every counter a trial uses.
type fwdSample struct {
	at        time.Time // when /proc/stat was read
	gen       genCounters
	forwarded uint64 // sum of rx_packets of every ISP router's eth0
	cpu       ProcStat
	hasProc   bool
	procTicks uint64
}

func (b *fwdBench) read(proc *child) (fwdSample, error) {
	var s fwdSample
	var err error
	if proc != nil {
		if proc.exited() {
			return s, fmt.Errorf("%s exited during the measurement%s", proc.name, proc.tail())
		}
		if _, s.procTicks, err = readPIDStat(proc.pid()); err != nil {
			return s, fmt.Errorf("%s: %w", proc.name, err)
		}
		s.hasProc = true
	}
	// The three counters a trial divides by one another, back to back.
	s.at = time.Now()
	if s.cpu, err = readProcStat(); err != nil {
		return s, err
	}
	if s.gen, _, err = readGenStats(b.stats); err != nil {
		return s, err
	}
	for _, c := range b.isp {
		l, err := c.h.LinkByName(c.if_)
		if err != nil {
			return s, fmt.Errorf("ISP router %s: %w", c.if_, err)
		}
		if st := l.Attrs().Statistics; st != nil {
			s.forwarded += st.RxPackets
		}
	}
	return s, nil
}

// trial offers rate (0: flat out) from n sources for a window of d after
// warm-up w and records the outcome.
func (b *fwdBench) trial(ctx context.Context, c string, n, run int, rate float64, kind string, d, w time.Duration, proc *child) (Trial, error) {
	rl := "flat out"
	if rate > 0 {
		rl = humanPPS(rate) + " pps"
	}
	what := fmt.Sprintf("%s, %s sources, run %d/%d: %s trial at %s", c, sizeLabel(n), run, b.o.runs, kind, rl)
	var tr Trial
	for attempt := 1; ; attempt++ {
		bg, quiet, err := b.waitQuiet(ctx, what)
		if err != nil {
			return Trial{}, err
		}
		b.p.set("%s", what)
		t, err := b.trialOnce(ctx, c, n, run, rate, kind, d, w, proc)
		if err != nil {
			return Trial{}, err
		}
		t.BackgroundBusy, t.Attempts = round(bg, 3), attempt
		t.Noisy = !quiet || t.OthersCPU > b.o.quietMax
		if attempt == 1 || t.OthersCPU < tr.OthersCPU {
			tr = t
		}
		if !t.Noisy || attempt > b.o.retries {
			break
		}
		b.p.logf("%s: other processes used %.2f CPU during the window; again (attempt %d of %d)", what, t.OthersCPU, attempt+1, b.o.retries+1)
	}
	if c != CaseCalibration && kind == "fixed" {
		if cal := b.r.calibration(n, run, rate); cal != nil {
			if v, ok := nsPerPacket(tr.BusyS, tr.WindowS, cal.BusyS, cal.WindowS, tr.ForwardedPPS); ok {
				tr.NsPerPkt = ptr(round(v, 1))
			}
		}
	}
	b.r.Trials = append(b.r.Trials, tr)
	msg := fmt.Sprintf("%s, %s sources, run %d, %s %s: offered %s pps, forwarded %s pps, loss %.2f %%, CPU busy %.2f s/s %v (others %.2f)",
		c, sizeLabel(n), run, kind, rl, humanPPS(tr.OfferedPPS), humanPPS(tr.ForwardedPPS), tr.LossPct, tr.BusyS/tr.WindowS, tr.CPUBusyPct, tr.OthersCPU)
	if tr.NsPerPkt != nil {
		msg += fmt.Sprintf(", %.0f ns/pkt", *tr.NsPerPkt)
	}
	if tr.Noisy {
		msg += " [noisy]"
	}
	b.p.logf("%s", msg)
	return tr, nil
}

// trialOnce is one attempt of a trial: the generator's warm-up, the window,
// the figures.
func (b *fwdBench) trialOnce(ctx context.Context, c string, n, run int, rate float64, kind string, d, w time.Duration, proc *child) (Trial, error) {
	_ = os.Remove(b.stats)
	gen, err := startChild("generator", b.genArgv(n, rate, w+d+5*time.Second), nil, syscall.SIGINT)
	if err != nil {
		return Trial{}, err
	}
	defer func() { _ = gen.stop(syscall.SIGINT, 5*time.Second) }()
	// The generator creates its counters file at once; the warm-up runs
	// from then.
	deadline := time.Now().Add(10 * time.Second)
	for !exists(b.stats) {
		if gen.exited() || time.Now().After(deadline) {
			return Trial{}, fmt.Errorf("generator did not start: %v%s", gen.err, gen.tail())
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return Trial{}, err
		}
	}
	if err := sleep(ctx, w); err != nil {
		return Trial{}, err
	}
	ours := map[int]bool{gen.pid(): true}
	if proc != nil {
		ours[proc.pid()] = true
	}
	o0 := othersTicks(ours)
	s0, err := b.read(proc)
	if err != nil {
		return Trial{}, err
	}
	if err := sleep(ctx, d); err != nil {
		return Trial{}, err
	}
	s1, err := b.read(proc)
	if err != nil {
		return Trial{}, err
	}
	o1 := othersTicks(ours)
	if gen.exited() {
		return Trial{}, fmt.Errorf("generator exited during the window: %v%s", gen.err, gen.tail())
	}
	tr := computeTrial(c, n, run, rate, kind, s0, s1)
	if tr.WindowS > 0 {
		tr.OthersCPU = round(float64(othersDelta(o0, o1))/clockTicks/tr.WindowS, 3)
	}
	return tr, nil
}

// othersTicks reads utime + stime of every user-space process that is not
// the benchmark itself nor in one of the process groups ours (the
// generator's, the forwarder's): other load on a shared machine, by pid.
// Kernel threads are left out (ksoftirqd may do the cases' own work).
func othersTicks(ours map[int]bool) map[int]uint64 {
	out := map[int]uint64{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		pgrp, flags, ticks, ok := parseStatGroup(data)
		const pfKthread = 0x00200000
		if !ok || flags&pfKthread != 0 || ours[pgrp] {
			continue
		}
		out[pid] = ticks
	}
	return out
}

// parseStatGroup returns the process group, the flags and utime + stime of
// a /proc/PID/stat text.
func parseStatGroup(data []byte) (pgrp int, flags, ticks uint64, ok bool) {
	end := strings.LastIndexByte(string(data), ')')
	if end < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(string(data[end+1:]))
	if len(f) < 13 {
		return 0, 0, 0, false
	}
	// f[0] is field 3 (state): pgrp is field 5, flags 9, utime 14, stime 15.
	pg, e1 := strconv.Atoi(f[2])
	fl, e2 := strconv.ParseUint(f[6], 10, 64)
	ut, e3 := strconv.ParseUint(f[11], 10, 64)
	st, e4 := strconv.ParseUint(f[12], 10, 64)
	if e1 != nil || e2 != nil || e3 != nil || e4 != nil {
		return 0, 0, 0, false
	}
	return pg, fl, ut + st, true
}

// othersDelta is the CPU ticks other processes used between two readings:
// processes present in both count their increase, new ones all of theirs
// (those that came and went in between are missed).
func othersDelta(a, b map[int]uint64) uint64 {
	var d uint64
	for pid, t := range b {
		if t0, ok := a[pid]; ok {
			d += sub(t, t0)
		} else {
			d += t
		}
	}
	return d
}

// waitQuiet samples the machine for half a second with no traffic (the
// case's forwarder idle) until it is quiet — at most quietMax busy
// CPU-seconds per second — or quietWait has passed. It returns the last
// sample and whether it was quiet. Other users of a shared machine would
// otherwise land in the whole-machine CPU figures.
func (b *fwdBench) waitQuiet(ctx context.Context, what string) (float64, bool, error) {
	start := time.Now()
	for {
		a, err := readProcStat()
		if err != nil {
			return 0, false, err
		}
		t0 := time.Now()
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return 0, false, err
		}
		z, err := readProcStat()
		if err != nil {
			return 0, false, err
		}
		el := time.Since(t0)
		bg := busySeconds(a, z, el) / el.Seconds()
		if bg <= b.o.quietMax {
			return bg, true, nil
		}
		if time.Since(start) >= b.o.quietWait {
			b.p.logf("warning: the machine stayed busy (%.2f CPU) for %v; %s runs anyway, marked noisy", bg, b.o.quietWait, what)
			return bg, false, nil
		}
		b.p.set("waiting for a quiet machine (%.2f CPU busy without traffic) before %s", bg, what)
		if err := sleep(ctx, time.Second); err != nil {
			return 0, false, err
		}
	}
}

// computeTrial derives a trial's figures from the readings at the start
// (a) and end (b) of its window.
func computeTrial(c string, n, run int, rate float64, kind string, a, b fwdSample) Trial {
	t := Trial{Case: c, Sources: n, Run: run, Rate: rate, Kind: kind}
	el := b.at.Sub(a.at)
	dt := el.Seconds()
	t.WindowS = round(dt, 3)
	att := sub(b.gen.attempted, a.gen.attempted)
	t.Offered = att
	t.Refused = sub(b.gen.refused, a.gen.refused)
	t.Forwarded = sub(b.forwarded, a.forwarded)
	if dt > 0 {
		t.OfferedPPS = round(float64(att)/dt, 0)
		t.ForwardedPPS = round(float64(t.Forwarded)/dt, 0)
	}
	if att > 0 && c != CaseCalibration {
		t.LossPct = round(100*(1-float64(t.Forwarded)/float64(att)), 3)
	}
	t.BusyS = round(busySeconds(a.cpu, b.cpu, el), 3)
	t.SampledBusyS = round(sampledBusySeconds(a.cpu, b.cpu), 2)
	t.CPUBusyPct = busyPct(a.cpu, b.cpu)
	if a.hasProc && b.hasProc {
		t.ProcCPUS = ptr(round(float64(sub(b.procTicks, a.procTicks))/clockTicks, 2))
	}
	return t
}

// ispmuxDiagnostics keeps ispmux's drop counters of the run (a source
// that is not a binding would show as unknown_mac or spoofed_source).
func (b *fwdBench) ispmuxDiagnostics(ctx context.Context, c string, n, run int, stateDir string) {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := ctlsock.FetchStatus(sctx, filepath.Join(stateDir, appliance.SocketName))
	if err != nil {
		b.p.logf("ispmux status after the run: %v", err)
		return
	}
	js, err := json.Marshal(st.Ports)
	if err != nil {
		return
	}
	b.r.Diagnostics = append(b.r.Diagnostics, Diagnostic{Case: c, Sources: n, Run: run, Ports: js})
}

// bencher holds what the lab benchmarks share: waiting for ispmux and
// clearing XDP programs between cases.
type bencher struct {
	t            *lab.Topology
	logf         func(string, ...any)
	readyTimeout time.Duration // waitReady's; 0: 20 s
	maxRSS       uint64        // waitReady gives up when ispmux's RSS exceeds it; 0: no limit
}

func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// waitReady waits until ispmux answers on its control socket with every
// ISP's next hop reachable, and fails if the process exits first.
func (b *bencher) waitReady(ctx context.Context, p *child, sock string) error {
	limit := b.readyTimeout
	if limit <= 0 {
		limit = 20 * time.Second
	}
	deadline := time.Now().Add(limit)
	last := "no status yet"
	for {
		if p.exited() {
			return fmt.Errorf("ispmux exited before it was ready: %v%s", p.err, p.tail())
		}
		if b.maxRSS > 0 {
			if rss := procRSS(p.pid()); rss > b.maxRSS {
				return fmt.Errorf("ispmux's RSS reached %.1f GB before it was ready (limit %.1f GB: the machine is shared)", float64(rss)/1e9, float64(b.maxRSS)/1e9)
			}
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := ctlsock.FetchStatus(sctx, sock)
		cancel()
		if err == nil {
			ready := len(st.ISPs) == len(b.t.ISPs)
			var states []string
			for _, isp := range st.ISPs {
				states = append(states, isp.Name+"="+isp.State)
				ready = ready && isp.State == "reachable"
			}
			if ready {
				return nil
			}
			last = "next hops " + strings.Join(states, ", ")
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ispmux not ready after %v (%s)%s", limit, last, p.tail())
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// detachLeftovers removes XDP programs a previous case left on the
// appliance's ports (a forwarder that did not exit cleanly), reporting them.
func (b *bencher) detachLeftovers(ctx context.Context) error {
	out, err := b.t.Run(ctx, b.t.Appliance.NS, "ip", "-j", "link", "show")
	if err != nil {
		return err
	}
	var links []struct {
		Name string          `json:"ifname"`
		XDP  json.RawMessage `json:"xdp"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return fmt.Errorf("ip -j link show: %w", err)
	}
	for _, l := range links {
		if len(l.XDP) == 0 {
			continue
		}
		b.logf("warning: XDP program left on %s by the previous case; detaching it", l.Name)
		for _, mode := range []string{"xdpgeneric", "xdpdrv"} {
			_, _ = b.t.Run(ctx, b.t.Appliance.NS, "ip", "link", "set", "dev", l.Name, mode, "off")
		}
	}
	return nil
}

// procRSS is process pid's resident set size in bytes (0 if unknown).
func procRSS(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// memTotal is the machine's memory in bytes (0 if unknown).
func memTotal() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

func kernelRelease() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return ""
	}
	var s []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

var _ = runtime.NumCPU
