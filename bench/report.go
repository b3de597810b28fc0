package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is what the lab benchmarks' results share: the machine's load
// before the run (backgroundLoad) and notes.
type Result struct {
	// BackgroundCPUPct is each CPU's busy share while the lab was up but
	// idle, measured just before the cases: other load on the machine,
	// which the whole-machine CPU figures include.
	BackgroundCPUPct []float64 `json:"background_cpu_pct"`
	Notes            []string  `json:"notes"`
}

// ForwardResult is bench forward's outcome: forward.json and --json. The
// keys of issue 11 (sweep, ratio_vs_kernel, ratio_vs_bare) keep their
// meaning; the rest is detail.
type ForwardResult struct {
	Benchmark string `json:"benchmark"` // "forward"
	// Sweep has one row per (sources, offered rate): medians over the runs
	// of CPU ns per forwarded packet per case, the cases' no-drop rates
	// (per sources, repeated in each of its rows) and whether the
	// generator bounded anything in the row.
	Sweep []SweepRow `json:"sweep"`
	// RatioVsKernel and RatioVsBare are the nftables kernel's and the bare
	// forwarder's CPU per packet divided by ispmux's at 256 sources (the
	// smallest sweep point if 256 was not measured), the lowest over that
	// point's offered rates; higher is better for ispmux. 0: not measured.
	RatioVsKernel float64  `json:"ratio_vs_kernel"`
	RatioVsBare   float64  `json:"ratio_vs_bare"`
	Targets       []Target `json:"targets"`

	Runs         int        `json:"runs"`
	DurationS    float64    `json:"duration_s"`
	WarmupS      float64    `json:"warmup_s"`
	NDRLossPct   float64    `json:"ndr_loss_pct"`
	NDRDurationS float64    `json:"ndr_duration_s"`
	Rates        []float64  `json:"rates"`
	Sources      []int      `json:"sources"`
	FrameBytes   int        `json:"frame_bytes"`
	CPUs         int        `json:"cpus"`
	Kernel       string     `json:"kernel,omitempty"`
	Started      string     `json:"started"`
	Finished     string     `json:"finished,omitempty"`
	LoadBefore   string     `json:"load_before,omitempty"` // /proc/loadavg before and after the run
	LoadAfter    string     `json:"load_after,omitempty"`
	Command      string     `json:"command"`
	Generator    string     `json:"generator"`
	Cases        []CaseInfo `json:"cases"`
	Calibration  []CalRow   `json:"calibration"`
	// Points are the sweep points' set-up: how ispmux held the sources,
	// how long its store took to seed, the kernel's map to load and
	// ispmux to be ready in each run.
	Points []PointInfo `json:"points"`
	// Quiet summarises the machine's load before the trials.
	Quiet *QuietSummary `json:"quiet,omitempty"`
	NDR   []NDRRow      `json:"ndr"`
	Result
	// Sessions are the bench forward invocations whose trials this result
	// holds (--merge adds the sweep points of an earlier one).
	Sessions    []Session    `json:"sessions"`
	Errors      []string     `json:"errors,omitempty"`
	Trials      []Trial      `json:"trials"`
	NDRRuns     []NDRRun     `json:"ndr_runs"`
	Diagnostics []Diagnostic `json:"diagnostics,omitempty"`
}

// SweepRow is one row of the sweep. The *_ns_per_pkt and *_ndr_pps keys
// are issue 11's; NsPerPkt, LossPct and Offered carry every case with min
// and max.
type SweepRow struct {
	Sources             int      `json:"sources"`
	OfferedPPS          float64  `json:"offered_pps"`
	ISPmuxNsPerPkt      *float64 `json:"ispmux_ns_per_pkt"`
	KernelNsPerPkt      *float64 `json:"kernel_ns_per_pkt"`
	BareNsPerPkt        *float64 `json:"bare_ns_per_pkt"`
	KernelRulesNsPerPkt *float64 `json:"kernel_rules_ns_per_pkt"`
	ISPmuxNDRPPS        float64  `json:"ispmux_ndr_pps"`
	KernelNDRPPS        float64  `json:"kernel_ndr_pps"`
	BareNDRPPS          float64  `json:"bare_ndr_pps"`
	// GeneratorBound: the generator bounded something in this row — it
	// could not offer the row's rate (RateGeneratorBound), or a case's
	// no-drop rate is only known to be at least its ceiling.
	GeneratorBound     bool             `json:"generator_bound"`
	RateGeneratorBound bool             `json:"rate_generator_bound"`
	RatioVsKernel      *float64         `json:"ratio_vs_kernel"`
	RatioVsBare        *float64         `json:"ratio_vs_bare"`
	NsPerPkt           map[string]*Stat `json:"ns_per_pkt"`
	LossPct            map[string]*Stat `json:"loss_pct"`
	Offered            map[string]*Stat `json:"offered_actual_pps"`
}

