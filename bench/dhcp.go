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
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/lab"
	"github.com/ispmux/ispmux/subscribers"
)

// bench dhcp: ispmux (relay agent with Option 82, ISP emulation, every
// binding durable before its ACK) against ISC dhcrelay with kernel
// forwarding, both in front of the same Kea and driven by the same L2
// client generator (RFC 2131 retransmissions: 4, 8, 16 s ± 1). Per run and
// system: latency and CPU per DORA at fixed rates, the capacity (highest
// rate with ≤ 1 % failed exchanges, found by a search) with the process
// that saturated, and an outage recovery (N subscribers start DORA within
// one second: time until 99.9 % are bound). Runs alternate the systems'
// order; the headline figures are medians over the runs with min and max.
// perfdhcp straight to Kea is measured once as a reference ceiling
// (dhcpperf.go).

// DHCP benchmark system and case names.
const (
	CaseDHCPISPmux    = "ispmux"
	CaseDHCPRelay     = "relay"
	CaseDHCPKeaDirect = "kea_direct"
)

// Phases of a DHCPCase.
const (
	PhaseRate   = "rate"   // a fixed offered rate
	PhaseSearch = "search" // a step of the capacity search
	PhaseOutage = "outage" // the outage recovery
	PhaseDirect = "direct" // perfdhcp straight to Kea
)

// dhcpOptions are the flags of `bench dhcp`.
type dhcpOptions struct {
	clients        int
	rates          []float64
	duration       time.Duration
	runs           int
	search         bool
	searchMin      float64
	searchMax      float64
	searchDuration time.Duration
	outage         int
	outageDefaults bool
	outageMax      time.Duration
	direct         bool
	timeout        time.Duration
	retries        int
	asJSON         bool
	id             string
	out            string
	keep           bool
	exe            string
	ispmuxExe      string
	baseExe        string // another ispmux build, case ispmux_base in every run
}

// CaseDHCPISPmuxBase is another ispmux build measured in the same runs
// (hidden --base: a before/after comparison with the same generator).
const CaseDHCPISPmuxBase = "ispmux_base"

// isISPmux reports whether system name is an ispmux build.
func isISPmux(name string) bool { return name == CaseDHCPISPmux || name == CaseDHCPISPmuxBase }

// failLimitPct is the capacity criterion: at most this share of failed
// exchanges (skipped starts included).
const failLimitPct = 1.0

// searchPrecision: the search stops when the lowest failing rate is within
// this factor of the highest passing one.
const searchPrecision = 1.1

