package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/lab"
	"github.com/ispmux/ispmux/subscribers"
)

// bench dhcp: DORA exchanges per second through ispmux (relay agent with
// Option 82, ISP emulation, durable binding before the ACK), through ISC
// dhcrelay with kernel forwarding, and perfdhcp straight to Kea (the
// ceiling), all against the same Kea in the same lab.

// DHCP benchmark case names, in the order they run.
const (
	CaseDHCPISPmux    = "ispmux"
	CaseDHCPRelay     = "relay"
	CaseDHCPKeaDirect = "kea_direct"
)

// dhcpOptions are the flags of `bench dhcp`.
type dhcpOptions struct {
	clients  int
	rate     float64
	duration time.Duration
	timeout  time.Duration
	retries  int
	asJSON   bool
	id       string
	out      string
	keep     bool
	exe      string
}

func parseDHCP(args []string, stderr io.Writer) (*dhcpOptions, error) {
	fs := flag.NewFlagSet("bench dhcp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &dhcpOptions{}
	fs.IntVar(&o.clients, "clients", 1000, "client MACs (02:20:...), each registered at ispmux")
	fs.Float64Var(&o.rate, "rate", 500, "DORA exchanges started per second")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long exchanges are started, per case")
	fs.BoolVar(&o.asJSON, "json", false, "print one JSON object instead of the table")
	fs.StringVar(&o.id, "id", "benchdh", "lab ID (namespace prefix)")
	fs.StringVar(&o.out, "out", "bench-out", "directory for dhcp.json, dhcp.md and dhcp.svg")
	fs.BoolVar(&o.keep, "keep", false, "leave the lab up afterwards")
	fs.DurationVar(&o.timeout, "timeout", time.Second, "client wait per transmission (perfdhcp's drop time is 1s too)")
	fs.IntVar(&o.retries, "retries", 2, "client retransmissions per message")
	// Hidden: tests run a freshly built ispmux binary instead of themselves.
	fs.StringVar(&o.exe, "exe", "", "")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ispmux bench dhcp [--clients 1000] [--rate 500] [--duration 10s] [--json] [--id benchdh] [--out DIR] [--keep]")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Usage != "" {
				fmt.Fprintf(stderr, "  --%s (default %q)\n    \t%s\n", f.Name, f.DefValue, f.Usage)
			}
		})
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() != 0:
		return nil, fmt.Errorf("bench dhcp: unexpected arguments %q", fs.Args())
	case o.clients < 1 || o.clients > maxGenClients:
		return nil, fmt.Errorf("bench dhcp: --clients %d: want 1..%d", o.clients, maxGenClients)
	case o.rate < 1 || o.rate > 100000:
		return nil, fmt.Errorf("bench dhcp: --rate %g: want 1..100000", o.rate)
	case o.duration < time.Second || o.duration > time.Hour || o.duration%time.Second != 0:
		return nil, fmt.Errorf("bench dhcp: --duration %v: want whole seconds, 1s..1h (perfdhcp's -p)", o.duration)
	case o.timeout < 10*time.Millisecond || o.timeout > 30*time.Second:
		return nil, fmt.Errorf("bench dhcp: --timeout %v: want 10ms..30s", o.timeout)
	case o.retries < 0 || o.retries > 10:
		return nil, fmt.Errorf("bench dhcp: --retries %d: want 0..10", o.retries)
	}
	return o, nil
}

// DHCPCase is the result of one case of bench dhcp.
type DHCPCase struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Command     string `json:"command,omitempty"`

	OfferedRate float64 `json:"offered_rate"` // DORA starts per second
	Exchanges   int     `json:"exchanges"`    // DORA exchanges started
	Completed   int     `json:"completed"`    // ... that got their ACK
	Failed      int     `json:"failed"`
	// ExchangeFailPct is Failed / Exchanges in percent.
	ExchangeFailPct float64 `json:"exchange_fail_pct"`
	// FailPct is the share of clients (that started an exchange) without
	// an ACK at the end, in percent; for perfdhcp, which reports no
	// clients, it is ExchangeFailPct.
	FailPct           float64        `json:"fail_pct"`
	ClientsStarted    int            `json:"clients_started,omitempty"`
	ClientsWithoutACK int            `json:"clients_without_ack,omitempty"`
	FailReasons       map[string]int `json:"fail_reasons,omitempty"`
	Skipped           int            `json:"skipped_starts"` // starts due while every client was busy
	WallS             float64        `json:"wall_s"`
	DORAPerS          float64        `json:"dora_per_s"` // Completed / WallS

	// Latencies in milliseconds from the first transmission of a
	// DISCOVER (REQUEST) to its OFFER (ACK). perfdhcp reports no
	// percentiles: only min, avg and max.
	OfferP50Ms *float64 `json:"offer_p50_ms"`
	OfferP99Ms *float64 `json:"offer_p99_ms"`
	AckP50Ms   *float64 `json:"ack_p50_ms"`
	AckP99Ms   *float64 `json:"ack_p99_ms"`
	OfferMinMs *float64 `json:"offer_min_ms"`
	OfferAvgMs *float64 `json:"offer_avg_ms"`
	OfferMaxMs *float64 `json:"offer_max_ms"`
	AckMinMs   *float64 `json:"ack_min_ms"`
	AckAvgMs   *float64 `json:"ack_avg_ms"`
	AckMaxMs   *float64 `json:"ack_max_ms"`

	// CPUBusyPct is each CPU's busy share during the case, in percent.
	CPUBusyPct []float64 `json:"cpu_busy_pct"`
	// ProcCPUS is the system under test's CPU time (ispmux, dhcrelay);
	// KeaCPUS Kea's, GenCPUS the client generator's (or perfdhcp's).
	ProcCPUS *float64 `json:"proc_cpu_s"`
	KeaCPUS  *float64 `json:"kea_cpu_s"`
	GenCPUS  *float64 `json:"gen_cpu_s"`

	Diagnostics map[string]any `json:"diagnostics,omitempty"`
	Error       string         `json:"error,omitempty"`
}