// NDRRow is a case's no-drop rate at one sweep point over the runs.
type NDRRow struct {
	Case    string `json:"case"`
	Sources int    `json:"sources"`
	PPS     *Stat  `json:"pps"`
	// GeneratorBound: in most runs the case kept up with all the generator
	// could send, so the figure is a lower bound (≥ ceiling).
	GeneratorBound bool `json:"generator_bound"`
}

// CalRow is the calibration at one sweep point and rate: the whole
// machine's busy CPU seconds per second with the generator alone.
type CalRow struct {
	Sources    int     `json:"sources"`
	OfferedPPS float64 `json:"offered_pps"` // 0: flat out
	BusyPerS   *Stat   `json:"busy_cpu_s_per_s"`
	Offered    *Stat   `json:"offered_actual_pps"`
}

// Session is one invocation of bench forward.
type Session struct {
	Command    string `json:"command"`
	Sources    []int  `json:"sources"`
	Started    string `json:"started"`
	Finished   string `json:"finished,omitempty"`
	LoadBefore string `json:"load_before,omitempty"`
	LoadAfter  string `json:"load_after,omitempty"`
}

// merge adds the sweep points of an earlier result prev that this one did
// not measure again (a point measured by both is this one's). The rates,
// the frame and the no-drop loss must agree; the cases are the union.
func (r *ForwardResult) merge(prev *ForwardResult) error {
	if prev.Benchmark != "forward" || !slicesEqualF(prev.Rates, r.Rates) || prev.FrameBytes != r.FrameBytes || prev.NDRLossPct != r.NDRLossPct {
		return fmt.Errorf("bench forward: --merge: the earlier result has other rates, frame size or no-drop loss (%v, %d, %g; now %v, %d, %g)",
			prev.Rates, prev.FrameBytes, prev.NDRLossPct, r.Rates, r.FrameBytes, r.NDRLossPct)
	}
	mine := map[int]bool{}
	for _, n := range r.Sources {
		mine[n] = true
	}
	var trials []Trial
	for _, t := range prev.Trials {
		if !mine[t.Sources] {
			trials = append(trials, t)
		}
	}
	r.Trials = append(trials, r.Trials...)
	var ndr []NDRRun
	for _, x := range prev.NDRRuns {
		if !mine[x.Sources] {
			ndr = append(ndr, x)
		}
	}
	r.NDRRuns = append(ndr, r.NDRRuns...)
	var pts []PointInfo
	for _, x := range prev.Points {
		if !mine[x.Sources] {
			pts = append(pts, x)
		}
	}
	r.Points = append(pts, r.Points...)
	var diags []Diagnostic
	for _, x := range prev.Diagnostics {
		if !mine[x.Sources] {
			diags = append(diags, x)
		}
	}
	r.Diagnostics = append(diags, r.Diagnostics...)
	var errs []string
	for _, e := range prev.Errors {
		keep := true
		for n := range mine {
			if strings.Contains(e, ", "+sizeLabel(n)+" sources") {
				keep = false
			}
		}
		if keep {
			errs = append(errs, e)
		}
	}
	r.Errors = append(errs, r.Errors...)
	sources := append([]int(nil), r.Sources...)
	for _, n := range prev.Sources {
		if !mine[n] {
			sources = append(sources, n)
		}
	}
	sort.Ints(sources)
	r.Sources = sources
	have := map[string]bool{}
	for _, c := range r.Cases {
		have[c.Name] = true
	}
	for _, c := range prev.Cases {
		if !have[c.Name] {
			r.Cases = append(r.Cases, c)
		}
	}
	order := map[string]int{}
	for i, c := range append(append([]string(nil), allCases...), CaseCalibration) {
		order[c] = i
	}
	sort.SliceStable(r.Cases, func(i, j int) bool { return order[r.Cases[i].Name] < order[r.Cases[j].Name] })
	r.Runs = min(r.Runs, prev.Runs)
	var sess []Session
	for _, x := range prev.Sessions {
		if slicesAny(x.Sources, func(n int) bool { return !mine[n] }) {
			sess = append(sess, x)
		}
	}
	r.Sessions = append(sess, r.Sessions...)
	if prev.Started < r.Started && len(sess) > 0 {
		r.Started = prev.Started
	}
	for _, n := range prev.Notes {
		if strings.HasPrefix(n, "Warning:") && !containsStr(r.Notes, n) {
			r.Notes = append(r.Notes, n)
		}
	}
	return nil
}