func parseDHCP(args []string, stderr io.Writer) (*dhcpOptions, error) {
	fs := flag.NewFlagSet("bench dhcp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &dhcpOptions{}
	var rates string
	var rate float64
	fs.IntVar(&o.clients, "clients", 4000, "client MACs (02:20:...), each registered at ispmux, cycled over at the fixed rates and in the search")
	fs.StringVar(&rates, "rates", "100,500,2000", "fixed offered rates, DORA starts per second (comma-separated); CPU per DORA is compared at the highest")
	fs.Float64Var(&rate, "rate", 0, "one fixed rate (overrides --rates)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long exchanges are started at each fixed rate")
	fs.IntVar(&o.runs, "runs", 5, "runs (the systems' order alternates); headline figures are medians")
	fs.BoolVar(&o.search, "search", true, "search each system's capacity (highest rate with ≤ 1 % failed exchanges)")
	fs.Float64Var(&o.searchMin, "search-min", 1000, "the search's first rate")
	fs.Float64Var(&o.searchMax, "search-max", 32000, "the search's highest rate")
	fs.DurationVar(&o.searchDuration, "search-duration", 5*time.Second, "how long exchanges are started per search step")
	fs.IntVar(&o.outage, "outage", 10000, "outage recovery: subscribers starting DORA within one second (0: off)")
	fs.BoolVar(&o.outageDefaults, "outage-defaults", true, "also run the outage case once with ispmux's default [dhcp] limits")
	fs.DurationVar(&o.outageMax, "outage-max", 2*time.Minute, "the outage case gives up after this long")
	fs.BoolVar(&o.direct, "direct", true, "measure perfdhcp straight to Kea once (a reference ceiling, another client)")
	fs.DurationVar(&o.timeout, "timeout", 4*time.Second, "client's first retransmission wait, doubled at each (RFC 2131: 4, 8, 16 s ± 1)")
	fs.IntVar(&o.retries, "retries", 2, "client retransmissions per message")
	fs.BoolVar(&o.asJSON, "json", false, "print one JSON object instead of the table")
	fs.StringVar(&o.id, "id", "benchdh", "lab ID (namespace prefix)")
	fs.StringVar(&o.out, "out", "bench-out", "directory for dhcp.json, dhcp.md and dhcp.svg")
	fs.BoolVar(&o.keep, "keep", false, "leave the lab up afterwards")
	// Hidden: tests run a freshly built ispmux binary instead of
	// themselves; --ispmux runs another build for case ispmux only (a
	// before/after comparison with the same generator).
	fs.StringVar(&o.exe, "exe", "", "")
	fs.StringVar(&o.ispmuxExe, "ispmux", "", "")
	fs.StringVar(&o.baseExe, "base", "", "")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ispmux bench dhcp [--clients 4000] [--rates 100,500,2000] [--duration 10s] [--runs 5] [--search=true] [--outage 10000] [--json] [--id benchdh] [--out DIR] [--keep]")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Usage != "" {
				fmt.Fprintf(stderr, "  --%s (default %q)\n    \t%s\n", f.Name, f.DefValue, f.Usage)
			}
		})
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if rate != 0 {
		rates = strconv.FormatFloat(rate, 'f', -1, 64)
	}
	for _, f := range strings.Split(rates, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v < 1 || v > 100000 {
			return nil, fmt.Errorf("bench dhcp: --rates: %q: want rates in 1..100000", f)
		}
		o.rates = append(o.rates, v)
	}
	sort.Float64s(o.rates)
	switch {
	case fs.NArg() != 0:
		return nil, fmt.Errorf("bench dhcp: unexpected arguments %q", fs.Args())
	case o.clients < 1 || o.clients > maxGenClients:
		return nil, fmt.Errorf("bench dhcp: --clients %d: want 1..%d", o.clients, maxGenClients)
	case len(o.rates) == 0 && !o.search && o.outage == 0:
		return nil, errors.New("bench dhcp: nothing to measure (no --rates, no --search, no --outage)")
	case o.duration < time.Second || o.duration > time.Hour || o.duration%time.Second != 0:
		return nil, fmt.Errorf("bench dhcp: --duration %v: want whole seconds, 1s..1h (perfdhcp's -p)", o.duration)
	case o.runs < 1 || o.runs > 50:
		return nil, fmt.Errorf("bench dhcp: --runs %d: want 1..50", o.runs)
	case o.search && (o.searchMin < 1 || o.searchMax < o.searchMin || o.searchMax > 100000):
		return nil, fmt.Errorf("bench dhcp: --search-min %g --search-max %g: want 1 <= min <= max <= 100000", o.searchMin, o.searchMax)
	case o.searchDuration < time.Second || o.searchDuration > 10*time.Minute:
		return nil, fmt.Errorf("bench dhcp: --search-duration %v: want 1s..10m", o.searchDuration)
	case o.outage < 0 || o.outage > maxGenClients:
		return nil, fmt.Errorf("bench dhcp: --outage %d: want 0..%d", o.outage, maxGenClients)
	case o.outageMax < 5*time.Second || o.outageMax > time.Hour:
		return nil, fmt.Errorf("bench dhcp: --outage-max %v: want 5s..1h", o.outageMax)
	case o.timeout < 10*time.Millisecond || o.timeout > 30*time.Second:
		return nil, fmt.Errorf("bench dhcp: --timeout %v: want 10ms..30s", o.timeout)
	case o.retries < 0 || o.retries > 10:
		return nil, fmt.Errorf("bench dhcp: --retries %d: want 0..10", o.retries)
	}
	return o, nil
}

