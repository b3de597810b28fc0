package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ispmux/ispmux/internal/shellquote"
	"github.com/ispmux/ispmux/lab"
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
	legs           bool
	idlePoll       bool
	keaRealtime    bool
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
	fs.BoolVar(&o.legs, "legs", true, "at the fixed rates, time each message at the generator's and Kea's interfaces: the relay's part of each exchange apart from Kea's")
	fs.BoolVar(&o.idlePoll, "idle-poll", true, "idle CPUs poll instead of halting during the run (PM QoS /dev/cpu_dma_latency = 0), for every case alike")
	fs.BoolVar(&o.keaRealtime, "kea-realtime", true, "Kea (the ISP, on the generator's CPU) runs SCHED_FIFO, ahead of the generator as if on a CPU of its own; false: nice -10 only")
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
	setUsage(fs, stderr, "usage: ispmux bench dhcp [--clients 4000] [--rates 100,500,2000] [--duration 10s] [--runs 5] [--search=true] [--outage 10000] [--json] [--id benchdh] [--out DIR] [--keep]")
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

	// Legs splits the fixed rates' exchanges into the relay's part and
	// the ISP server's (--legs).
	Legs *DHCPLegs `json:"legs,omitempty"`

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
	if o.idlePoll {
		release, note, err := holdCPULatency()
		if err != nil {
			return fmt.Errorf("bench dhcp: --idle-poll: %w", err)
		}
		defer release()
		r.IdlePoll = true
		r.Notes = append(r.Notes, note)
	}

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
	r.Generator = shellquote.Join(d.genArgv(genRun{clients: o.clients, rate: o.topRate(), duration: o.duration}))
	r.ISPmuxCommand = shellquote.Join(d.ispmuxArgv("CONFIG"))
	r.RelayCommand = shellquote.Join(d.relayArgv())
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
			Command:     shellquote.Join(d.perfdhcpArgv(o.topRate()))}
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