func slicesEqualF(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func slicesAny(l []int, f func(int) bool) bool {
	for _, x := range l {
		if f(x) {
			return true
		}
	}
	return false
}

// PointInfo is a sweep point's set-up.
type PointInfo struct {
	Sources      int       `json:"sources"`
	Bindings     string    `json:"bindings"` // static or store
	SeedS        float64   `json:"store_seed_s,omitempty"`
	NFTLoadS     float64   `json:"nft_map_load_s,omitempty"`
	ISPmuxReadyS []float64 `json:"ispmux_ready_s,omitempty"`
}

// QuietSummary is the machine's background load before the trials: the
// busy CPU-seconds per second without traffic, and how many trials ran
// although the machine was not quiet.
type QuietSummary struct {
	Trials         int   `json:"trials"`
	Noisy          int   `json:"noisy"`
	BackgroundBusy *Stat `json:"background_cpu_s_per_s"`
	OthersCPU      *Stat `json:"others_cpu_s_per_s"`
}

// CaseInfo describes a system under test.
type CaseInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Command     string `json:"command,omitempty"`
}

// Target is one of issue 11's targets and how this run fared.
type Target struct {
	Name string  `json:"name"`
	Want string  `json:"want"`
	Got  float64 `json:"got"`
	Met  bool    `json:"met"`
	Note string  `json:"note,omitempty"`
}

// Trial is one measured window.
type Trial struct {
	Case         string    `json:"case"`
	Sources      int       `json:"sources"`
	Run          int       `json:"run"`
	Rate         float64   `json:"rate"` // requested pps; 0 = flat out
	Kind         string    `json:"kind"` // fixed, ndr, ceiling
	WindowS      float64   `json:"window_s"`
	Offered      uint64    `json:"offered"`
	Refused      uint64    `json:"refused"`
	Forwarded    uint64    `json:"forwarded"`
	OfferedPPS   float64   `json:"offered_pps"`
	ForwardedPPS float64   `json:"forwarded_pps"`
	LossPct      float64   `json:"loss_pct"`
	BusyS        float64   `json:"busy_cpu_s"`
	SampledBusyS float64   `json:"sampled_busy_cpu_s"`
	CPUBusyPct   []float64 `json:"cpu_busy_pct"`
	ProcCPUS     *float64  `json:"proc_cpu_s,omitempty"`
	NsPerPkt     *float64  `json:"ns_per_pkt,omitempty"`
	// BackgroundBusy is the machine's busy CPU-seconds per second just
	// before the trial, without traffic; Noisy: it was above --quiet-max
	// after --quiet-wait (other load on the machine).
	BackgroundBusy float64 `json:"background_cpu_s_per_s"`
	// OthersCPU is the CPU-seconds per second other user-space processes
	// used during the window (processes that came and went within it are
	// missed); Noisy also when it exceeded --quiet-max after the retries.
	OthersCPU float64 `json:"others_cpu_s_per_s"`
	Noisy     bool    `json:"noisy,omitempty"`
	Attempts  int     `json:"attempts,omitempty"`
}

// NDRRun is one run's no-drop rate search.
type NDRRun struct {
	Case    string    `json:"case"`
	Sources int       `json:"sources"`
	Run     int       `json:"run"`
	Result  ndrResult `json:"result"`
}

// Diagnostic is ispmux's port counters after a run.
type Diagnostic struct {
	Case    string          `json:"case"`
	Sources int             `json:"sources"`
	Run     int             `json:"run"`
	Ports   json.RawMessage `json:"ports"`
}

// caseDescriptions are the systems under test.
var caseDescriptions = map[string]string{
	CaseISPmux: "ispmux pinned to CPU " + fwdCPU + ", every source a binding on acc1 (static [[subscriber]] entries up to 100,000, else restored from the store; MAC lookup, anti-spoofing, next hop, TTL and checksum, new L2 header), " +
		"one worker over four AF_XDP ports in copy mode (veth allows no zero-copy)",
	CaseKernel: "Linux as an operator would build it: an nftables map MAC . address → mark at prerouting priority raw (notrack; a source not in the map is dropped: anti-spoofing in the same lookup), " +
		"one ip rule per ISP (fwmark → the ISP's table), RPS moving forwarding from the generator's CPU to CPU " + fwdCPU + " (lab.Topology.NFTRouter)",
	CaseKernelRules: "Linux with one ip rule per subscriber source (from ADDRESS lookup TABLE; no anti-spoofing) and the same RPS, the router the benchmark used before; only for small sweep points, the rule list is searched linearly (lab.Topology.RuleRouter)",
	CaseBare:        "a bare AF_XDP forwarder on package datapath with ispmux's ports and worker, MAC rewrite only, spreading the sources over both uplinks as ispmux does (by the MAC's last byte), pinned to CPU " + fwdCPU + ": the ceiling of this path",
	CaseCalibration: "the generator alone at the same rate: the appliance's acc1 drops the frames at netdev ingress (nftables), nothing forwards, no XDP program is attached; subtracted from every case",
}

// caseTitles are the cases' column titles.
var caseTitles = map[string]string{
	CaseISPmux:      "ispmux",
	CaseKernel:      "kernel (nftables map)",
	CaseKernelRules: "kernel (rule per subscriber)",
	CaseBare:        "bare AF_XDP",
}