// DHCPResult is the outcome of bench dhcp: dhcp.json and --json.
type DHCPResult struct {
	Benchmark     string  `json:"benchmark"`
	ISPmuxDORA    float64 `json:"ispmux_dora_per_s"`
	RelayDORA     float64 `json:"relay_dora_per_s"`
	KeaDirectDORA float64 `json:"kea_direct_dora_per_s"`
	RatioVsRelay  float64 `json:"ratio_vs_relay"`  // ispmux / relay, 0 without a relay figure
	RatioVsDirect float64 `json:"ratio_vs_direct"` // ispmux / kea_direct, 0 without a direct figure
	ISPmuxFailPct float64 `json:"ispmux_fail_pct"`
	P99Ms         float64 `json:"p99_ms"` // ispmux's REQUEST→ACK p99
	// ISPmuxLeases is FetchStatus's lease count after the run;
	// ISPmuxDurableBindings the generator's bindings found in ispmux's
	// store file after ispmux exited; ISPmuxDHCP its DHCP counters.
	ISPmuxLeases          int               `json:"ispmux_leases"`
	ISPmuxDurableBindings int               `json:"ispmux_durable_bindings"`
	ISPmuxDHCP            map[string]uint64 `json:"ispmux_dhcp_counters"`

	Clients          int        `json:"clients"`
	Rate             float64    `json:"rate"`
	DurationS        float64    `json:"duration_s"`
	TimeoutS         float64    `json:"timeout_s"`
	Retries          int        `json:"retries"`
	CPUs             int        `json:"cpus"`
	BackgroundCPUPct []float64  `json:"background_cpu_pct"`
	Kernel           string     `json:"kernel,omitempty"`
	Started          string     `json:"started"`
	Command          string     `json:"command"`
	Generator        string     `json:"generator"`
	Cases            []DHCPCase `json:"cases"`
	Notes            []string   `json:"notes"`
}