// topRate is the highest fixed rate (0 without one): where CPU per DORA
// is compared.
func (o *dhcpOptions) topRate() float64 {
	if len(o.rates) == 0 {
		return 0
	}
	return o.rates[len(o.rates)-1]
}

// maxRate is the highest rate the clients are driven at.
func (o *dhcpOptions) maxRate() float64 {
	m := o.topRate()
	if o.search {
		m = max(m, o.searchMax)
	}
	return m
}

// DHCPCase is one measurement: one generator run (a fixed rate, a search
// step or the outage) against one system in one run, or perfdhcp.
type DHCPCase struct {
	Name        string `json:"name"`
	Phase       string `json:"phase"`
	Run         int    `json:"run,omitempty"` // 1-based
	Description string `json:"description,omitempty"`
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
	// LossPct is the capacity criterion: (failed + skipped) / (started +
	// skipped), in percent.
	LossPct  float64 `json:"loss_pct"`
	WallS    float64 `json:"wall_s"`
	DORAPerS float64 `json:"dora_per_s"` // Completed / WallS
	Stopped  string  `json:"stopped,omitempty"`

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
	// ProcCPUS is the system under test's CPU time (ispmux with its
	// store, dhcrelay: utime + stime of all its threads from
	// /proc/PID/stat); KeaCPUS Kea's, GenCPUS the client generator's.
	ProcCPUS *float64 `json:"proc_cpu_s"`
	KeaCPUS  *float64 `json:"kea_cpu_s"`
	GenCPUS  *float64 `json:"gen_cpu_s"`
	// CPUUsPerDORA is ProcCPUS per completed exchange, in µs.
	CPUUsPerDORA *float64 `json:"cpu_us_per_dora"`
	// UtilPct is each process's CPU time over the case's wall time, in
	// percent of one CPU; Saturated names the busiest (see saturated).
	UtilPct   map[string]float64 `json:"util_pct,omitempty"`
	Saturated string             `json:"saturated,omitempty"`

	// The outage case: Subscribers clients, Bound of them got an ACK;
	// BoundS is the time from the first start until the 99.9th
	// percentile client was bound (nil: never).
	Subscribers int      `json:"subscribers,omitempty"`
	Bound       int      `json:"bound,omitempty"`
	BoundS      *float64 `json:"bound_s,omitempty"`
	// Bound50S and Bound90S are the same for half and 90 % of them.
	Bound50S *float64 `json:"bound_50_s,omitempty"`
	Bound90S *float64 `json:"bound_90_s,omitempty"`
	Limits   string   `json:"limits,omitempty"`

	// KeaRcvbufDrops is how many datagrams the ISP's network namespace
	// dropped for a full socket receive buffer (Kea's) during the case
	// (Udp RcvbufErrors); nil when unknown. Drops there fail exchanges of
	// whichever system is measured.
	KeaRcvbufDrops *uint64 `json:"kea_rcvbuf_drops,omitempty"`

	Diagnostics map[string]any `json:"diagnostics,omitempty"`
	Error       string         `json:"error,omitempty"`
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
	if o.ispmuxExe == "" {
		o.ispmuxExe = o.exe
	}
	t0 := time.Now()
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "bench: [%4.0fs] "+format+"\n", append([]any{time.Since(t0).Seconds()}, a...)...)
	}
	r := newDHCPResult(o, args)

	var t *lab.Topology
	defer func() { err = errors.Join(err, teardown(ctx, "dhcp", o.id, tmp, o.keep, t != nil, logf)) }()

	// Kea (the ISP, not under test) shares the 2 CPUs with the generator
	// and the system under test; with the default 208 KiB receive buffer
	// it dropped messages whenever it was off CPU for a few tens of ms at
	// 2000/s (8212 drops in one run), failing exchanges of both systems.
	// A real ISP's server has its own CPUs: Kea's socket, made after this,
	// gets a larger buffer (the default is global, not per namespace).
	restore, rnote, err := raiseRmemDefault(keaRcvbuf)
	if err != nil {
		return fmt.Errorf("bench dhcp: %w", err)
	}
	defer restore()
	r.Notes = append(r.Notes, rnote)

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

	d := &dhcpBencher{o: o, t: t, b: &bencher{t: t, logf: logf}, logf: logf, tmp: tmp, keaDir: keaTmpfsDir(o.id, tmp)}
	if !o.keep {
		defer os.RemoveAll(d.keaDir)
	}
	r.Generator = shellQuote(d.genArgv(genRun{clients: o.clients, rate: o.topRate(), duration: o.duration}))
	r.ISPmuxCommand = shellQuote(d.ispmuxArgv("CONFIG"))
	r.RelayCommand = shellQuote(d.relayArgv())
	r.ISPmuxLimits = dhcpLimits(o.clients, o.maxRate(), o.retries)
	if o.outage > 0 {
		r.OutageLimits = dhcpLimits(o.outage, float64(o.outage), o.retries)
	}

	var failed []string
	record := func(c DHCPCase) {
		r.Cases = append(r.Cases, c)
		if c.Error != "" {
			failed = append(failed, fmt.Sprintf("%s/%s run %d", c.Name, c.Phase, c.Run))
		}
	}
	if o.direct && o.topRate() > 0 {
		c := DHCPCase{Name: CaseDHCPKeaDirect, Phase: PhaseDirect, Run: 1, OfferedRate: o.topRate(),
			Description: "perfdhcp as a relay (giaddr " + lab.RelayAddr + ") from the appliance namespace straight to Kea, pinned to CPU " + genCPU + ": a reference ceiling (another client: no retransmissions, a reply later than 1 s is a drop)",
			Command:     shellQuote(d.perfdhcpArgv(o.topRate()))}
		logf("kea_direct: perfdhcp at %g/s for %v", o.topRate(), o.duration)
		if err := d.runDirect(ctx, &c); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("bench dhcp: interrupted: %w", ctx.Err())
			}
			c.Error = err.Error()
			logf("kea_direct failed: %v", err)
		}
		record(c)
	}
	for run := 1; run <= o.runs; run++ {
		order := []string{CaseDHCPISPmux, CaseDHCPRelay}
		if o.baseExe != "" {
			order = append(order, CaseDHCPISPmuxBase)
		}
		if run%2 == 0 {
			slices.Reverse(order)
		}
		for _, sys := range order {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("bench dhcp: interrupted: %w", err)
			}
			logf("run %d/%d: %s", run, o.runs, sys)
			cases, err := d.runSystem(ctx, sys, run, r)
			for _, c := range cases {
				record(c)
			}
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("bench dhcp: interrupted: %w", ctx.Err())
				}
				c := DHCPCase{Name: sys, Phase: "setup", Run: run, Error: err.Error()}
				record(c)
				logf("run %d: %s failed: %v", run, sys, err)
			}
		}
		if run == 1 && o.outage > 0 && o.outageDefaults {
			logf("run 1: ispmux outage with its default [dhcp] limits")
			c := d.runOutage(ctx, CaseDHCPISPmux, run, true)
			record(c)
		}
	}
	r.finish()
	if err := writeDHCPOutputs(o.out, r); err != nil {
		return err
	}
	if err := emit(stdout, r, o.asJSON, o.out, "dhcp"); err != nil {
		return err
	}
	logf("done in %v", time.Since(t0).Round(time.Second))
	if len(failed) > 0 {
		return fmt.Errorf("bench dhcp: %s failed (details in %s/dhcp.json)", strings.Join(failed, ", "), o.out)
	}
	return nil
}