func newForwardResult(o *forwardOptions, args []string) *ForwardResult {
	r := &ForwardResult{
		Benchmark: "forward", Runs: o.runs, DurationS: o.duration.Seconds(), WarmupS: o.warmup.Seconds(),
		NDRLossPct: o.ndrLoss, NDRDurationS: o.ndrDuration.Seconds(), Rates: o.rates, Sources: o.sources,
		FrameBytes: frameBytes, CPUs: runtime.NumCPU(), Kernel: kernelRelease(), Started: time.Now().UTC().Format(time.RFC3339),
		Command: shellQuote(append([]string{"ispmux", "bench", "forward"}, args...)),
	}
	for _, c := range append(append([]string(nil), o.cases...), CaseCalibration) {
		r.Cases = append(r.Cases, CaseInfo{Name: c, Description: caseDescriptions[c]})
	}
	r.Notes = []string{
		"CPU per packet: the whole machine's busy CPU time (both CPUs, softirq included; /proc/stat, busy = elapsed − idle per CPU) per second of the window, minus the calibration's at the same offered rate in the same run, divided by the packets forwarded per second. It charges each case for everything it makes the machine do: the XDP receive and copies on the generator's CPU, the forwarder's process, the kernel's softirq work on either CPU, the ISP router's receive.",
		fmt.Sprintf("The generator (`ispmux bench forward-gen`, pinned to CPU %s in its own namespace) is one AF_PACKET socket with the qdisc bypassed: sendmmsg(2) of 60-byte UDP frames (64 on the wire), paced to the offered rate in bursts due every %v. Packet i comes from source (i·s) mod N (s odd, ≈ 0.618·N, coprime with N): every source once per N packets, in an order with no locality. Source k is MAC 02:11:k₃:k₂:k₁:k₀ with address 100.80.0.0 + k at ISP k mod 2 — a binding in ispmux (see the set-up table) and an element of the kernel's map, by construction. trafgen, which the benchmark used before, enumerated sources as one packet block each, all kept in memory (a million blocks is not practical); its dinc() counters could walk MAC and address fields in lockstep, but it paces with per-packet gaps and its counters cannot be read at a window's edges, which the CPU figure needs.", genCPU, o.tick),
		"Offered = frames the generator handed to the kernel (refused ones included: a full ring of the forwarder's port refuses them); forwarded = frames the ISP routers received (their eth0 rx_packets), which drop the benchmark's destination 198.18.0.0/15 at netdev ingress (the same for every case).",
		fmt.Sprintf("No-drop rate: the highest offered rate forwarded with at most %g %% loss (zero is not measurable on a shared VM: one 10 ms stall overflows a ring), by a search: flat out first, then bisection between the fixed rates that passed and failed, %gs per trial. \"≥\" marks a case that kept up with all the generator could send (generator-bound).", o.ndrLoss, o.ndrDuration.Seconds()),
		"veth binds AF_XDP in copy mode only and runs XDP for a veth in the sender's softirq: these figures say nothing about a NIC with zero-copy AF_XDP.",
		fmt.Sprintf("Interleaved: within each sweep point, every run measures the calibration and then every case, each run starting with another case; figures are the median of the %d runs with [min–max].", o.runs),
	}
	return r
}

// calibration returns the calibration trial of (n, run, rate).
func (r *ForwardResult) calibration(n, run int, rate float64) *Trial {
	for i := range r.Trials {
		t := &r.Trials[i]
		if t.Case == CaseCalibration && t.Sources == n && t.Run == run && t.Rate == rate {
			return t
		}
	}
	return nil
}