// dhcpBench runs `ispmux bench dhcp`.
func dhcpBench(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseDHCP(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	tmp, err := prepare("dhcp", "clients", []string{"ip", "taskset", "timeout", "kea-dhcp4", "perfdhcp", "dhcrelay", "ss"},
		"kea-dhcp4-server, kea-admin, isc-dhcp-relay, iproute2", &o.exe, &o.out, o.id)
	if err != nil {
		return err
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }

	r := &DHCPResult{
		Benchmark: "dhcp", Clients: o.clients, Rate: o.rate, DurationS: o.duration.Seconds(),
		TimeoutS: o.timeout.Seconds(), Retries: o.retries, CPUs: runtime.NumCPU(), Kernel: kernelRelease(),
		Started: time.Now().UTC().Format(time.RFC3339),
		Command: shellQuote(append([]string{"ispmux", "bench", "dhcp"}, args...)),
		Notes: []string{
			"One exchange is a full DORA: broadcast DISCOVER, OFFER, broadcast REQUEST (options 50 and 54 from the OFFER), ACK. The generator cycles over its clients, so a client does several DORAs in a run (like a client rebooting); the same ISP lease comes back each time.",
			"dora_per_s = exchanges completed with an ACK / wall time (from the first start to the end of the start window, or to the last ACK if later). fail_pct = clients whose last exchange got no ACK; exchange_fail_pct = failed exchanges / started.",
			"Cases ispmux and relay use the same Go client generator (one AF_PACKET socket in promiscuous mode, CPU " + genCPU + "): a DISCOVER or REQUEST not answered within the timeout is retransmitted up to --retries times; latencies run from the first transmission. ispmux and dhcrelay run on CPU " + fwdCPU + "; Kea is not pinned and shares both CPUs.",
			"kea_direct: perfdhcp (C++, CPU " + genCPU + ") acting as a relay straight to Kea: no client generator cost, no relay hop, no retransmissions (a reply later than 1 s is a drop), and it reports min/avg/max delays only (no percentiles).",
			"ispmux commits every binding to its bbolt store with fsync (group commit) before it sends the ACK; dhcrelay and Kea keep nothing durable on the path (Kea's memfile lease file is written, not fsynced, per lease).",
			"Kea is restarted with an empty lease file before every case so that pools never run dry and every case starts from the same state.",
		},
	}

	var t *lab.Topology
	defer func() { err = errors.Join(err, teardown(ctx, "dhcp", o.id, tmp, o.keep, t != nil, logf)) }()

	logf("lab %s up (DHCP, open Kea pool, generator on acc1)", o.id)
	t, err = lab.Up(ctx, lab.Options{ID: o.id, ISPs: 1, Subscribers: 1, Generator: true, DHCP: true, KeaOpen: true})
	if err != nil {
		return fmt.Errorf("bench dhcp: %w", err)
	}
	bg := &Result{}
	if err := backgroundLoad(ctx, bg, logf); err != nil {
		return err
	}
	r.BackgroundCPUPct = bg.BackgroundCPUPct
	r.Notes = append(r.Notes, bg.Notes...)

	stateDir := filepath.Join(tmp, "state")
	cfgPath := filepath.Join(o.out, "dhcp-ispmux.toml")
	if err := os.WriteFile(cfgPath, dhcpConfigTOML(t, stateDir, o), 0o644); err != nil {
		return err
	}
	d := &dhcpBencher{o: o, t: t, b: &bencher{t: t, logf: logf}, logf: logf, tmp: tmp}
	r.Generator = shellQuote(d.genArgv())
	app := t.Appliance.NS
	isp := t.ISPs[0]
	cases := []struct {
		name, desc string
		argv       []string
		run        func(c *DHCPCase, argv []string) error
	}{
		{CaseDHCPISPmux, "ispmux (config " + filepath.Base(cfgPath) + ": every client a DHCP subscriber of alpha, no static address), pinned to CPU " + fwdCPU + "; durable bindings (fsync)",
			[]string{"taskset", "-c", fwdCPU, "ip", "netns", "exec", app, o.exe, "run", "-c", cfgPath},
			func(c *DHCPCase, argv []string) error { return d.runISPmux(ctx, argv, stateDir, c, r) }},
		{CaseDHCPRelay, "ISC dhcrelay (-a: circuit-id only) with kernel forwarding in the appliance namespace (acc1 " + lab.Gateway + "/16, upa " + lab.OurAddr + ", ip_forward=1), pinned to CPU " + fwdCPU,
			[]string{"taskset", "-c", fwdCPU, "ip", "netns", "exec", app, "dhcrelay", "-4", "-d", "-a", "-pf", filepath.Join(tmp, "dhcrelay.pid"),
				"-id", t.Generator.Access, "-iu", t.Appliance.Uplinks[0].Name, isp.RouterAddr},
			func(c *DHCPCase, argv []string) error { return d.runRelay(ctx, argv, c) }},
		{CaseDHCPKeaDirect, "perfdhcp as a relay (giaddr " + lab.RelayAddr + ") from the appliance namespace straight to Kea, pinned to CPU " + genCPU + ": the ceiling",
			d.perfdhcpArgv(), func(c *DHCPCase, argv []string) error { return d.runDirect(ctx, argv, c) }},
	}
	var failed []string
	for _, cs := range cases {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("bench dhcp: interrupted: %w", err)
		}
		c := DHCPCase{Name: cs.name, Description: cs.desc, Command: shellQuote(cs.argv), OfferedRate: o.rate}
		logf("case %s", cs.name)
		if err := cs.run(&c, cs.argv); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("bench dhcp: interrupted: %w", ctx.Err())
			}
			c.Error = err.Error()
			failed = append(failed, cs.name)
			logf("case %s failed: %v", cs.name, err)
		} else {
			logf("case %s: %d/%d DORA completed, %.0f DORA/s, fail %.2f %% of clients, %.2f %% of exchanges, REQUEST→ACK p99 %s ms",
				c.Name, c.Completed, c.Exchanges, c.DORAPerS, c.FailPct, c.ExchangeFailPct, fmtOpt(c.AckP99Ms, "%.2f"))
		}
		r.Cases = append(r.Cases, c)
	}
	r.finish()
	if err := writeDHCPOutputs(o.out, r); err != nil {
		return err
	}
	if err := emit(stdout, r, o.asJSON, o.out, "dhcp"); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench dhcp: case(s) %s failed (details in %s/dhcp.json)", strings.Join(failed, ", "), o.out)
	}
	return nil
}

// dhcpConfigTOML is the lab's configuration plus the generator's clients as
// DHCP subscribers of the first ISP on the generator's access port, and a
// [dhcp] table whose limits do not throttle the benchmark: per-circuit rate
// and bindings far above the offered load, and a per-MAC budget for the
// client's DORAs per second with every retransmission.
func dhcpConfigTOML(t *lab.Topology, stateDir string, o *dhcpOptions) []byte {
	var b bytes.Buffer
	b.Write(t.ConfigTOML(stateDir))
	q := strconv.Quote
	for i := range o.clients {
		fmt.Fprintf(&b, "\n[[subscriber]]\nmac = %s\nisp = %s\ncustomer_id = %s\naccess = %s\n",
			q(genMAC(i).String()), q(t.ISPs[0].Name), q(fmt.Sprintf("bench-%d", i+1)), q(t.Generator.Access))
	}
	// A client starts a DORA rate/clients times a second (the generator
	// cycles over its clients), each of up to 2×(retries+1) messages.
	perMAC := 2 * (o.retries + 1) * int(math.Ceil(o.rate/float64(o.clients)))
	perMAC = min(1000, max(4, perMAC))
	fmt.Fprintf(&b, "\n[dhcp]\ntimeout = \"4s\"\nmax_pending = %d\nmac_rate = %d\nmac_burst = %d\ncircuit_rate = %d\ncircuit_burst = %d\nmax_bindings_per_circuit = %d\n",
		max(4096, 4*o.clients), perMAC, 2*perMAC, 1<<20, 1<<20, max(4096, 2*o.clients))
	return b.Bytes()
}

// dhcpBencher runs the cases of one bench dhcp in one lab.
type dhcpBencher struct {
	o    *dhcpOptions
	t    *lab.Topology
	b    *bencher // waitReady, detachLeftovers
	logf func(string, ...any)
	tmp  string
	kea  int // Kea's pid
}