// keaTmpfsDir is where Kea's files go: /dev/shm when it is a tmpfs (else
// the scratch directory).
func keaTmpfsDir(id, tmp string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err == nil && st.Type == 0x01021994 { // TMPFS_MAGIC
		return filepath.Join("/dev/shm", "ispmux-bench-"+id+"-kea")
	}
	return filepath.Join(tmp, "kea")
}

// dhcpLimits is the [dhcp] table the benchmark gives ispmux for clients
// clients driven at up to rate DORA starts per second: per-circuit rate
// and bindings far above the load, and a per-MAC budget for a client's
// DORAs per second with every retransmission.
func dhcpLimits(clients int, rate float64, retries int) string {
	perMAC := 2 * (retries + 1) * int(math.Ceil(rate/float64(clients)))
	perMAC = min(1000, max(4, perMAC))
	return fmt.Sprintf("[dhcp]\ntimeout = \"4s\"\nmax_pending = %d\nmac_rate = %d\nmac_burst = %d\ncircuit_rate = %d\ncircuit_burst = %d\nmax_bindings_per_circuit = %d\n",
		max(4096, 4*clients, int(4*rate)), perMAC, 2*perMAC, 1<<20, 1<<20, max(4096, 2*clients))
}

// dhcpConfigTOML is the lab's configuration plus clients generator
// clients as DHCP subscribers of the first ISP on the generator's access
// port and the [dhcp] table limits ("": ispmux's defaults).
func dhcpConfigTOML(t *lab.Topology, stateDir string, clients int, limits string) []byte {
	var b bytes.Buffer
	b.Write(t.ConfigTOML(stateDir))
	q := strconv.Quote
	for i := range clients {
		fmt.Fprintf(&b, "\n[[subscriber]]\nmac = %s\nisp = %s\ncustomer_id = %s\naccess = %s\n",
			q(genMAC(i).String()), q(t.ISPs[0].Name), q(fmt.Sprintf("bench-%d", i+1)), q(t.Generator.Access))
	}
	if limits != "" {
		b.WriteString("\n" + limits)
	}
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
			c, res := d.step(ctx, s, run, PhaseRate, genRun{clients: d.o.clients, rate: rate, duration: d.o.duration, drain: fixedDrain(d.o.timeout)})
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
	c := DHCPCase{Name: s.name, Phase: phase, Run: run, OfferedRate: g.rate, Command: shellQuote(d.genArgv(g))}
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
	c := DHCPCase{Name: name, Phase: PhaseOutage, Run: run, OfferedRate: float64(n), Subscribers: n, Command: shellQuote(d.genArgv(g))}
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

// cpuMeter samples the machine's and some processes' CPU time.
type cpuMeter struct {
	at    time.Time
	cpu   ProcStat
	ticks map[int]uint64
}

func readCPU(pids ...int) cpuMeter {
	m := cpuMeter{at: time.Now(), ticks: map[int]uint64{}}
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
	return ptr(dhcpTicksS(sub(y, x)))
}

func dhcpTicksS(t uint64) float64 { return round(float64(t)/clockTicks, 2) }

// usPerDORA is cpuS seconds of CPU per completed exchange, in µs; nil
// without a figure or an exchange.
func usPerDORA(cpuS *float64, completed int) *float64 {
	if cpuS == nil || completed <= 0 {
		return nil
	}
	return ptr(round(*cpuS*1e6/float64(completed), 1))
}

// dhcpUtilPct is cpuS seconds of CPU over wallS seconds, in percent of one
// CPU.
func dhcpUtilPct(cpuS *float64, wallS float64) (float64, bool) {
	if cpuS == nil || wallS <= 0 {
		return 0, false
	}
	return round(100**cpuS/wallS, 1), true
}

// saturationPct: a process this busy (percent of one CPU) is saturated.
const saturationPct = 85

// saturatedProc names the busiest process of util (percent of one CPU) and
// whether it reached saturationPct: "kea 97%" or "none (ispmux 40%)".
func saturatedProc(util map[string]float64) string {
	best, bv := "", -1.0
	names := make([]string, 0, len(util))
	for n := range util {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if util[n] > bv {
			best, bv = n, util[n]
		}
	}
	if best == "" {
		return ""
	}
	if bv >= saturationPct {
		return fmt.Sprintf("%s %.0f%%", best, bv)
	}
	return fmt.Sprintf("none (%s %.0f%%)", best, bv)
}

// runGen runs the client generator to its end and fills c from its result;
// sutp is the system under test (CPU accounting; if it exits, the
// generator is stopped and the case fails).
func (d *dhcpBencher) runGen(ctx context.Context, c *DHCPCase, sutp *child, gr genRun) (*GenResult, error) {
	sut := sutp.pid()
	var out bytes.Buffer
	drops0, dropsErr := udpRcvbufErrors(d.kea)
	before := readCPU(sut, d.kea)
	progress := &dhcpProgressLines{prefix: "progress: ", logf: func(s string) { d.logf("  %s %s %g/s: %s", c.Name, c.Phase, gr.rate, s) }}
	g, err := startChildErr("dhcp-client-gen", d.genArgv(gr), &out, progress, syscall.SIGINT)
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
			if tk, err := treeTicks(genPid); err == nil {
				genTicks = tk
			}
		case <-sutp.done:
			_ = g.stop(syscall.SIGINT, 5*time.Second)
			return nil, fmt.Errorf("%s exited during the case: %v%s", sutp.name, sutp.err, sutp.tail())
		case <-ctx.Done():
			_ = g.stop(syscall.SIGINT, 5*time.Second)
			return nil, ctx.Err()
		}
	}
	after := readCPU(sut, d.kea)
	if drops1, err := udpRcvbufErrors(d.kea); err == nil && dropsErr == nil && drops1 >= drops0 {
		n := drops1 - drops0
		c.KeaRcvbufDrops = &n
	}
	if g.err != nil {
		return nil, fmt.Errorf("dhcp-client-gen: %v%s", g.err, g.tail())
	}
	var res GenResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("dhcp-client-gen output: %w%s", err, g.tail())
	}
	fillFromGen(c, &res)
	c.Stopped = res.Stopped
	c.CPUBusyPct = busyPct(before.cpu, after.cpu)
	c.ProcCPUS, c.KeaCPUS = procS(before, after, sut), procS(before, after, d.kea)
	c.GenCPUS = ptr(dhcpTicksS(genTicks))
	c.CPUUsPerDORA = usPerDORA(c.ProcCPUS, c.Completed)
	wall := after.at.Sub(before.at).Seconds()
	c.UtilPct = map[string]float64{}
	for name, v := range map[string]*float64{c.Name: c.ProcCPUS, "kea": c.KeaCPUS, "generator": c.GenCPUS} {
		if u, ok := dhcpUtilPct(v, wall); ok {
			c.UtilPct[strings.TrimSuffix(name, "_defaults")] = u
		}
	}
	c.Saturated = saturatedProc(c.UtilPct)
	if strings.HasPrefix(c.Saturated, "none") && len(c.CPUBusyPct) > 0 && slices.Min(c.CPUBusyPct) >= saturationPct {
		// No process of the case saturated, but every CPU was busy:
		// the machine (other load included) is the bound.
		c.Saturated = "machine (" + pcts(c.CPUBusyPct) + "; busiest process " + strings.TrimSuffix(strings.TrimPrefix(c.Saturated, "none ("), ")") + ")"
	}
	if c.KeaRcvbufDrops != nil && *c.KeaRcvbufDrops > 0 {
		d.logf("%s %s %g/s: Kea's namespace dropped %d datagrams for a full receive buffer", c.Name, c.Phase, gr.rate, *c.KeaRcvbufDrops)
	}
	if c.Completed == 0 {
		d.logf("no exchange completed: generator sent %d frames (%d errors), received %d (%d ignored)", res.TxFrames, res.TxErrors, res.RxFrames, res.RxIgnore)
	}
	return &res, nil
}