// finish computes the sweep, the no-drop rates, the calibration rows, the
// ratios and the targets from the trials.
func (r *ForwardResult) finish() {
	r.Sweep, r.NDR, r.Calibration = nil, nil, nil
	var cases []string
	for _, c := range r.Cases {
		if c.Name != CaseCalibration {
			cases = append(cases, c.Name)
		}
	}
	ndrs := map[string]NDRRow{}
	for _, n := range r.Sources {
		for _, c := range cases {
			var pps []float64
			bound := 0
			for _, nr := range r.NDRRuns {
				if nr.Case == c && nr.Sources == n {
					pps = append(pps, nr.Result.PPS)
					if nr.Result.GeneratorBound {
						bound++
					}
				}
			}
			if len(pps) == 0 {
				continue
			}
			row := NDRRow{Case: c, Sources: n, PPS: stat(pps), GeneratorBound: 2*bound > len(pps)}
			ndrs[fmt.Sprint(c, n)] = row
			r.NDR = append(r.NDR, row)
		}
	}
	for _, n := range r.Sources {
		for _, rate := range append(append([]float64(nil), r.Rates...), 0) {
			var busy, off []float64
			for _, t := range r.Trials {
				if t.Case == CaseCalibration && t.Sources == n && t.Rate == rate && t.WindowS > 0 {
					busy = append(busy, round(t.BusyS/t.WindowS, 3))
					off = append(off, t.OfferedPPS)
				}
			}
			if len(busy) > 0 {
				r.Calibration = append(r.Calibration, CalRow{Sources: n, OfferedPPS: rate, BusyPerS: stat(busy), Offered: stat(off)})
			}
		}
		for _, rate := range r.Rates {
			row := SweepRow{Sources: n, OfferedPPS: rate, NsPerPkt: map[string]*Stat{}, LossPct: map[string]*Stat{}, Offered: map[string]*Stat{}}
			for _, c := range append(append([]string(nil), cases...), CaseCalibration) {
				var ns, loss, off []float64
				for _, t := range r.Trials {
					if t.Case != c || t.Sources != n || t.Rate != rate || t.Kind != "fixed" {
						continue
					}
					if t.NsPerPkt != nil {
						ns = append(ns, *t.NsPerPkt)
					}
					loss = append(loss, t.LossPct)
					off = append(off, t.OfferedPPS)
				}
				if len(off) == 0 {
					continue
				}
				if s := stat(ns); s != nil {
					row.NsPerPkt[c] = s
				}
				if c != CaseCalibration {
					row.LossPct[c] = stat(loss)
				}
				row.Offered[c] = stat(off)
				if stat(off).Median < 0.97*rate {
					row.RateGeneratorBound = true
				}
			}
			med := func(c string) *float64 {
				if s := row.NsPerPkt[c]; s != nil {
					return ptr(round(s.Median, 1))
				}
				return nil
			}
			row.ISPmuxNsPerPkt, row.KernelNsPerPkt, row.BareNsPerPkt, row.KernelRulesNsPerPkt = med(CaseISPmux), med(CaseKernel), med(CaseBare), med(CaseKernelRules)
			ndr := func(c string) float64 {
				if x, ok := ndrs[fmt.Sprint(c, n)]; ok {
					if x.GeneratorBound {
						row.GeneratorBound = true
					}
					return round(x.PPS.median(), 0)
				}
				return 0
			}
			row.ISPmuxNDRPPS, row.KernelNDRPPS, row.BareNDRPPS = ndr(CaseISPmux), ndr(CaseKernel), ndr(CaseBare)
			_ = ndr(CaseKernelRules)
			row.GeneratorBound = row.GeneratorBound || row.RateGeneratorBound
			ratio := func(other *float64) *float64 {
				if other == nil || row.ISPmuxNsPerPkt == nil || *row.ISPmuxNsPerPkt <= 0 {
					return nil
				}
				return ptr(round(*other / *row.ISPmuxNsPerPkt, 3))
			}
			row.RatioVsKernel, row.RatioVsBare = ratio(row.KernelNsPerPkt), ratio(row.BareNsPerPkt)
			r.Sweep = append(r.Sweep, row)
		}
	}
	noisy, bgs, others := 0, []float64{}, []float64{}
	for _, t := range r.Trials {
		bgs = append(bgs, t.BackgroundBusy)
		others = append(others, t.OthersCPU)
		if t.Noisy {
			noisy++
		}
	}
	r.Quiet = nil
	if len(r.Trials) > 0 {
		r.Quiet = &QuietSummary{Trials: len(r.Trials), Noisy: noisy, BackgroundBusy: stat(bgs), OthersCPU: stat(others)}
	}
	r.RatioVsKernel, r.RatioVsBare = 0, 0
	head := 256
	if !containsInt(r.Sources, head) && len(r.Sources) > 0 {
		head = slicesMin(r.Sources)
	}
	lowest := func(get func(SweepRow) *float64, only int) (float64, bool) {
		v, ok := math.Inf(1), false
		for _, row := range r.Sweep {
			if x := get(row); x != nil && (only == 0 || row.Sources == only) {
				v, ok = math.Min(v, *x), true
			}
		}
		return v, ok
	}
	vk := func(s SweepRow) *float64 { return s.RatioVsKernel }
	vb := func(s SweepRow) *float64 { return s.RatioVsBare }
	if v, ok := lowest(vk, head); ok {
		r.RatioVsKernel = v
	}
	if v, ok := lowest(vb, head); ok {
		r.RatioVsBare = v
	}
	r.Targets = nil
	if v, ok := lowest(vk, 0); ok {
		r.Targets = append(r.Targets, Target{Name: "ispmux CPU/pkt ≤ 1/1.3 of the nftables kernel's at every sweep point",
			Want: "kernel ÷ ispmux ≥ 1.30 in every row", Got: round(v, 3), Met: v >= 1.3, Note: "lowest row"})
	}
	if v, ok := lowest(vb, 0); ok && v > 0 {
		x := round(1/v, 3)
		r.Targets = append(r.Targets, Target{Name: "ispmux CPU/pkt ≤ 1.05× the bare forwarder's at every sweep point",
			Want: "ispmux ÷ bare ≤ 1.05 in every row", Got: x, Met: x <= 1.05, Note: "highest row"})
	}
}