// genArgv is the client generator's command, identical for ispmux and
// relay: pinned to CPU 0 in the generator namespace, bounded by timeout(1).
func (d *dhcpBencher) genArgv() []string {
	limit := d.o.duration + 2*time.Duration(d.o.retries+1)*d.o.timeout + 30*time.Second
	g := d.t.Generator
	return []string{"timeout", "-s", "INT", "-k", "5", strconv.Itoa(int(limit.Seconds())),
		"taskset", "-c", genCPU, "ip", "netns", "exec", g.NS, d.o.exe, "bench", "dhcp-client-gen",
		"--if", g.If, "--clients", strconv.Itoa(d.o.clients), "--rate", strconv.FormatFloat(d.o.rate, 'f', -1, 64),
		"--duration", d.o.duration.String(), "--timeout", d.o.timeout.String(), "--retries", strconv.Itoa(d.o.retries)}
}

// perfdhcpArgv is case kea_direct's command.
func (d *dhcpBencher) perfdhcpArgv() []string {
	limit := d.o.duration + 30*time.Second
	return []string{"timeout", "-s", "INT", "-k", "5", strconv.Itoa(int(limit.Seconds())),
		"taskset", "-c", genCPU, "ip", "netns", "exec", d.t.Appliance.NS, "perfdhcp", "-4",
		"-l", lab.RelayAddr, "-r", strconv.FormatFloat(d.o.rate, 'f', 0, 64), "-R", strconv.Itoa(d.o.clients),
		"-p", strconv.Itoa(int(d.o.duration / time.Second)), d.t.ISPs[0].RouterAddr}
}

// cpuMeter samples the machine's and some processes' CPU time.
type cpuMeter struct {
	cpu   ProcStat
	ticks map[int]uint64
}

func readCPU(pids ...int) cpuMeter {
	m := cpuMeter{ticks: map[int]uint64{}}
	m.cpu, _ = readProcStat()
	for _, p := range pids {
		if p > 0 {
			if _, t, err := readPIDStat(p); err == nil {
				m.ticks[p] = t
			}
		}
	}
	return m
}

// procS is pid's CPU seconds between a and b, nil when unknown.
func procS(a, b cpuMeter, pid int) *float64 {
	x, ok1 := a.ticks[pid]
	y, ok2 := b.ticks[pid]
	if !ok1 || !ok2 {
		return nil
	}
	return ptr(round(float64(sub(y, x))/clockTicks, 2))
}

// runGen runs the client generator to its end and fills c from its result;
// sut is the system under test's pid (0 if none) for CPU accounting.
func (d *dhcpBencher) runGen(ctx context.Context, c *DHCPCase, sut int) (*GenResult, error) {
	var out bytes.Buffer
	before := readCPU(sut, d.kea)
	g, err := startChild("dhcp-client-gen", d.genArgv(), &out, syscall.SIGINT)
	if err != nil {
		return nil, err
	}
	genPid := g.pid()
	var genTicks uint64
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
wait:
	for {
		select {
		case <-g.done:
			break wait
		case <-poll.C:
			// The child is reaped as soon as it exits: keep its last
			// reading.
			if _, tk, err := readPIDStat(genPid); err == nil {
				genTicks = tk
			}
		case <-ctx.Done():
			_ = g.stop(syscall.SIGINT, 5*time.Second)
			return nil, ctx.Err()
		}
	}
	after := readCPU(sut, d.kea)
	if g.err != nil {
		return nil, fmt.Errorf("dhcp-client-gen: %v%s", g.err, g.tail())
	}
	var res GenResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("dhcp-client-gen output: %w%s", err, g.tail())
	}
	fillFromGen(c, &res)
	c.CPUBusyPct = busyPct(before.cpu, after.cpu)
	c.ProcCPUS, c.KeaCPUS = procS(before, after, sut), procS(before, after, d.kea)
	c.GenCPUS = ptr(round(float64(genTicks)/clockTicks, 2))
	if c.Completed == 0 {
		d.logf("no exchange completed: generator sent %d frames (%d errors), received %d (%d ignored)", res.TxFrames, res.TxErrors, res.RxFrames, res.RxIgnore)
	}
	return &res, nil
}

// fillFromGen computes a case's figures from the generator's results.
func fillFromGen(c *DHCPCase, g *GenResult) {
	var offers, acks []float64
	c.FailReasons = map[string]int{}
	c.Exchanges, c.Completed, c.Failed, c.ClientsStarted, c.ClientsWithoutACK = 0, 0, 0, 0, 0
	for _, cl := range g.Results {
		if len(cl.Exchanges) == 0 {
			continue
		}
		c.ClientsStarted++
		if !cl.Exchanges[len(cl.Exchanges)-1].OK {
			c.ClientsWithoutACK++
		}
		for _, e := range cl.Exchanges {
			c.Exchanges++
			if e.OfferUs > 0 {
				offers = append(offers, float64(e.OfferUs)/1000)
			}
			if e.OK {
				c.Completed++
				acks = append(acks, float64(e.AckUs)/1000)
			} else {
				c.Failed++
				c.FailReasons[e.Fail]++
			}
		}
	}
	c.Skipped = g.Skipped
	c.OfferedRate = g.Rate
	wall := g.WindowS
	if g.LastAckUs > 0 {
		wall = math.Max(wall, float64(g.LastAckUs-g.FirstStartUs)/1e6)
	}
	c.WallS = round(wall, 3)
	c.DORAPerS = doraPerS(c.Completed, wall)
	c.ExchangeFailPct = pct(c.Failed, c.Exchanges)
	c.FailPct = pct(c.ClientsWithoutACK, c.ClientsStarted)
	c.OfferP50Ms, c.OfferP99Ms = percentile(offers, 50), percentile(offers, 99)
	c.AckP50Ms, c.AckP99Ms = percentile(acks, 50), percentile(acks, 99)
	c.OfferMinMs, c.OfferAvgMs, c.OfferMaxMs = minAvgMax(offers)
	c.AckMinMs, c.AckAvgMs, c.AckMaxMs = minAvgMax(acks)
}