// dhcpProgressLines passes the lines that start with prefix to logf (without
// it), and everything to also.
type dhcpProgressLines struct {
	prefix string
	logf   func(string)
	also   io.Writer
	buf    []byte
}

func (l *dhcpProgressLines) Write(p []byte) (int, error) {
	if l.also != nil {
		_, _ = l.also.Write(p)
	}
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		line := string(l.buf[:i])
		l.buf = l.buf[i+1:]
		if s, ok := strings.CutPrefix(line, l.prefix); ok {
			l.logf(s)
		}
	}
	if len(l.buf) > 4096 {
		l.buf = l.buf[:0]
	}
	return len(p), nil
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
	c.LossPct = pct(c.Failed+c.Skipped, c.Exchanges+c.Skipped)
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
	// Kea's lease file and log go to a tmpfs (keaDir), not the disk that
	// ispmux fsyncs: an ISP's server does not share the appliance's disk,
	// and Kea's file appends must not depend on ispmux's journal commits.
	if err := os.RemoveAll(d.keaDir); err != nil {
		return err
	}
	if err := os.MkdirAll(d.keaDir, 0o755); err != nil {
		return err
	}
	cfg, err := keaConfigOn(isp.KeaConfig, d.keaDir)
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(d.keaDir, "kea.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", isp.NS, "kea-dhcp4", "-c", cfg)
	cmd.Env = append(os.Environ(), "KEA_PIDFILE_DIR="+d.keaDir, "KEA_LOCKFILE_DIR="+d.keaDir, "KEA_LOGGER_DESTINATION="+filepath.Join(d.keaDir, "kea.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start kea-dhcp4: %w", err)
	}
	go func() { _ = cmd.Wait() }() // lab.Down kills it
	d.kea = cmd.Process.Pid        // ip netns exec execs kea-dhcp4
	if err := d.waitUDP67(ctx, isp.NS, "kea-dhcp4"); err != nil {
		return err
	}
	// Kea is the ISP, not under test: a real one has its own CPUs. Here
	// it shares 2 with the generator and the system under test; left to
	// the scheduler it fell behind in some runs (its socket overflowing
	// with both CPUs half idle), its clients' retransmissions fed the
	// backlog and exchanges of the system measured failed. It runs on the
	// generator's CPU, never the measured system's, ahead of the generator.
	gen, _ := strconv.Atoi(genCPU)
	return placeThreads(d.kea, keaNice, gen)
}

