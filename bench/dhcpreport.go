package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ispmux/ispmux/internal/shellquote"
)

// DHCPStat is one figure over the runs.
type DHCPStat struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	N      int       `json:"n"`
	Values []float64 `json:"values"` // in run order
}

// newDHCPStat summarises v (nil for none). The median of an even count is
// the mean of the middle two.
func newDHCPStat(v []float64) *DHCPStat {
	if len(v) == 0 {
		return nil
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &DHCPStat{Median: round(m, 3), Min: s[0], Max: s[len(s)-1], N: len(s), Values: v}
}

// median is st's median, nil for no DHCPStat.
func (st *DHCPStat) med() *float64 {
	if st == nil {
		return nil
	}
	return ptr(st.Median)
}

// DurableCheck compares, after one run of case ispmux, the clients that got
// an ACK with the bindings found in its store file once it had exited.
type DurableCheck struct {
	Run          int `json:"run"`
	ClientsACKed int `json:"clients_acked"`
	Durable      int `json:"durable"`
}

// DHCPTarget is one target of issue 11 and whether the medians meet it.
// The JSON names are those bench report renders (name, want, got, met).
type DHCPTarget struct {
	What   string   `json:"name"`
	Target string   `json:"want"`
	Value  *float64 `json:"got"`
	Met    bool     `json:"met"`
}

// DHCPResult is the outcome of bench dhcp: dhcp.json and --json. The
// headline figures are medians over the runs; Summary has each one's
// min, max and values.
type DHCPResult struct {
	Benchmark string `json:"benchmark"`

	// CPU per completed DORA at CPURate (the highest fixed rate), µs: the
	// system's own CPU time (ispmux with its store; dhcrelay).
	ISPmuxCPUUsPerDORA *float64 `json:"ispmux_cpu_us_per_dora"`
	RelayCPUUsPerDORA  *float64 `json:"relay_cpu_us_per_dora"`
	CPURatio           *float64 `json:"cpu_ratio_vs_relay"` // ispmux ÷ relay
	CPURate            float64  `json:"cpu_rate"`
	// P99Ms maps each fixed rate to ispmux's REQUEST → ACK p99 (ms);
	// the others are the same for DISCOVER → OFFER, p50, and dhcrelay.
	P99Ms           map[string]float64 `json:"p99_ms"`
	P50Ms           map[string]float64 `json:"p50_ms"`
	OfferP99Ms      map[string]float64 `json:"offer_p99_ms"`
	OfferP50Ms      map[string]float64 `json:"offer_p50_ms"`
	RelayP99Ms      map[string]float64 `json:"relay_p99_ms"`
	RelayOfferP99Ms map[string]float64 `json:"relay_offer_p99_ms"`
	// Where the time goes (--legs, DHCPLegs), per fixed rate: the p99 of
	// ispmux's own part of DISCOVER → OFFER and of REQUEST → ACK (its
	// legs, timed at the generator's and Kea's interfaces), the same for
	// dhcrelay, and Kea's part in ispmux's cases.
	OfferThroughP99Ms      map[string]float64 `json:"offer_through_p99_ms,omitempty"`
	AckThroughP99Ms        map[string]float64 `json:"ack_through_p99_ms,omitempty"`
	RelayOfferThroughP99Ms map[string]float64 `json:"relay_offer_through_p99_ms,omitempty"`
	RelayAckThroughP99Ms   map[string]float64 `json:"relay_ack_through_p99_ms,omitempty"`
	ServerOfferP99Ms       map[string]float64 `json:"server_offer_p99_ms,omitempty"`
	ServerAckP99Ms         map[string]float64 `json:"server_ack_p99_ms,omitempty"`
	// The whole exchange at the client's wire (the generator's interface
	// out → in, DHCPLegs): ispmux's and dhcrelay's REQUEST → ACK and
	// DISCOVER → OFFER p99 without the generator's own delays.
	WireAckP99Ms        map[string]float64 `json:"wire_p99_ms,omitempty"`
	WireOfferP99Ms      map[string]float64 `json:"wire_offer_p99_ms,omitempty"`
	RelayWireAckP99Ms   map[string]float64 `json:"relay_wire_p99_ms,omitempty"`
	RelayWireOfferP99Ms map[string]float64 `json:"relay_wire_offer_p99_ms,omitempty"`
	// IdlePoll: idle CPUs polled instead of halting (--idle-poll).
	IdlePoll bool `json:"idle_poll"`
	// Capacity: the highest rate with at most 1 % failed exchanges; the
	// process that saturated at the lowest failing rate (most frequent
	// over the runs).
	ISPmuxCapacity  *float64 `json:"ispmux_capacity_per_s"`
	RelayCapacity   *float64 `json:"relay_capacity_per_s"`
	ISPmuxSaturated string   `json:"ispmux_saturated"`
	RelaySaturated  string   `json:"relay_saturated"`
	// Outage recovery: seconds from the first start until 99.9 % of
	// OutageSubscribers were bound.
	OutageSubscribers     int      `json:"outage_subscribers"`
	OutageISPmuxS         *float64 `json:"outage_ispmux_s"`
	OutageRelayS          *float64 `json:"outage_relay_s"`
	OutageISPmuxDefaultsS *float64 `json:"outage_ispmux_defaults_s"`
	OutageDefaultsBound   int      `json:"outage_ispmux_defaults_bound"`
	KeaDirectDORA         float64  `json:"kea_direct_dora_per_s"`
	// EveryBindingDurable: after every run of case ispmux, its store held
	// a binding for every client that got an ACK.
	EveryBindingDurable bool           `json:"every_binding_durable"`
	Durable             []DurableCheck `json:"durable"`

	Summary map[string]*DHCPStat `json:"summary"`
	Targets []DHCPTarget         `json:"targets"`

	Runs             int        `json:"runs"`
	Rates            []float64  `json:"rates"`
	Clients          int        `json:"clients"`
	DurationS        float64    `json:"duration_s"`
	Search           bool       `json:"search"`
	SearchDurationS  float64    `json:"search_duration_s"`
	TimeoutS         float64    `json:"timeout_s"`
	Retries          int        `json:"retries"`
	ISPmuxLimits     string     `json:"ispmux_limits"`
	OutageLimits     string     `json:"outage_limits,omitempty"`
	CPUs             int        `json:"cpus"`
	BackgroundCPUPct []float64  `json:"background_cpu_pct"`
	Kernel           string     `json:"kernel,omitempty"`
	Started          string     `json:"started"`
	Command          string     `json:"command"`
	Generator        string     `json:"generator"`
	ISPmuxCommand    string     `json:"ispmux_command"`
	RelayCommand     string     `json:"relay_command"`
	Cases            []DHCPCase `json:"cases"`
	Notes            []string   `json:"notes"`
}

func newDHCPResult(o *dhcpOptions, args []string) *DHCPResult {
	r := &DHCPResult{
		Benchmark: "dhcp", Runs: o.runs, Rates: o.rates, Clients: o.clients, DurationS: o.duration.Seconds(),
		Search: o.search, SearchDurationS: o.searchDuration.Seconds(), OutageSubscribers: o.outage,
		TimeoutS: o.timeout.Seconds(), Retries: o.retries, CPUs: runtime.NumCPU(), Kernel: kernelRelease(),
		Started: time.Now().UTC().Format(time.RFC3339),
		Command: shellquote.Join(append([]string{"ispmux", "bench", "dhcp"}, args...)),
		Notes: []string{
			"One exchange is a full DORA: broadcast DISCOVER, OFFER, broadcast REQUEST (options 50 and 54 from the OFFER), ACK. Latencies run from a message's first transmission to its reply.",
			"The same Go client generator (one AF_PACKET socket in promiscuous mode, pinned to CPU " + genCPU + ") drives ispmux and dhcrelay, which run pinned to CPU " + fwdCPU + " (taskset: ispmux sees one CPU); Kea, the ISP, is not under test: it runs on CPU " + genCPU + " " + keaPlacement(o) + ", ahead of the generator and never on the measured system's CPU. A client retransmits like an RFC 2131 client: after 4, 8, 16 s ± 1 s (--timeout doubled at each retransmission, ±1/4), then the exchange has failed.",
			"Fixed rates and the search cycle over --clients clients (the next idle one starts); a start due while every client is busy is skipped. CPU per DORA is the system's own CPU time (utime + stime of all its threads, /proc/PID/stat: ispmux with its bbolt store and fsyncs; dhcrelay) during the generator's run ÷ completed exchanges.",
			fmt.Sprintf("Capacity: the highest rate whose step (%gs of starts) has ≤ %g %% loss, loss = (failed exchanges + skipped starts) ÷ (started + skipped); an exchange still unfinished one retransmission wait after the window counts as failed, and a step stops as soon as its loss exceeds the limit. The search doubles the rate from --search-min until a step fails, then bisects geometrically to within ×%g. The process named saturated is the busiest (percent of one CPU) at the lowest failing rate.", o.searchDuration.Seconds(), failLimitPct, searchPrecision),
			"Outage: every one of --outage clients starts DORA within one second and keeps trying until bound (DISCOVER retransmitted with the RFC backoff capped at 64 s; after an unanswered REQUEST or a NAK, a new DISCOVER); the figure is the time from the first start until 99.9 % are bound. Each outage starts a fresh ispmux (empty store) or dhcrelay in front of a Kea restarted with an empty lease file.",
			"Option 82: ispmux sends circuit-id, remote-id (the client's MAC) and subscriber-id (the customer ID) and strips them from the replies; dhcrelay -a sends circuit-id (the interface's name), the one sub-option ISC dhcrelay can send for IPv4 (its link selection, -U, segfaults on the first relayed message with Debian 12's isc-dhcp-relay 4.4.3; it has no remote-id or subscriber-id for IPv4).",
			"At a fixed rate the generator waits for the last exchanges up to two retransmission waits (13 s) after the window; an exchange unfinished then counts as failed.",
			"ispmux makes every binding durable before it sends the ACK (its store's binding journal: one write and one fdatasync per group commit, checkpointed into bbolt); dhcrelay and Kea keep nothing durable on the path (Kea's memfile lease file is written, not fsynced, per lease).",
			"Runs alternate the order of the systems (odd runs ispmux first); headline figures are medians over the runs, summary has min and max. The machine is 2 vCPUs shared with other work: single runs are noisy.",
		},
	}
	return r
}

// keaPlacement says how Kea was scheduled on the generator's CPU.
func keaPlacement(o *dhcpOptions) string {
	if o.keaRealtime {
		return "with SCHED_FIFO priority " + strconv.Itoa(keaRTPriority) + " (--kea-realtime: it runs as soon as a message wakes it, as a server on its own CPU would; at nice -10 alone its part of an exchange had a p99 of 1.4 to 36 ms from one run to the next at 2000/s)"
	}
	return "at nice " + strconv.Itoa(keaNice)
}

func dhcpRateKey(r float64) string { return strconv.FormatFloat(r, 'f', -1, 64) }

// finish computes the headline figures, the summary and the targets from
// the cases.
func (r *DHCPResult) finish() {
	r.Summary = map[string]*DHCPStat{}
	vals := map[string][]float64{}
	add := func(k string, v *float64) {
		if v != nil {
			vals[k] = append(vals[k], *v)
		}
	}
	// Capacity per (system, run) from the search steps.
	type sr struct {
		name string
		run  int
	}
	best, fail := map[sr]float64{}, map[sr]float64{}
	sat := map[sr]string{}
	searched, aborted := map[sr]bool{}, map[sr]bool{}
	for _, c := range r.Cases {
		if c.Error != "" {
			if c.Phase == PhaseSearch {
				aborted[sr{c.Name, c.Run}] = true
			}
			continue
		}
		switch c.Phase {
		case PhaseRate:
			p := c.Name + "." + dhcpRateKey(c.OfferedRate)
			add(p+".cpu_us_per_dora", c.CPUUsPerDORA)
			add(p+".ack_p50_ms", c.AckP50Ms)
			add(p+".ack_p99_ms", c.AckP99Ms)
			add(p+".offer_p50_ms", c.OfferP50Ms)
			add(p+".offer_p99_ms", c.OfferP99Ms)
			add(p+".loss_pct", ptr(c.LossPct))
			if l := c.Legs; l != nil {
				add(p+".offer_through_p50_ms", l.OfferThroughP50Ms)
				add(p+".offer_through_p99_ms", l.OfferThroughP99Ms)
				add(p+".offer_server_p99_ms", l.OfferServerP99Ms)
				add(p+".ack_through_p50_ms", l.AckThroughP50Ms)
				add(p+".ack_through_p99_ms", l.AckThroughP99Ms)
				add(p+".ack_server_p99_ms", l.AckServerP99Ms)
				add(p+".offer_wire_p99_ms", l.OfferWireP99Ms)
				add(p+".ack_wire_p99_ms", l.AckWireP99Ms)
			}
		case PhaseSearch:
			k := sr{c.Name, c.Run}
			searched[k] = true
			if c.LossPct <= failLimitPct {
				best[k] = max(best[k], c.OfferedRate)
			} else if f, ok := fail[k]; !ok || c.OfferedRate < f {
				fail[k], sat[k] = c.OfferedRate, c.Saturated
			}
		case PhaseOutage:
			add(c.Name+".outage_s", c.BoundS)
			add(c.Name+".outage_50_s", c.Bound50S)
			add(c.Name+".outage_90_s", c.Bound90S)
			add(c.Name+".outage_bound", ptr(float64(c.Bound)))
			if c.Name == CaseDHCPISPmux+"_defaults" {
				r.OutageDefaultsBound = c.Bound
			}
		case PhaseDirect:
			r.KeaDirectDORA = c.DORAPerS
		}
	}
	satCount := map[string]map[string]int{}
	for k := range searched {
		_, failed := fail[k]
		if aborted[k] && !failed {
			// The search ended on an error before any step failed:
			// the last rate that passed is no capacity.
			continue
		}
		add(k.name+".capacity_per_s", ptr(best[k]))
		if satCount[k.name] == nil {
			satCount[k.name] = map[string]int{}
		}
		s := sat[k]
		if !failed {
			s = "none: the search's highest rate passed"
		}
		satCount[k.name][dhcpProcName(s)]++
	}
	for k, v := range vals {
		r.Summary[k] = newDHCPStat(v)
	}
	med := func(k string) *float64 { return r.Summary[k].med() }
	top := 0.0
	if len(r.Rates) > 0 {
		top = r.Rates[len(r.Rates)-1]
	}
	r.CPURate = top
	r.ISPmuxCPUUsPerDORA = med(CaseDHCPISPmux + "." + dhcpRateKey(top) + ".cpu_us_per_dora")
	r.RelayCPUUsPerDORA = med(CaseDHCPRelay + "." + dhcpRateKey(top) + ".cpu_us_per_dora")
	r.CPURatio = nil
	if r.ISPmuxCPUUsPerDORA != nil && r.RelayCPUUsPerDORA != nil && *r.RelayCPUUsPerDORA > 0 {
		r.CPURatio = ptr(round(*r.ISPmuxCPUUsPerDORA / *r.RelayCPUUsPerDORA, 3))
	}
	r.P99Ms, r.P50Ms, r.OfferP99Ms, r.OfferP50Ms = map[string]float64{}, map[string]float64{}, map[string]float64{}, map[string]float64{}
	r.RelayP99Ms, r.RelayOfferP99Ms = map[string]float64{}, map[string]float64{}
	r.OfferThroughP99Ms, r.AckThroughP99Ms, r.RelayOfferThroughP99Ms, r.RelayAckThroughP99Ms, r.ServerOfferP99Ms, r.ServerAckP99Ms = nil, nil, nil, nil, nil, nil
	r.WireAckP99Ms, r.WireOfferP99Ms, r.RelayWireAckP99Ms, r.RelayWireOfferP99Ms = nil, nil, nil, nil
	for _, rate := range r.Rates {
		k := dhcpRateKey(rate)
		for m, name := range map[*map[string]float64]string{
			&r.P99Ms: CaseDHCPISPmux + "." + k + ".ack_p99_ms", &r.P50Ms: CaseDHCPISPmux + "." + k + ".ack_p50_ms",
			&r.OfferP99Ms: CaseDHCPISPmux + "." + k + ".offer_p99_ms", &r.OfferP50Ms: CaseDHCPISPmux + "." + k + ".offer_p50_ms",
			&r.RelayP99Ms: CaseDHCPRelay + "." + k + ".ack_p99_ms", &r.RelayOfferP99Ms: CaseDHCPRelay + "." + k + ".offer_p99_ms",
			&r.OfferThroughP99Ms: CaseDHCPISPmux + "." + k + ".offer_through_p99_ms", &r.AckThroughP99Ms: CaseDHCPISPmux + "." + k + ".ack_through_p99_ms",
			&r.RelayOfferThroughP99Ms: CaseDHCPRelay + "." + k + ".offer_through_p99_ms", &r.RelayAckThroughP99Ms: CaseDHCPRelay + "." + k + ".ack_through_p99_ms",
			&r.ServerOfferP99Ms: CaseDHCPISPmux + "." + k + ".offer_server_p99_ms", &r.ServerAckP99Ms: CaseDHCPISPmux + "." + k + ".ack_server_p99_ms",
			&r.WireAckP99Ms: CaseDHCPISPmux + "." + k + ".ack_wire_p99_ms", &r.WireOfferP99Ms: CaseDHCPISPmux + "." + k + ".offer_wire_p99_ms",
			&r.RelayWireAckP99Ms: CaseDHCPRelay + "." + k + ".ack_wire_p99_ms", &r.RelayWireOfferP99Ms: CaseDHCPRelay + "." + k + ".offer_wire_p99_ms",
		} {
			if v := med(name); v != nil {
				if *m == nil {
					*m = map[string]float64{}
				}
				(*m)[k] = *v
			}
		}
	}
	r.ISPmuxCapacity = med(CaseDHCPISPmux + ".capacity_per_s")
	r.RelayCapacity = med(CaseDHCPRelay + ".capacity_per_s")
	r.ISPmuxSaturated, r.RelaySaturated = dhcpMostFrequent(satCount[CaseDHCPISPmux]), dhcpMostFrequent(satCount[CaseDHCPRelay])
	r.OutageISPmuxS = med(CaseDHCPISPmux + ".outage_s")
	r.OutageRelayS = med(CaseDHCPRelay + ".outage_s")
	r.OutageISPmuxDefaultsS = med(CaseDHCPISPmux + "_defaults.outage_s")
	r.EveryBindingDurable = len(r.Durable) > 0
	for _, d := range r.Durable {
		r.EveryBindingDurable = r.EveryBindingDurable && d.Durable >= d.ClientsACKed
	}
	r.targets()
}

// dhcpProcName is a saturation label's process name ("kea 97%" → "kea").
func dhcpProcName(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return strings.TrimSuffix(f[0], ":")
	}
	return s
}