// doraPerS is completed exchanges per second of wall time (0 without time).
func doraPerS(completed int, wallS float64) float64 {
	if wallS <= 0 {
		return 0
	}
	return round(float64(completed)/wallS, 1)
}

func pct(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return round(100*float64(n)/float64(of), 2)
}

// percentile is the nearest-rank p-th percentile of v (rounded to µs), nil
// for no values. v is sorted in place.
func percentile(v []float64, p float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	sort.Float64s(v)
	k := int(math.Ceil(p/100*float64(len(v)))) - 1
	k = max(0, min(k, len(v)-1))
	return ptr(round(v[k], 3))
}

func minAvgMax(v []float64) (lo, avg, hi *float64) {
	if len(v) == 0 {
		return nil, nil, nil
	}
	mn, mx, s := v[0], v[0], 0.0
	for _, x := range v {
		mn, mx, s = math.Min(mn, x), math.Max(mx, x), s+x
	}
	return ptr(round(mn, 3)), ptr(round(s/float64(len(v)), 3)), ptr(round(mx, 3))
}

// restartKea stops the ISP's Kea, empties its lease file and starts it
// again, detached like lab.Up does; it returns when Kea listens.
func (d *dhcpBencher) restartKea(ctx context.Context) error {
	isp := d.t.ISPs[0]
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", isp.NS).Output()
	if err != nil {
		return fmt.Errorf("ip netns pids %s: %w", isp.NS, err)
	}
	var keas []int
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile("/proc/" + f + "/comm"); err == nil && strings.TrimSpace(string(comm)) == "kea-dhcp4" {
			keas = append(keas, pid)
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	for _, pid := range keas {
		for i := 0; syscall.Kill(pid, 0) == nil; i++ {
			if i == 50 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return err
			}
			if i > 100 {
				return fmt.Errorf("kea-dhcp4 (pid %d) survives SIGKILL", pid)
			}
		}
	}
	old, _ := filepath.Glob(isp.KeaLeaseFile + "*")
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	logf, err := os.OpenFile(strings.TrimSuffix(isp.KeaLog, ".log")+".out", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", isp.NS, "kea-dhcp4", "-c", isp.KeaConfig)
	cmd.Env = append(os.Environ(), "KEA_PIDFILE_DIR="+d.t.StateDir, "KEA_LOCKFILE_DIR="+d.t.StateDir, "KEA_LOGGER_DESTINATION="+isp.KeaLog)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start kea-dhcp4: %w", err)
	}
	go func() { _ = cmd.Wait() }() // lab.Down kills it
	d.kea = cmd.Process.Pid        // ip netns exec execs kea-dhcp4
	return d.waitUDP67(ctx, isp.NS, "kea-dhcp4")
}

// waitUDP67 waits until something listens on UDP port 67 in ns.
func (d *dhcpBencher) waitUDP67(ctx context.Context, ns, what string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := d.t.Run(ctx, ns, "ss", "-Hnul", "sport", "=", ":67")
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not listen on UDP 67 in %s after 15s", what, ns)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// runISPmux measures case ispmux.
func (d *dhcpBencher) runISPmux(ctx context.Context, argv []string, stateDir string, c *DHCPCase, r *DHCPResult) (err error) {
	if err := d.b.detachLeftovers(ctx); err != nil {
		return err
	}
	if err := d.restartKea(ctx); err != nil {
		return err
	}
	p, err := startChild("ispmux", argv, nil, syscall.SIGTERM)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = p.stop(syscall.SIGTERM, 15*time.Second)
		}
	}()
	sock := filepath.Join(stateDir, appliance.SocketName)
	if err := d.b.waitReady(ctx, p, sock); err != nil {
		return err
	}
	if _, err := d.runGen(ctx, c, p.pid()); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	st, serr := ctlsock.FetchStatus(sctx, sock)
	cancel()
	if serr != nil {
		d.logf("ispmux status after the run: %v", serr)
	} else {
		r.ISPmuxLeases, r.ISPmuxDHCP = st.Leases, st.DHCP
		c.Diagnostics = map[string]any{"dhcp": st.DHCP, "leases": st.Leases, "ports": st.Ports}
	}
	// SIGTERM: ispmux waits for in-flight commits, closes its store and
	// detaches XDP; then its store file holds what it told clients.
	stopped = true
	if err := p.stop(syscall.SIGTERM, 15*time.Second); err != nil {
		return err
	}
	n, err := durableBindings(filepath.Join(stateDir, appliance.StoreName), d.t.Generator.Access)
	if err != nil {
		return fmt.Errorf("reading ispmux's store after the run: %w", err)
	}
	r.ISPmuxDurableBindings = n
	if c.Diagnostics != nil {
		c.Diagnostics["durable_bindings"] = n
	}
	return nil
}