func containsInt(l []int, x int) bool {
	for _, v := range l {
		if v == x {
			return true
		}
	}
	return false
}

func slicesMin(l []int) int {
	m := l[0]
	for _, v := range l[1:] {
		m = min(m, v)
	}
	return m
}

// JSON returns the result as indented JSON with a trailing newline.
func (r *ForwardResult) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// fmtStat renders "812 [790–845]" (one figure when min = max or n = 1).
func fmtStat(s *Stat, format string) string {
	if s == nil {
		return "–"
	}
	m := fmt.Sprintf(format, s.Median)
	lo, hi := fmt.Sprintf(format, s.Min), fmt.Sprintf(format, s.Max)
	if s.N <= 1 || lo == hi {
		return m
	}
	return m + " [" + lo + "–" + hi + "]"
}

func fmtRatio(f *float64) string {
	if f == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f", *f)
}

// casesOf lists the result's cases other than the calibration.
func (r *ForwardResult) casesOf() []string {
	var cs []string
	for _, c := range r.Cases {
		if c.Name != CaseCalibration {
			cs = append(cs, c.Name)
		}
	}
	return cs
}

func (r *ForwardResult) ndrRow(c string, n int) (NDRRow, bool) {
	for _, x := range r.NDR {
		if x.Case == c && x.Sources == n {
			return x, true
		}
	}
	return NDRRow{}, false
}

func fmtNDR(x NDRRow, ok bool) string {
	if !ok || x.PPS == nil {
		return "–"
	}
	s := humanPPS(x.PPS.Median)
	if x.GeneratorBound {
		s = "≥ " + s
	}
	if x.PPS.N > 1 && humanPPS(x.PPS.Min) != humanPPS(x.PPS.Max) {
		s += " [" + humanPPS(x.PPS.Min) + "–" + humanPPS(x.PPS.Max) + "]"
	}
	return s
}

