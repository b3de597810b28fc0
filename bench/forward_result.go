package bench

import (
	"encoding/json"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/ispmux/ispmux/internal/shellquote"
)

// bench forward's result (forward.json, --json): ForwardResult and its
// rows, a new result with its cases' descriptions and notes, the lookup of
// the calibration trial that a case's CPU figure subtracts, and --merge of
// an earlier result. forward_summary.go derives the sweep from the trials,
// forward_report.go renders it.

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
	RatioVsKernel float64 `json:"ratio_vs_kernel"`
	RatioVsBare   float64 `json:"ratio_vs_bare"`
	// RatioVsKernelXDP and RatioVsBareXDP are the same for case
	// ispmux-xdp (ispmux with its XDP fast path); 0: not measured.
	RatioVsKernelXDP float64  `json:"ratio_vs_kernel_xdp"`
	RatioVsBareXDP   float64  `json:"ratio_vs_bare_xdp"`
	Targets          []Target `json:"targets"`

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
	ISPmuxXDPNsPerPkt   *float64 `json:"ispmux_xdp_ns_per_pkt,omitempty"`
	ISPmuxXDPNDRPPS     float64  `json:"ispmux_xdp_ndr_pps,omitempty"`
	KernelNDRPPS        float64  `json:"kernel_ndr_pps"`
	BareNDRPPS          float64  `json:"bare_ndr_pps"`
	// GeneratorBound: the generator bounded something in this row — it
	// could not offer the row's rate (RateGeneratorBound), or a case's
	// no-drop rate is only known to be at least its ceiling.
	GeneratorBound     bool             `json:"generator_bound"`
	RateGeneratorBound bool             `json:"rate_generator_bound"`
	RatioVsKernel      *float64         `json:"ratio_vs_kernel"`
	RatioVsBare        *float64         `json:"ratio_vs_bare"`
	RatioVsKernelXDP   *float64         `json:"ratio_vs_kernel_xdp,omitempty"`
	RatioVsBareXDP     *float64         `json:"ratio_vs_bare_xdp,omitempty"`
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
	// A case measured with another placement (--kernel-rps,
	// --xdp-napi-thread, which its description records) is another
	// system: its points do not join this run's.
	for _, c := range r.Cases {
		for _, p := range prev.Cases {
			if p.Name != c.Name {
				continue
			}
			for _, opt := range []string{"--kernel-rps=false", "--xdp-napi-thread"} {
				if strings.Contains(p.Description, opt) != strings.Contains(c.Description, opt) {
					return fmt.Errorf("bench forward: --merge: case %s of the earlier result and of this run differ in %s", c.Name, opt)
				}
			}
		}
	}
	mine := map[int]bool{}
	for _, n := range r.Sources {
		mine[n] = true
	}
	trials := filtered(prev.Trials, func(t Trial) bool { return !mine[t.Sources] })
	r.Trials = append(trials, r.Trials...)
	r.NDRRuns = append(filtered(prev.NDRRuns, func(x NDRRun) bool { return !mine[x.Sources] }), r.NDRRuns...)
	r.Points = append(filtered(prev.Points, func(x PointInfo) bool { return !mine[x.Sources] }), r.Points...)
	r.Diagnostics = append(filtered(prev.Diagnostics, func(x Diagnostic) bool { return !mine[x.Sources] }), r.Diagnostics...)
	r.Errors = append(filtered(prev.Errors, func(e string) bool {
		for n := range mine {
			if strings.Contains(e, ", "+sizeLabel(n)+" sources") {
				return false
			}
		}
		return true
	}), r.Errors...)
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
	// The earlier result's run count holds only for the sweep points of
	// it that are kept: its runs per point are those points' run numbers.
	prevRuns := map[int]int{}
	for _, t := range trials {
		prevRuns[t.Sources] = max(prevRuns[t.Sources], t.Run)
	}
	for _, n := range prevRuns {
		r.Runs = min(r.Runs, n)
	}
	sess := filtered(prev.Sessions, func(x Session) bool { return slicesAny(x.Sources, func(n int) bool { return !mine[n] }) })
	r.Sessions = append(sess, r.Sessions...)
	// The result started when the earliest session it still holds did.
	for _, x := range sess {
		if x.Started != "" && x.Started < r.Started {
			r.Started = x.Started
		}
	}
	if len(prev.Sessions) == 0 && len(trials) > 0 && prev.Started < r.Started {
		r.Started = prev.Started // an earlier result from before sessions were recorded
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
	CaseISPmuxXDP: "the same ispmux with [datapath] fastpath = \"xdp\": bound subscribers' packets are forwarded by its eBPF program in the XDP hook of acc1 (the same decisions, package fastpath) and redirected to the uplink; " +
		"everything else still goes to the AF_XDP sockets. The ISP routers' veth ends have GRO on during this case (a veth delivers XDP_REDIRECT to its peer only with the peer's NAPI receive on)",
	CaseKernel: "Linux as an operator would build it: an nftables map MAC . address → mark at prerouting priority raw (notrack; a source not in the map is dropped: anti-spoofing in the same lookup), " +
		"one ip rule per ISP (fwmark → the ISP's table), RPS moving forwarding from the generator's CPU to CPU " + fwdCPU + " (lab.Topology.NFTRouter)",
	CaseKernelRules: "Linux with one ip rule per subscriber source (from ADDRESS lookup TABLE; no anti-spoofing) and the same RPS, the router the benchmark used before; only for small sweep points, the rule list is searched linearly (lab.Topology.RuleRouter)",
	CaseBare:        "a bare AF_XDP forwarder on package datapath with ispmux's ports and worker, MAC rewrite only, spreading the sources over both uplinks as ispmux does (by the MAC's last byte), pinned to CPU " + fwdCPU + ": the ceiling of this path",
	CaseCalibration: "the generator alone at the same rate: the appliance's acc1 drops the frames at netdev ingress (nftables), nothing forwards, no XDP program is attached; subtracted from every case",
}

func newForwardResult(o *forwardOptions, args []string) *ForwardResult {
	r := &ForwardResult{
		Benchmark: "forward", Runs: o.runs, DurationS: o.duration.Seconds(), WarmupS: o.warmup.Seconds(),
		NDRLossPct: o.ndrLoss, NDRDurationS: o.ndrDuration.Seconds(), Rates: o.rates, Sources: o.sources,
		FrameBytes: frameBytes, CPUs: runtime.NumCPU(), Kernel: kernelRelease(), Started: time.Now().UTC().Format(time.RFC3339),
		Command: shellquote.Join(append([]string{"ispmux", "bench", "forward"}, args...)),
	}
	for _, c := range append(append([]string(nil), o.cases...), CaseCalibration) {
		d := caseDescriptions[c]
		if c == CaseISPmuxXDP && o.napiThread {
			d += "; --xdp-napi-thread: acc1's receive, and so the fast path, runs in threaded NAPI pinned to CPU " + fwdCPU + ", off the generator's CPU"
		}
		if (c == CaseKernel || c == CaseKernelRules) && !o.kernelRPS {
			d += "; --kernel-rps=false: no RPS, forwarding runs in the generator's softirq on CPU " + genCPU
		}
		r.Cases = append(r.Cases, CaseInfo{Name: c, Description: d})
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