// durableBindings counts the generator clients' bindings on access in the
// store file at path (ispmux must have exited).
func durableBindings(path, access string) (int, error) {
	s, err := subscribers.Open(path, subscribers.Options{})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	bs, err := s.Bindings()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, b := range bs {
		if b.Access == access && b.MAC[0] == genMACPrefix[0] && b.MAC[1] == genMACPrefix[1] {
			n++
		}
	}
	return n, nil
}

// relayOn gives the appliance namespace the addresses a kernel relay needs
// (acc1 the gateway /16, upa our uplink address) and forwarding; off
// removes them (lab.KernelRouter off).
func (d *dhcpBencher) relayOn(ctx context.Context, access bool) error {
	app := d.t.Appliance.NS
	if access {
		if _, err := d.t.Run(ctx, app, "ip", "addr", "replace", lab.Gateway+"/16", "dev", d.t.Generator.Access); err != nil {
			return err
		}
		if _, err := d.t.Run(ctx, app, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
			return err
		}
	}
	_, err := d.t.Run(ctx, app, "ip", "addr", "replace", lab.OurAddr, "dev", d.t.Appliance.Uplinks[0].Name)
	return err
}

func (d *dhcpBencher) relayOff(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return d.t.KernelRouter(cctx, false)
}

// runRelay measures case relay.
func (d *dhcpBencher) runRelay(ctx context.Context, argv []string, c *DHCPCase) (err error) {
	if err := d.b.detachLeftovers(ctx); err != nil {
		return err
	}
	if err := d.restartKea(ctx); err != nil {
		return err
	}
	defer func() {
		if oerr := d.relayOff(ctx); oerr != nil && err == nil {
			err = oerr
		}
	}()
	if err := d.relayOn(ctx, true); err != nil {
		return err
	}
	p, err := startChild("dhcrelay", argv, nil, syscall.SIGTERM)
	if err != nil {
		return err
	}
	defer func() {
		if serr := p.stop(syscall.SIGTERM, 10*time.Second); serr != nil && err == nil {
			err = serr
		}
	}()
	if err := d.waitUDP67(ctx, d.t.Appliance.NS, "dhcrelay"); err != nil {
		return fmt.Errorf("%w%s", err, p.tail())
	}
	if err := sleep(ctx, 300*time.Millisecond); err != nil { // its LPF sockets open after the UDP one
		return err
	}
	if p.exited() {
		return fmt.Errorf("dhcrelay exited: %v%s", p.err, p.tail())
	}
	_, err = d.runGen(ctx, c, p.pid())
	return err
}

// runDirect measures case kea_direct.
func (d *dhcpBencher) runDirect(ctx context.Context, argv []string, c *DHCPCase) (err error) {
	if err := d.b.detachLeftovers(ctx); err != nil {
		return err
	}
	if err := d.restartKea(ctx); err != nil {
		return err
	}
	defer func() {
		if oerr := d.relayOff(ctx); oerr != nil && err == nil {
			err = oerr
		}
	}()
	if err := d.relayOn(ctx, false); err != nil {
		return err
	}
	// Resolve the router first (ARP), as the other cases' relays did.
	_, _ = d.t.Run(ctx, d.t.Appliance.NS, "ping", "-c", "1", "-W", "1", d.t.ISPs[0].RouterAddr)
	before := readCPU(d.kea)
	var out bytes.Buffer
	p, err := startChild("perfdhcp", argv, &out, syscall.SIGINT)
	if err != nil {
		return err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = p.stop(syscall.SIGINT, 5*time.Second)
		return ctx.Err()
	}
	after := readCPU(d.kea)
	var ee *exec.ExitError
	if p.err != nil && !(errors.As(p.err, &ee) && ee.ExitCode() == 3) { // 3: some exchanges incomplete
		return fmt.Errorf("perfdhcp: %v: %s%s", p.err, lastLinesOf(out.String(), 5), p.tail())
	}
	ps, err := parsePerfdhcp(out.String())
	if err != nil {
		return fmt.Errorf("perfdhcp output: %w: %s", err, lastLinesOf(out.String(), 10))
	}
	fillFromPerfdhcp(c, ps, d.o.duration.Seconds())
	c.CPUBusyPct = busyPct(before.cpu, after.cpu)
	c.KeaCPUS = procS(before, after, d.kea)
	c.Diagnostics = map[string]any{"perfdhcp": ps}
	return nil
}

func lastLinesOf(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], " | ")
}

// PerfdhcpStats is what perfdhcp -4 prints at the end of a run.
type PerfdhcpStats struct {
	Rate         float64       `json:"rate"` // "4-way exchanges/second"
	ExpectedRate float64       `json:"expected_rate"`
	DO           PerfdhcpPhase `json:"discover_offer"`
	RA           PerfdhcpPhase `json:"request_ack"`
}

// PerfdhcpPhase is one exchange type's statistics (delays in ms).
type PerfdhcpPhase struct {
	Sent       int     `json:"sent"`
	Received   int     `json:"received"`
	Drops      int     `json:"drops"`
	Orphans    int     `json:"orphans"`
	Rejected   int     `json:"rejected_leases"`
	MinDelayMs float64 `json:"min_delay_ms"`
	AvgDelayMs float64 `json:"avg_delay_ms"`
	MaxDelayMs float64 `json:"max_delay_ms"`
	StdDevMs   float64 `json:"std_deviation_ms"`
	found      bool
}