// WriteTable writes the human-readable summary.
func (r *ForwardResult) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	cs := r.casesOf()
	fmt.Fprint(tw, "sources\toffered pps")
	for _, c := range cs {
		fmt.Fprintf(tw, "\t%s ns/pkt", c)
	}
	fmt.Fprintln(tw, "\tkernel÷ispmux\tbare÷ispmux\t")
	for _, row := range r.Sweep {
		fmt.Fprintf(tw, "%s\t%s", sizeLabel(row.Sources), humanPPS(row.OfferedPPS))
		for _, c := range cs {
			fmt.Fprintf(tw, "\t%s", fmtStat(row.NsPerPkt[c], "%.0f"))
		}
		fmt.Fprintf(tw, "\t%s\t%s\t\n", fmtRatio(row.RatioVsKernel), fmtRatio(row.RatioVsBare))
	}
	if len(r.NDR) > 0 {
		fmt.Fprintf(tw, "\nno-drop rate (loss ≤ %g %%)", r.NDRLossPct)
		for _, c := range cs {
			fmt.Fprintf(tw, "\t%s", c)
		}
		fmt.Fprintln(tw, "\t")
		for _, n := range r.Sources {
			fmt.Fprintf(tw, "%s sources", sizeLabel(n))
			for _, c := range cs {
				fmt.Fprintf(tw, "\t%s", fmtNDR(r.ndrRow(c, n)))
			}
			fmt.Fprintln(tw, "\t")
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nratio_vs_kernel %.3f  ratio_vs_bare %.3f  (other's CPU/pkt ÷ ispmux's at %s sources; higher is better)\n",
		r.RatioVsKernel, r.RatioVsBare, sizeLabel(r.headSources()))
	for _, t := range r.Targets {
		fmt.Fprintf(w, "target %s: %s, got %.3f (%s): %s\n", t.Name, t.Want, t.Got, t.Note, metWord(t.Met))
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
	return nil
}

func (r *ForwardResult) headSources() int {
	if containsInt(r.Sources, 256) || len(r.Sources) == 0 {
		return 256
	}
	return slicesMin(r.Sources)
}

func metWord(b bool) string {
	if b {
		return "met"
	}
	return "MISSED"
}

// Markdown renders forward.md.
func (r *ForwardResult) Markdown() string {
	return "# ispmux forwarding benchmark\n\n" + r.section("##", "forward.svg")
}

// section renders the result's body with headings at level h and the
// chart at svg (empty: none): forward.md and docs/PERFORMANCE.md share it.
func (r *ForwardResult) section(h, svg string) string {
	var b strings.Builder
	cs := r.casesOf()
	fmt.Fprintf(&b, "Run %s → %s on %d CPUs, kernel %s; load average %s before, %s after; CPUs busy before the run: %s. %d-byte frames; sweep %s sources at %s pps; %d interleaved runs, %gs windows after %gs warm-up.\n\n",
		r.Started, orDash(r.Finished), r.CPUs, orDash(r.Kernel), orDash(r.LoadBefore), orDash(r.LoadAfter), pcts(r.BackgroundCPUPct),
		r.FrameBytes, joinSizes(r.Sources), joinRates(r.Rates), r.Runs, r.DurationS, r.WarmupS)
	if q := r.Quiet; q != nil {
		fmt.Fprintf(&b, "Shared machine: before each trial it was sampled without traffic, busy %s CPU-seconds per second (median [min–max]); during the windows other processes used %s; %d of %d trials kept were noisy (above the quiet threshold even after the retries).\n\n",
			fmtStat(q.BackgroundBusy, "%.2f"), fmtStat(q.OthersCPU, "%.2f"), q.Noisy, q.Trials)
	}
	fmt.Fprintf(&b, "**ratio_vs_kernel = %.2f, ratio_vs_bare = %.2f** (the other's CPU per packet ÷ ispmux's at %s sources, lowest over the offered rates; higher is better for ispmux).\n\n",
		r.RatioVsKernel, r.RatioVsBare, sizeLabel(r.headSources()))
	if len(r.Targets) > 0 {
		b.WriteString("| target | want | got | |\n|---|---|---:|---|\n")
		for _, t := range r.Targets {
			fmt.Fprintf(&b, "| %s | %s | %.2f (%s) | **%s** |\n", t.Name, t.Want, t.Got, t.Note, metWord(t.Met))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "%s CPU nanoseconds per forwarded packet\n\nMedian [min–max] over the runs, generator subtracted.\n\n", h)
	b.WriteString("| sources | offered pps |")
	for _, c := range cs {
		fmt.Fprintf(&b, " %s |", caseTitles[c])
	}
	b.WriteString(" kernel ÷ ispmux | bare ÷ ispmux | loss % (median) |\n|---|---:|")
	for range cs {
		b.WriteString("---:|")
	}
	b.WriteString("---:|---:|---|\n")
	for _, row := range r.Sweep {
		off := humanPPS(row.OfferedPPS)
		if row.RateGeneratorBound {
			off += " (generator short)"
		}
		fmt.Fprintf(&b, "| %s | %s |", sizeLabel(row.Sources), off)
		for _, c := range cs {
			fmt.Fprintf(&b, " %s |", fmtStat(row.NsPerPkt[c], "%.0f"))
		}
		var losses []string
		for _, c := range cs {
			if s := row.LossPct[c]; s != nil {
				losses = append(losses, fmt.Sprintf("%s %.2f", c, s.Median))
			}
		}
		fmt.Fprintf(&b, " %s | %s | %s |\n", fmtRatio(row.RatioVsKernel), fmtRatio(row.RatioVsBare), strings.Join(losses, ", "))
	}
	if svg != "" {
		fmt.Fprintf(&b, "\n![CPU ns per forwarded packet](%s)\n", svg)
	}
	if len(r.NDR) > 0 {
		fmt.Fprintf(&b, "\n%s No-drop rate (loss ≤ %g %%)\n\nMedian [min–max] pps; \"≥\": the case kept up with all the generator could send.\n\n| sources |", h, r.NDRLossPct)
		for _, c := range cs {
			fmt.Fprintf(&b, " %s |", caseTitles[c])
		}
		b.WriteString("\n|---|")
		for range cs {
			b.WriteString("---:|")
		}
		b.WriteString("\n")
		for _, n := range r.Sources {
			fmt.Fprintf(&b, "| %s |", sizeLabel(n))
			for _, c := range cs {
				fmt.Fprintf(&b, " %s |", fmtNDR(r.ndrRow(c, n)))
			}
			b.WriteString("\n")
		}
	}
	if len(r.Calibration) > 0 {
		fmt.Fprintf(&b, "\n%s Calibration (generator alone)\n\n| sources | offered pps | achieved pps | busy CPU s per s |\n|---|---:|---:|---:|\n", h)
		for _, c := range r.Calibration {
			rl := "flat out"
			if c.OfferedPPS > 0 {
				rl = humanPPS(c.OfferedPPS)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", sizeLabel(c.Sources), rl, fmtStat(c.Offered, "%.0f"), fmtStat(c.BusyPerS, "%.3f"))
		}
	}
	if len(r.Points) > 0 {
		fmt.Fprintf(&b, "\n%s Set-up per sweep point\n\n| sources | ispmux holds them as | store seeded in, s | nftables map loaded in, s | ispmux ready in, s (per run) |\n|---|---|---:|---:|---|\n", h)
		for _, p := range r.Points {
			how := "static [[subscriber]] entries"
			if p.Bindings == BindingsStore {
				how = "API devices with a DHCP binding each, restored from the store"
			}
			ready := make([]string, len(p.ISPmuxReadyS))
			for i, x := range p.ISPmuxReadyS {
				ready[i] = fmtNum(x)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", sizeLabel(p.Sources), how, optNum(p.SeedS), optNum(p.NFTLoadS), orDash(strings.Join(ready, ", ")))
		}
	}
	if len(r.Sessions) > 1 {
		fmt.Fprintf(&b, "\n%s Sessions\n\n| sources | command | started → finished | load average before → after |\n|---|---|---|---|\n", h)
		for _, x := range r.Sessions {
			fmt.Fprintf(&b, "| %s | `%s` | %s → %s | %s → %s |\n", joinSizes(x.Sources), x.Command, x.Started, orDash(x.Finished), orDash(x.LoadBefore), orDash(x.LoadAfter))
		}
	}
	fmt.Fprintf(&b, "\n%s How it was measured\n\nCommand: `%s`; generator (one trial): `%s`.\n\n", h, r.Command, r.Generator)
	for _, c := range r.Cases {
		fmt.Fprintf(&b, "- **%s**: %s\n", c.Name, c.Description)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	if len(r.Errors) > 0 {
		b.WriteString("\nFailed trials:\n\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	return b.String()
}

func optNum(x float64) string {
	if x == 0 {
		return "–"
	}
	return fmtNum(x)
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func joinSizes(l []int) string {
	s := make([]string, len(l))
	for i, n := range l {
		s[i] = sizeLabel(n)
	}
	return strings.Join(s, ", ")
}

func joinRates(l []float64) string {
	s := make([]string, len(l))
	for i, n := range l {
		s[i] = humanPPS(n)
	}
	return strings.Join(s, ", ")
}

// chart draws forward.svg: CPU ns per packet per sweep row and case,
// medians with min–max whiskers.
func (r *ForwardResult) chart(w io.Writer) error {
	cs := r.casesOf()
	var groups []string
	vals := make([][]*Stat, 0, len(r.Sweep))
	for _, row := range r.Sweep {
		groups = append(groups, sizeLabel(row.Sources)+" @ "+humanPPS(row.OfferedPPS))
		v := make([]*Stat, len(cs))
		for i, c := range cs {
			v[i] = row.NsPerPkt[c]
		}
		vals = append(vals, v)
	}
	series := make([]string, len(cs))
	for i, c := range cs {
		series[i] = caseTitles[c]
	}
	return writeGroupedChart(w, "CPU ns per forwarded packet (both CPUs, generator subtracted)", "ns per packet", groups, series, vals)
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}

// busyPct is each CPU's busy share between two readings, in percent of
// that CPU's own elapsed ticks (busy + idle + iowait).
func busyPct(a, b ProcStat) []float64 {
	out := []float64{}
	for i := range min(len(a.CPU), len(b.CPU)) {
		x, y := a.CPU[i], b.CPU[i]
		busy := sub(y.Busy(), x.Busy())
		all := busy + sub(y.Idle+y.IOWait, x.Idle+x.IOWait)
		if all == 0 {
			out = append(out, 0)
			continue
		}
		out = append(out, round(100*float64(busy)/float64(all), 1))
	}
	return out
}

func ptr(f float64) *float64 { return &f }

func sub(b, a uint64) uint64 {
	if b < a {
		return 0 // counter reset (an interface re-created): no figure
	}
	return b - a
}

func round(f float64, digits int) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	p := math.Pow10(digits)
	return math.Round(f*p) / p
}

// pcts formats per-CPU percentages as "cpu0 12%, cpu1 100%".
func pcts(p []float64) string {
	if len(p) == 0 {
		return "-"
	}
	s := make([]string, len(p))
	for i, v := range p {
		s[i] = fmt.Sprintf("cpu%d %.0f%%", i, v)
	}
	return strings.Join(s, ", ")
}

func fmtOpt(f *float64, format string) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf(format, *f)
}

// report is a finished benchmark result.
type report interface {
	JSON() ([]byte, error)
	Markdown() string
	WriteTable(w io.Writer) error
}

// writeFiles writes NAME.json, NAME.md and NAME.svg (drawn by chart) into
// dir.
func writeFiles(dir, name string, r report, chart func(io.Writer) error) error {
	js, err := r.JSON()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), js, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".md"), []byte(r.Markdown()), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, name+".svg"))
	if err != nil {
		return err
	}
	if err := chart(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// emit prints r on stdout: one JSON object with asJSON, else the table and
// where the files (NAME.json, .md, .svg in dir) are.
func emit(stdout io.Writer, r report, asJSON bool, dir, name string) error {
	if asJSON {
		js, err := r.JSON()
		if err != nil {
			return err
		}
		_, err = stdout.Write(js)
		return err
	}
	if err := r.WriteTable(stdout); err != nil {
		return err
	}
	_, err := fmt.Fprintf(stdout, "results in %s/%s.{json,md,svg}\n", dir, name)
	return err
}