// largest returns the key of m with the largest value, the first in
// order of those alike, and its value; "" and above when no value is
// larger than above.
func largest[V int | float64](m map[string]V, above V) (string, V) {
	best, bv := "", above
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] > bv {
			best, bv = k, m[k]
		}
	}
	return best, bv
}

func dhcpMostFrequent(m map[string]int) string {
	best, n := largest(m, 0)
	if best == "" {
		return ""
	}
	return fmt.Sprintf("%s (%d of %d runs)", best, n, dhcpTotal(m))
}

func dhcpTotal(m map[string]int) int {
	t := 0
	for _, v := range m {
		t += v
	}
	return t
}

// targets evaluates issue 11's DHCP targets on the medians.
func (r *DHCPResult) targets() {
	r.Targets = nil
	// A target is met on the median of every run: a run without the
	// figure (its case failed, or it never got there) cannot meet it.
	every := func(keys ...string) bool {
		for _, k := range keys {
			if st := r.Summary[k]; st == nil || st.N < r.Runs {
				return false
			}
		}
		return true
	}
	le := func(what, target string, v *float64, limit float64, keys ...string) {
		r.Targets = append(r.Targets, DHCPTarget{What: what, Target: target, Value: v, Met: v != nil && *v <= limit && every(keys...)})
	}
	for _, rate := range r.Rates {
		k := dhcpRateKey(rate)
		var ack, offer *float64
		if v, ok := r.P99Ms[k]; ok {
			ack = ptr(v)
		}
		if v, ok := r.OfferP99Ms[k]; ok {
			offer = ptr(v)
		}
		le("ispmux REQUEST → ACK p99 at "+k+"/s, ms", "≤ 10", ack, 10, CaseDHCPISPmux+"."+k+".ack_p99_ms")
		le("ispmux DISCOVER → OFFER p99 at "+k+"/s, ms", "≤ 5", offer, 5, CaseDHCPISPmux+"."+k+".offer_p99_ms")
	}
	if r.CPURate > 0 {
		t := DHCPTarget{What: "ispmux ÷ dhcrelay CPU per DORA at " + dhcpRateKey(r.CPURate) + "/s, every binding durable", Target: "≤ 1.5",
			Value: r.CPURatio}
		ck := "." + dhcpRateKey(r.CPURate) + ".cpu_us_per_dora"
		t.Met = r.CPURatio != nil && *r.CPURatio <= 1.5 && r.EveryBindingDurable && every(CaseDHCPISPmux+ck, CaseDHCPRelay+ck)
		r.Targets = append(r.Targets, t)
	}
	if r.OutageSubscribers > 0 {
		var ratio *float64
		if r.OutageISPmuxS != nil && r.OutageRelayS != nil && *r.OutageRelayS > 0 {
			ratio = ptr(round(*r.OutageISPmuxS / *r.OutageRelayS, 3))
		}
		le(fmt.Sprintf("outage recovery, %d subscribers: ispmux ÷ dhcrelay time to 99.9 %% bound", r.OutageSubscribers), "≤ 1.0", ratio, 1.0,
			CaseDHCPISPmux+".outage_s", CaseDHCPRelay+".outage_s")
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

// fmtDHCPStat renders a figure as "median [min–max]" ("-" for none).
func fmtDHCPStat(st *DHCPStat, format string) string {
	if st == nil {
		return "-"
	}
	if st.N == 1 {
		return fmt.Sprintf(format, st.Median)
	}
	return fmt.Sprintf(format+" ["+format+"–"+format+"]", st.Median, st.Min, st.Max)
}

// rateRows are the fixed-rate table's rows: per rate and system, medians
// [min–max] over the runs.
func (r *DHCPResult) rateRows() [][]string {
	var rows [][]string
	for _, rate := range r.Rates {
		k := dhcpRateKey(rate)
		for _, sys := range []string{CaseDHCPISPmuxBase, CaseDHCPISPmux, CaseDHCPRelay} {
			p := sys + "." + k + "."
			if r.Summary[p+"ack_p99_ms"] == nil && r.Summary[p+"cpu_us_per_dora"] == nil {
				continue
			}
			rows = append(rows, []string{k, sys,
				fmtDHCPStat(r.Summary[p+"offer_p50_ms"], "%.2f"), fmtDHCPStat(r.Summary[p+"offer_p99_ms"], "%.2f"),
				fmtDHCPStat(r.Summary[p+"ack_p50_ms"], "%.2f"), fmtDHCPStat(r.Summary[p+"ack_p99_ms"], "%.2f"),
				fmtDHCPStat(r.Summary[p+"cpu_us_per_dora"], "%.0f"), fmtDHCPStat(r.Summary[p+"loss_pct"], "%.2f")})
		}
	}
	return rows
}

// legRows are the where-the-time-goes table's rows (--legs): per rate and
// system, the p99 of the relay's part and of Kea's, medians [min–max].
func (r *DHCPResult) legRows() [][]string {
	var rows [][]string
	for _, rate := range r.Rates {
		k := dhcpRateKey(rate)
		for _, sys := range []string{CaseDHCPISPmuxBase, CaseDHCPISPmux, CaseDHCPRelay} {
			p := sys + "." + k + "."
			if r.Summary[p+"offer_through_p99_ms"] == nil && r.Summary[p+"ack_through_p99_ms"] == nil {
				continue
			}
			rows = append(rows, []string{k, sys,
				fmtDHCPStat(r.Summary[p+"offer_through_p50_ms"], "%.2f"), fmtDHCPStat(r.Summary[p+"offer_through_p99_ms"], "%.2f"),
				fmtDHCPStat(r.Summary[p+"offer_server_p99_ms"], "%.2f"),
				fmtDHCPStat(r.Summary[p+"ack_through_p50_ms"], "%.2f"), fmtDHCPStat(r.Summary[p+"ack_through_p99_ms"], "%.2f"),
				fmtDHCPStat(r.Summary[p+"ack_server_p99_ms"], "%.2f"),
				fmtDHCPStat(r.Summary[p+"offer_wire_p99_ms"], "%.2f"), fmtDHCPStat(r.Summary[p+"ack_wire_p99_ms"], "%.2f")})
		}
	}
	return rows
}

var dhcpLegHeader = []string{"rate/s", "system", "OFFER: relay's part p50 ms", "relay's part p99 ms", "Kea's part p99 ms", "ACK: relay's part p50 ms", "relay's part p99 ms", "Kea's part p99 ms", "at the client's wire: OFFER p99 ms", "ACK p99 ms"}

// dhcpLegNote says what legRows' figures are.
const dhcpLegNote = "Where the time goes: each message timed by the kernel at the generator's interface and at Kea's (the far ends of the veths from the appliance). " +
	"The relay's part of an exchange is the request's way from the generator to Kea plus the answer's way back (the relay, ispmux's store commit before an ACK included, the veths and the access bridge); Kea's part is from the request's arrival to its answer; the generator's own delays are in neither. At the client's wire: the whole exchange from the request leaving the generator's interface to the answer arriving there, as a tester timing the wire would see it (the generator's own delays in sending and reading are not in it; they are in the table above). Exchanges seen at both interfaces, first transmissions only."

var dhcpRateHeader = []string{"rate/s", "system", "OFFER p50 ms", "OFFER p99 ms", "ACK p50 ms", "ACK p99 ms", "CPU µs/DORA", "loss %"}

func (r *DHCPResult) headline() []string {
	var l []string
	l = append(l, fmt.Sprintf("CPU per DORA at %s/s: ispmux %s µs, dhcrelay %s µs, ratio %s (every binding durable: %v)",
		dhcpRateKey(r.CPURate), fmtDHCPStat(r.Summary[CaseDHCPISPmux+"."+dhcpRateKey(r.CPURate)+".cpu_us_per_dora"], "%.0f"),
		fmtDHCPStat(r.Summary[CaseDHCPRelay+"."+dhcpRateKey(r.CPURate)+".cpu_us_per_dora"], "%.0f"), fmtOpt(r.CPURatio, "%.2f"), r.EveryBindingDurable))
	if r.Search {
		l = append(l, fmt.Sprintf("Capacity (≤ %g %% failed): ispmux %s/s, saturated: %s; dhcrelay %s/s, saturated: %s",
			failLimitPct, fmtDHCPStat(r.Summary[CaseDHCPISPmux+".capacity_per_s"], "%.0f"), dhcpOrDash(r.ISPmuxSaturated),
			fmtDHCPStat(r.Summary[CaseDHCPRelay+".capacity_per_s"], "%.0f"), dhcpOrDash(r.RelaySaturated)))
	}
	if r.OutageSubscribers > 0 {
		s := fmt.Sprintf("Outage, %d subscribers, time to 99.9 %% bound: ispmux %s s, dhcrelay %s s (90 %%: %s s, %s s; bound at the end: %s, %s)", r.OutageSubscribers,
			fmtDHCPStat(r.Summary[CaseDHCPISPmux+".outage_s"], "%.2f"), fmtDHCPStat(r.Summary[CaseDHCPRelay+".outage_s"], "%.2f"),
			fmtDHCPStat(r.Summary[CaseDHCPISPmux+".outage_90_s"], "%.2f"), fmtDHCPStat(r.Summary[CaseDHCPRelay+".outage_90_s"], "%.2f"),
			fmtDHCPStat(r.Summary[CaseDHCPISPmux+".outage_bound"], "%.0f"), fmtDHCPStat(r.Summary[CaseDHCPRelay+".outage_bound"], "%.0f"))
		for _, c := range r.Cases {
			if c.Phase == PhaseOutage && c.Name == CaseDHCPISPmux+"_defaults" {
				s += fmt.Sprintf("; ispmux with its default limits %s s (%d of %d bound)", fmtOpt(c.BoundS, "%.2f"), c.Bound, c.Subscribers)
			}
		}
		l = append(l, s)
	}
	if r.KeaDirectDORA > 0 {
		l = append(l, fmt.Sprintf("perfdhcp straight to Kea (reference): %.0f DORA/s at %s/s offered", r.KeaDirectDORA, dhcpRateKey(r.CPURate)))
	}
	return l
}

func dhcpOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteTable writes the human-readable tables and the headline figures.
func (r *DHCPResult) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(dhcpRateHeader, "\t")+"\t")
	for _, row := range r.rateRows() {
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rows := r.legRows(); len(rows) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, strings.Join(dhcpLegHeader, "\t")+"\t")
		for _, row := range rows {
			fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\nmedian [min–max] of %d run(s)\n", r.Runs)
	for _, l := range r.headline() {
		fmt.Fprintln(w, l)
	}
	for _, t := range r.Targets {
		fmt.Fprintf(w, "target %s %s: %s (%s)\n", t.What, t.Target, fmtOpt(t.Value, "%.2f"), dhcpMet(t.Met))
	}
	for _, c := range r.Cases {
		if c.Error != "" {
			fmt.Fprintf(w, "%s %s run %d: %s\n", c.Name, c.Phase, c.Run, c.Error)
		}
	}
	return nil
}

func dhcpMet(b bool) string {
	if b {
		return "met"
	}
	return "missed"
}

// Markdown renders dhcp.md.
func (r *DHCPResult) Markdown() string {
	var b strings.Builder
	b.WriteString("# ispmux DHCP benchmark\n\n")
	fmt.Fprintf(&b, "Run %s on %d CPUs, kernel %s: %d run(s), %d clients, fixed rates %v DORA starts/s for %gs each, client retransmissions after %g s doubled (±1/4), %d retransmissions. CPUs busy before the run: %s. Figures: median [min–max] over the runs.\n\n",
		r.Started, r.CPUs, r.Kernel, r.Runs, r.Clients, r.Rates, r.DurationS, r.TimeoutS, r.Retries, pcts(r.BackgroundCPUPct))
	b.WriteString("| " + strings.Join(dhcpRateHeader, " | ") + " |\n|---|---|" + strings.Repeat("---:|", len(dhcpRateHeader)-2) + "\n")
	for _, row := range r.rateRows() {
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	b.WriteString("\n")
	if rows := r.legRows(); len(rows) > 0 {
		b.WriteString(dhcpLegNote + "\n\n| " + strings.Join(dhcpLegHeader, " | ") + " |\n|---|---|" + strings.Repeat("---:|", len(dhcpLegHeader)-2) + "\n")
		for _, row := range rows {
			b.WriteString("| " + strings.Join(row, " | ") + " |\n")
		}
		b.WriteString("\n")
	}
	for _, l := range r.headline() {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	if len(r.Targets) > 0 {
		b.WriteString("\n| target | wanted | measured | |\n|---|---|---:|---|\n")
		for _, t := range r.Targets {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.What, t.Target, fmtOpt(t.Value, "%.2f"), dhcpMet(t.Met))
		}
	}
	b.WriteString("\nEvery case (run, system, phase):\n\n| run | system | phase | offered/s | completed | loss % | OFFER p99 ms | ACK p99 ms | CPU µs/DORA | busiest | outage: bound, s to 99.9 % | stopped |\n|---:|---|---|---:|---:|---:|---:|---:|---:|---|---|---|\n")
	for _, c := range r.Cases {
		if c.Error != "" {
			fmt.Fprintf(&b, "| %d | %s | %s | %.0f | - | - | - | - | - | - | - | failed: %s |\n", c.Run, c.Name, c.Phase, c.OfferedRate, strings.ReplaceAll(truncate(c.Error, 120), "|", "/"))
			continue
		}
		out := ""
		if c.Phase == PhaseOutage {
			out = fmt.Sprintf("%d, %s", c.Bound, fmtOpt(c.BoundS, "%.2f"))
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %.0f | %d | %.2f | %s | %s | %s | %s | %s | %s |\n", c.Run, c.Name, c.Phase, c.OfferedRate, c.Completed,
			c.LossPct, fmtOpt(c.OfferP99Ms, "%.2f"), fmtOpt(c.AckP99Ms, "%.2f"), fmtOpt(c.CPUUsPerDORA, "%.0f"), c.Saturated, out, c.Stopped)
	}
	fmt.Fprintf(&b, "\nCommand:\n\n```\n%s\n```\n\nSystems under test:\n\n```\n%s\n%s\n```\n\nClient generator (the same for both):\n\n```\n%s\n```\n\n",
		r.Command, r.ISPmuxCommand, r.RelayCommand, r.Generator)
	fmt.Fprintf(&b, "ispmux's limits (fixed rates and search):\n\n```toml\n%s```\n\n", r.ISPmuxLimits)
	if r.OutageLimits != "" {
		fmt.Fprintf(&b, "ispmux's limits in the outage case (and one run with none of these: its defaults):\n\n```toml\n%s```\n\n", r.OutageLimits)
	}
	if len(r.Notes) > 0 {
		b.WriteString("Notes:\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// writeDHCPOutputs writes dhcp.json, dhcp.md and dhcp.svg into dir: the
// chart is CPU per DORA at each fixed rate, both systems.
func writeDHCPOutputs(dir string, r *DHCPResult) error {
	return writeFiles(dir, "dhcp", r, func(w io.Writer) error {
		var bars []Bar
		for _, rate := range r.Rates {
			for _, sys := range []string{CaseDHCPISPmux, CaseDHCPRelay} {
				if st := r.Summary[sys+"."+dhcpRateKey(rate)+".cpu_us_per_dora"]; st != nil {
					label := sys
					if sys == CaseDHCPRelay {
						label = "dhcrelay"
					}
					bars = append(bars, Bar{label + " " + dhcpRateKey(rate) + "/s", math.Round(st.Median)})
				}
			}
		}
		title := fmt.Sprintf("CPU µs per DORA (median of %d runs)", r.Runs)
		return writeBarChart(w, title, "CPU µs per completed DORA", "µs", bars)
	})
}