// keaConfigOn writes a copy of the Kea configuration at path with its
// lease file and log files in dir, and returns the copy's path.
func keaConfigOn(path, dir string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	d4, _ := m["Dhcp4"].(map[string]any)
	if d4 == nil {
		return "", fmt.Errorf("%s: no Dhcp4", path)
	}
	if ldb, _ := d4["lease-database"].(map[string]any); ldb != nil {
		ldb["name"] = filepath.Join(dir, "leases4.csv")
	}
	loggers, _ := d4["loggers"].([]any)
	for _, l := range loggers {
		lm, _ := l.(map[string]any)
		outs, _ := lm["output_options"].([]any)
		for _, o := range outs {
			if om, _ := o.(map[string]any); om != nil {
				if out, _ := om["output"].(string); strings.HasPrefix(out, "/") {
					om["output"] = filepath.Join(dir, "kea.log")
				}
			}
		}
	}
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "kea.json")
	return p, os.WriteFile(p, out, 0o644)
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

// runDirect measures case kea_direct: perfdhcp straight to Kea.
func (d *dhcpBencher) runDirect(ctx context.Context, c *DHCPCase) (err error) {
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
	p, err := startChild("perfdhcp", d.perfdhcpArgv(c.OfferedRate), &out, syscall.SIGINT)
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