// parsePerfdhcp parses perfdhcp's report.
func parsePerfdhcp(out string) (*PerfdhcpStats, error) {
	s := &PerfdhcpStats{}
	var cur *PerfdhcpPhase
	rate := false
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "***Statistics for: DISCOVER-OFFER"):
			cur = &s.DO
			cur.found = true
			continue
		case strings.HasPrefix(line, "***Statistics for: REQUEST-ACK"):
			cur = &s.RA
			cur.found = true
			continue
		case strings.HasPrefix(line, "***"):
			cur = nil
			continue
		case strings.HasPrefix(line, "Rate:"):
			// Rate: 499.773 4-way exchanges/second, expected rate: 500
			f := strings.Fields(line)
			if len(f) < 2 {
				return nil, fmt.Errorf("bad rate line %q", line)
			}
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return nil, fmt.Errorf("rate line %q: %w", line, err)
			}
			s.Rate, rate = v, true
			if i := strings.Index(line, "expected rate:"); i >= 0 {
				s.ExpectedRate, _ = strconv.ParseFloat(strings.TrimSpace(line[i+len("expected rate:"):]), 64)
			}
			continue
		}
		if cur == nil {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "ms"))
		var err error
		atoi := func(dst *int) { *dst, err = strconv.Atoi(v) }
		atof := func(dst *float64) { *dst, err = strconv.ParseFloat(v, 64) }
		switch strings.TrimSpace(k) {
		case "sent packets":
			atoi(&cur.Sent)
		case "received packets":
			atoi(&cur.Received)
		case "drops":
			atoi(&cur.Drops)
		case "orphans":
			atoi(&cur.Orphans)
		case "rejected leases":
			atoi(&cur.Rejected)
		case "min delay":
			atof(&cur.MinDelayMs)
		case "avg delay":
			atof(&cur.AvgDelayMs)
		case "max delay":
			atof(&cur.MaxDelayMs)
		case "std deviation":
			atof(&cur.StdDevMs)
		}
		if err != nil {
			return nil, fmt.Errorf("line %q: %w", line, err)
		}
	}
	if !s.DO.found || !s.RA.found {
		return nil, errors.New("no DISCOVER-OFFER and REQUEST-ACK statistics")
	}
	if !rate {
		return nil, errors.New("no rate statistics")
	}
	return s, nil
}

// fillFromPerfdhcp computes case kea_direct's figures: an exchange starts
// with each DISCOVER and completes with each ACK received.
func fillFromPerfdhcp(c *DHCPCase, s *PerfdhcpStats, periodS float64) {
	c.Exchanges = s.DO.Sent
	c.Completed = min(s.RA.Received, s.DO.Sent)
	c.Failed = c.Exchanges - c.Completed
	c.ExchangeFailPct = pct(c.Failed, c.Exchanges)
	c.FailPct = c.ExchangeFailPct
	c.FailReasons = map[string]int{}
	if n := s.DO.Sent - s.DO.Received; n > 0 {
		c.FailReasons[FailNoOffer] = n
	}
	if n := s.RA.Sent - s.RA.Received; n > 0 {
		c.FailReasons[FailNoAck] = n
	}
	c.WallS = periodS
	// perfdhcp's own rate is completed 4-way exchanges per second of its
	// run; without it, ACKs per test period.
	c.DORAPerS = round(s.Rate, 1)
	if c.DORAPerS == 0 {
		c.DORAPerS = doraPerS(c.Completed, periodS)
	}
	if s.DO.Received > 0 {
		c.OfferMinMs, c.OfferAvgMs, c.OfferMaxMs = ptr(s.DO.MinDelayMs), ptr(s.DO.AvgDelayMs), ptr(s.DO.MaxDelayMs)
	}
	if s.RA.Received > 0 {
		c.AckMinMs, c.AckAvgMs, c.AckMaxMs = ptr(s.RA.MinDelayMs), ptr(s.RA.AvgDelayMs), ptr(s.RA.MaxDelayMs)
	}
}

// finish fills the headline figures from the cases.
func (r *DHCPResult) finish() {
	r.ISPmuxDORA, r.RelayDORA, r.KeaDirectDORA, r.ISPmuxFailPct, r.P99Ms = 0, 0, 0, 0, 0
	for _, c := range r.Cases {
		if c.Error != "" {
			continue
		}
		switch c.Name {
		case CaseDHCPISPmux:
			r.ISPmuxDORA, r.ISPmuxFailPct = c.DORAPerS, c.FailPct
			if c.AckP99Ms != nil {
				r.P99Ms = *c.AckP99Ms
			}
		case CaseDHCPRelay:
			r.RelayDORA = c.DORAPerS
		case CaseDHCPKeaDirect:
			r.KeaDirectDORA = c.DORAPerS
		}
	}
	r.RatioVsRelay, r.RatioVsDirect = 0, 0
	if r.RelayDORA > 0 {
		r.RatioVsRelay = round(r.ISPmuxDORA/r.RelayDORA, 3)
	}
	if r.KeaDirectDORA > 0 {
		r.RatioVsDirect = round(r.ISPmuxDORA/r.KeaDirectDORA, 3)
	}
}

// JSON returns the result as indented JSON with a trailing newline.
func (r *DHCPResult) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// dhcpRow is one case's table row.
func dhcpRow(c DHCPCase) []string {
	if c.Error != "" {
		return []string{c.Name, fmt.Sprintf("%.0f", c.OfferedRate), "-", "-", "-", "-", "-", "-", "-"}
	}
	lat := func(p50, p99, avg *float64) string {
		if p50 == nil && p99 == nil {
			return "avg " + fmtOpt(avg, "%.2f")
		}
		return fmtOpt(p50, "%.2f") + " / " + fmtOpt(p99, "%.2f")
	}
	return []string{c.Name, fmt.Sprintf("%.0f", c.OfferedRate), strconv.Itoa(c.Exchanges), strconv.Itoa(c.Completed),
		fmt.Sprintf("%.1f", c.DORAPerS), fmt.Sprintf("%.2f", c.FailPct), fmt.Sprintf("%.2f", c.ExchangeFailPct),
		lat(c.OfferP50Ms, c.OfferP99Ms, c.OfferAvgMs), lat(c.AckP50Ms, c.AckP99Ms, c.AckAvgMs)}
}

var dhcpHeader = []string{"case", "offered/s", "exchanges", "completed", "DORA/s", "fail % (clients)", "fail % (exchanges)",
	"DISCOVER→OFFER p50/p99 ms", "REQUEST→ACK p50/p99 ms"}

// WriteTable writes the human-readable table and the headline figures.
func (r *DHCPResult) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(dhcpHeader, "\t")+"\t")
	for _, c := range r.Cases {
		fmt.Fprintln(tw, strings.Join(dhcpRow(c), "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nispmux/relay %.3f  ispmux/kea-direct %.3f  ispmux fail %.2f %%  REQUEST→ACK p99 %.2f ms  (%d clients, %g/s offered, %gs)\n"+
		"ispmux after the run: %d leases (status), %d durable bindings in its store; DHCP counters %s\n",
		r.RatioVsRelay, r.RatioVsDirect, r.ISPmuxFailPct, r.P99Ms, r.Clients, r.Rate, r.DurationS,
		r.ISPmuxLeases, r.ISPmuxDurableBindings, countersString(r.ISPmuxDHCP))
	for _, c := range r.Cases {
		if c.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", c.Name, c.Error)
		}
	}
	return err
}

func countersString(m map[string]uint64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(s, " ")
}

// Markdown renders dhcp.md: the table, the commands and the notes.
func (r *DHCPResult) Markdown() string {
	var b strings.Builder
	b.WriteString("# ispmux DHCP benchmark\n\n")
	fmt.Fprintf(&b, "Run %s on %d CPUs, kernel %s; %d clients, %g DORA starts/s offered for %gs per case, client timeout %gs with %d retransmissions. CPUs busy before the run: %s.\n\n",
		r.Started, r.CPUs, r.Kernel, r.Clients, r.Rate, r.DurationS, r.TimeoutS, r.Retries, pcts(r.BackgroundCPUPct))
	b.WriteString("| " + strings.Join(dhcpHeader, " | ") + " | CPUs busy | SUT CPU s | Kea CPU s |\n")
	b.WriteString("|---|" + strings.Repeat("---:|", len(dhcpHeader)+2) + "\n")
	for _, c := range r.Cases {
		row := append(dhcpRow(c), pcts(c.CPUBusyPct), fmtOpt(c.ProcCPUS, "%.2f"), fmtOpt(c.KeaCPUS, "%.2f"))
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	fmt.Fprintf(&b, "\nispmux / relay = **%.3f**, ispmux / kea direct = **%.3f**, ispmux fail %.2f %%, ispmux REQUEST→ACK p99 %.2f ms.\n\n",
		r.RatioVsRelay, r.RatioVsDirect, r.ISPmuxFailPct, r.P99Ms)
	fmt.Fprintf(&b, "ispmux after the run: %d leases (control socket status), %d of the generator's bindings durable in its store file (read after it exited).\n\nispmux DHCP counters: `%s`\n\n",
		r.ISPmuxLeases, r.ISPmuxDurableBindings, countersString(r.ISPmuxDHCP))
	fmt.Fprintf(&b, "Command:\n\n```\n%s\n```\n\nClient generator (cases ispmux and relay):\n\n```\n%s\n```\n\n", r.Command, r.Generator)
	b.WriteString("Cases:\n\n")
	for _, c := range r.Cases {
		fmt.Fprintf(&b, "- **%s**: %s — `%s`", c.Name, c.Description, c.Command)
		if len(c.FailReasons) > 0 {
			fmt.Fprintf(&b, " — failures by reason: %v", c.FailReasons)
		}
		if c.Error != "" {
			fmt.Fprintf(&b, " — **failed**: %s", c.Error)
		}
		b.WriteString("\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// writeDHCPOutputs writes dhcp.json, dhcp.md and dhcp.svg into dir.
func writeDHCPOutputs(dir string, r *DHCPResult) error {
	return writeFiles(dir, "dhcp", r, func(w io.Writer) error {
		bars := []Bar{{"ispmux", r.ISPmuxDORA}, {"dhcrelay", r.RelayDORA}, {"Kea direct", r.KeaDirectDORA}}
		title := fmt.Sprintf("Completed DORA/s, %d clients, %g/s offered", r.Clients, r.Rate)
		return writeBarChart(w, title, "DORA exchanges per second", "DORA/s", bars)
	})
}
