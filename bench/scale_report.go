package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
)

// Scale point kinds.
const (
	// KindStatic: N [[subscriber]] entries with an address in the
	// configuration file (registered in the store by the start's
	// configuration sync, bound statically).
	KindStatic = "static"
	// KindDHCP: N devices seeded in the store (one customer each, source
	// "api") and a DHCP binding each, restored at start.
	KindDHCP = "dhcp"
	// KindLapsed: the dhcp point's store after an outage: every
	// binding's lease ran out an hour ago. Each run starts on a copy of
	// the seeded store (a start ends what lapsed): the start after the
	// outage, which forwards before the lapsed bindings are ended
	// (LapsedEndedS: when they are).
	KindLapsed = "lapsed"
	// KindImport: N customers seeded in the store and no device; the
	// first run attaches N devices to them (one each) through the bulk
	// device import (`ispmux ctl --socket … device-import`, one file per
	// ISP) once ispmux forwards (ImportS), and the later runs restart on
	// them (no bindings). Its first start is of a store without devices.
	KindImport = "import"
)

// ScalePoint is one measured (subscribers, kind) point of bench scale.
// Times are medians over the runs; the *_min/*_max fields are their range.
type ScalePoint struct {
	Subscribers int    `json:"subscribers"`
	Kind        string `json:"kind"`
	// FirstStartS: the first `ispmux run` on the freshly seeded state,
	// from exec to the "forwarding" log line (tables filled, workers on).
	FirstStartS float64 `json:"first_start_s"`
	// FirstStartCPUS and RestartCPUS are ispmux's CPU time (user +
	// system, all threads) from exec to "forwarding": on a shared
	// machine a steadier figure than the wall-clock time. For a lapsed
	// point, to the lapsed bindings' end (LapsedEndedS): the start's
	// whole work, the ends beside the first DHCP included.
	FirstStartCPUS float64 `json:"first_start_cpu_s"`
	RestartCPUS    float64 `json:"restart_cpu_s"`
	// LapsedEndedS (lapsed points): from exec to the log line saying
	// the lapsed bindings are ended, beside the first DHCP (median of the
	// runs).
	LapsedEndedS float64 `json:"lapsed_ended_s,omitempty"`
	// RestartS: a later start on the same state (median of the runs).
	RestartS    float64 `json:"restart_s"`
	RestartMinS float64 `json:"restart_min_s"`
	RestartMaxS float64 `json:"restart_max_s"`
	// ReloadS: SIGHUP with one [[subscriber]] entry added, to the
	// "reloaded" log line (median of the runs).
	ReloadS    float64 `json:"reload_s"`
	ReloadMinS float64 `json:"reload_min_s"`
	ReloadMaxS float64 `json:"reload_max_s"`
	// ListS: `ispmux ctl devices --limit 1000` then `ctl bindings --limit
	// 1000` (first pages, the control socket; median of the runs).
	ListS float64 `json:"list_s"`
	// RSSAnonBytes is RssAnon after a GC (runtime.GC and
	// debug.FreeOSMemory in the process, see scale_gc.go), settled;
	// RSSAnonBytesPerSubscriber is (RSSAnonBytes − the base run's) ÷
	// subscribers.
	RSSAnonBytes              int64   `json:"rss_anon_bytes"`
	RSSAnonBytesPerSubscriber float64 `json:"rss_anon_bytes_per_subscriber"`
	// IdleCPUPct is ispmux's CPU time (user + system, all threads) in
	// percent of one CPU over IdleWindowS seconds after start-up settled
	// (after the GC of RSSAnonBytes), with no traffic and no API calls:
	// what the subscribers cost while nothing happens (timers, expiry
	// scans, checkpoints). Median of the runs.
	IdleCPUPct  float64 `json:"idle_cpu_pct"`
	IdleWindowS float64 `json:"idle_window_s,omitempty"`
	// PeakRSSBytes is VmHWM at the end of the first run.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// StoreBytes is the store's size after the first run (its bbolt
	// file and its binding journal);
	// StoreBytesPerSubscriber is that ÷ subscribers.
	StoreBytes              int64   `json:"store_bytes"`
	StoreBytesPerSubscriber float64 `json:"store_bytes_per_subscriber"`
	// CompactS is `ispmux compact -c` on the point's state after its
	// last run (ispmux stopped), wall clock; CompactPeakRSSBytes is that
	// process's peak RSS (its maxrss: the store's mapped file pages
	// count); CompactBeforeBytes and CompactAfterBytes are the store
	// file's size (its bbolt file, not the journal) before and after.
	CompactS            float64 `json:"compact_s,omitempty"`
	CompactPeakRSSBytes int64   `json:"compact_peak_rss_bytes,omitempty"`
	CompactBeforeBytes  int64   `json:"compact_before_bytes,omitempty"`
	CompactAfterBytes   int64   `json:"compact_after_bytes,omitempty"`
	// ImportS (import points): the bulk device import of the first run,
	// every ISP's file in turn, from the first ctl's exec to the last's
	// exit; ImportDevicesPerS is subscribers ÷ that; ImportPeakRSSBytes
	// is ispmux's VmHWM right after it.
	ImportS            float64 `json:"import_s,omitempty"`
	ImportDevicesPerS  float64 `json:"import_devices_per_s,omitempty"`
	ImportPeakRSSBytes int64   `json:"import_peak_rss_bytes,omitempty"`
	// SeedS is the time the benchmark took to write the state (the store,
	// or the configuration file for static points).
	SeedS float64 `json:"seed_s"`
	Runs  int     `json:"runs"`
	Error string  `json:"error,omitempty"`
}

// Linearity is the verdict on one kind's curve between its two largest
// points: the per-subscriber time at the largest ÷ at the one below.
type Linearity struct {
	Kind      string  `json:"kind"`
	Metric    string  `json:"metric"`
	From      int     `json:"from"`
	To        int     `json:"to"`
	Ratio     float64 `json:"ratio"` // per-subscriber time at To ÷ at From
	Linear    bool    `json:"linear"`
	Threshold float64 `json:"threshold"`
}

// LinearThreshold is the largest per-subscriber growth still called linear.
const LinearThreshold = 1.5

// ScaleTargets are issue 11's targets at 1M subscribers.
const (
	TargetFirstStartS     = 5.0
	TargetRestartS        = 3.0
	TargetRSSPerSubscribe = 400.0
)

// ScaleResult is the outcome of one bench scale run.
type ScaleResult struct {
	Benchmark   string        `json:"benchmark"`
	Command     string        `json:"command"`
	Started     string        `json:"started"`
	CPUs        int           `json:"cpus"`
	Kernel      string        `json:"kernel"`
	Seeding     string        `json:"seeding"`
	Runs        int           `json:"runs"`
	LoadBefore  string        `json:"load_before,omitempty"` // /proc/loadavg's first three fields
	LoadAfter   string        `json:"load_after,omitempty"`
	BaseRSSAnon int64         `json:"base_rss_anon_bytes"`
	Points      []ScalePoint  `json:"points"`
	Linearity   []Linearity   `json:"linearity"`
	Targets     []ScaleTarget `json:"targets,omitempty"`
	Notes       []string      `json:"notes"`
}

// ScaleTarget is one of the 1M targets, met or not. Name, Want and Got
// say it in words for the rendered document.
type ScaleTarget struct {
	Kind   string  `json:"kind"`
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	Target float64 `json:"target"`
	Met    bool    `json:"met"`
	Name   string  `json:"name"`
	Want   string  `json:"want"`
	Got    float64 `json:"got"`
}

func newTarget(kind, metric, what, unit string, value, target float64) ScaleTarget {
	return ScaleTarget{Kind: kind, Metric: metric, Value: value, Target: target, Met: value <= target,
		Name: kind + " " + what + " at 1M", Want: fmt.Sprintf("≤ %g %s", target, unit), Got: value}
}

// linearity judges each kind's curve for first start, restart and reload
// (wall clock, and the starts' CPU time):
// per-subscriber time at the largest point ÷ at the next smaller one, with
// threshold (e.g. 1.5). Points that failed, or whose time is below 50 ms
// (fixed costs dominate: no verdict on noise), are left out.
func linearity(points []ScalePoint, threshold float64) []Linearity {
	var out []Linearity
	kinds := map[string][]ScalePoint{}
	var order []string
	for _, p := range points {
		if p.Error != "" || p.Subscribers <= 0 {
			continue
		}
		if _, ok := kinds[p.Kind]; !ok {
			order = append(order, p.Kind)
		}
		kinds[p.Kind] = append(kinds[p.Kind], p)
	}
	for _, k := range order {
		ps := kinds[k]
		sort.Slice(ps, func(i, j int) bool { return ps[i].Subscribers < ps[j].Subscribers })
		for _, m := range []struct {
			name string
			get  func(p ScalePoint) float64
		}{
			{"first_start_s", func(p ScalePoint) float64 { return p.FirstStartS }},
			{"restart_s", func(p ScalePoint) float64 { return p.RestartS }},
			{"reload_s", func(p ScalePoint) float64 { return p.ReloadS }},
			{"first_start_cpu_s", func(p ScalePoint) float64 { return p.FirstStartCPUS }},
			{"restart_cpu_s", func(p ScalePoint) float64 { return p.RestartCPUS }},
			{"compact_s", func(p ScalePoint) float64 { return p.CompactS }},
			{"import_s", func(p ScalePoint) float64 { return p.ImportS }},
		} {
			var usable []ScalePoint
			for _, p := range ps {
				if m.get(p) >= 0.05 {
					usable = append(usable, p)
				}
			}
			if len(usable) < 2 {
				continue
			}
			a, b := usable[len(usable)-2], usable[len(usable)-1]
			r := (m.get(b) / float64(b.Subscribers)) / (m.get(a) / float64(a.Subscribers))
			out = append(out, Linearity{Kind: k, Metric: m.name, From: a.Subscribers, To: b.Subscribers,
				Ratio: round(r, 2), Linear: r <= threshold, Threshold: threshold})
		}
	}
	return out
}

// targets checks the points at 1M (or more) against issue 11's targets. A
// point that failed misses them all (its figures are what it got to).
func targets(points []ScalePoint) []ScaleTarget {
	var out []ScaleTarget
	for _, p := range points {
		if p.Subscribers < 1000000 || p.Kind == KindImport {
			continue // an import point's first start is of a store without devices
		}
		ts := []ScaleTarget{
			newTarget(p.Kind, "first_start_s", "first start", "s", p.FirstStartS, TargetFirstStartS),
			newTarget(p.Kind, "restart_s", "restart", "s", p.RestartS, TargetRestartS),
			newTarget(p.Kind, "rss_anon_bytes_per_subscriber", "RssAnon per subscriber", "B", p.RSSAnonBytesPerSubscriber, TargetRSSPerSubscribe),
		}
		if p.Error != "" {
			for i := range ts {
				ts[i].Met = false
				ts[i].Name += " (the point failed: " + p.Error + ")"
			}
		}
		out = append(out, ts...)
	}
	return out
}

// finish computes the verdicts and states them in the notes too (the
// rendered document shows the notes). It may be run again on a result
// read back (--from-json).
func (r *ScaleResult) finish() {
	r.Linearity = linearity(r.Points, LinearThreshold)
	r.Targets = targets(r.Points)
	var notes []string
	for _, n := range r.Notes {
		if !strings.HasPrefix(n, verdictPrefix) {
			notes = append(notes, n)
		}
	}
	for _, v := range r.verdicts() {
		notes = append(notes, verdictPrefix+v+".")
	}
	var cpu []string
	for _, p := range r.Points {
		if p.Error == "" {
			cpu = append(cpu, fmt.Sprintf("%s %s %.2f / %.2f", p.Kind, humanCount(p.Subscribers), p.FirstStartCPUS, p.RestartCPUS))
		}
	}
	var compact, imports []string
	for _, p := range r.Points {
		if p.Error == "" && p.CompactS > 0 {
			compact = append(compact, fmt.Sprintf("%s %s %.2f s, peak RSS %.0f MB, %.0f → %.0f MB", p.Kind, humanCount(p.Subscribers), p.CompactS,
				float64(p.CompactPeakRSSBytes)/1e6, float64(p.CompactBeforeBytes)/1e6, float64(p.CompactAfterBytes)/1e6))
		}
		if p.Error == "" && p.ImportS > 0 {
			imports = append(imports, fmt.Sprintf("%s %.2f s, %.0f devices/s, ispmux's peak RSS %.0f MB", humanCount(p.Subscribers), p.ImportS,
				p.ImportDevicesPerS, float64(p.ImportPeakRSSBytes)/1e6))
		}
	}
	if len(compact) > 0 {
		notes = append(notes, verdictPrefix+"`ispmux compact` after each point's last run: "+strings.Join(compact, "; ")+".")
	}
	if len(imports) > 0 {
		notes = append(notes, verdictPrefix+"bulk device import (ctl device-import over the control socket, batches of 500 a transaction): "+strings.Join(imports, "; ")+".")
	}
	if len(cpu) > 0 {
		notes = append(notes, verdictPrefix+"ispmux's CPU time (user + system, every thread) from exec to forwarding, first start / median restart, in seconds: "+strings.Join(cpu, "; ")+".")
	}
	if r.LoadBefore != "" {
		notes = append(notes, verdictPrefix+"load average before the run "+r.LoadBefore+", after "+r.LoadAfter+".")
	}
	r.Notes = notes
}

// verdictPrefix marks the notes finish writes.
const verdictPrefix = "Verdict: "

// JSON returns the result as indented JSON with a trailing newline.
func (r *ScaleResult) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func scaleRange(med, lo, hi float64, runs int) string {
	if runs <= 1 {
		return fmt.Sprintf("%.3f", med)
	}
	return fmt.Sprintf("%.3f (%.3f–%.3f)", med, lo, hi)
}

// rows renders the points as table rows (header first).
func (r *ScaleResult) rows() [][]string {
	out := [][]string{{"subscribers", "kind", "first start s (CPU s)", "restart s (min–max)", "restart CPU s", "lapsed ended s", "reload s (min–max)", "ctl pages s",
		"RssAnon MB", "B/sub", "peak RSS MB", "store B/sub", "idle CPU %"}}
	for _, p := range r.Points {
		if p.Error != "" {
			out = append(out, []string{humanCount(p.Subscribers), p.Kind, "error: " + truncate(p.Error, 80), "", "", "", "", "", "", "", "", "", ""})
			continue
		}
		out = append(out, []string{humanCount(p.Subscribers), p.Kind, fmt.Sprintf("%.3f (%.2f)", p.FirstStartS, p.FirstStartCPUS),
			scaleRange(p.RestartS, p.RestartMinS, p.RestartMaxS, p.Runs), fmt.Sprintf("%.2f", p.RestartCPUS), lapsedCell(p), scaleRange(p.ReloadS, p.ReloadMinS, p.ReloadMaxS, p.Runs),
			fmt.Sprintf("%.3f", p.ListS), fmt.Sprintf("%.0f", float64(p.RSSAnonBytes)/1e6),
			fmt.Sprintf("%.0f", p.RSSAnonBytesPerSubscriber), fmt.Sprintf("%.0f", float64(p.PeakRSSBytes)/1e6),
			fmt.Sprintf("%.0f", p.StoreBytesPerSubscriber), idleCell(p)})
	}
	return out
}

// lapsedCell is when p's lapsed bindings were ended, or "–" (not a
// lapsed point).
func lapsedCell(p ScalePoint) string {
	if p.Kind != KindLapsed || p.LapsedEndedS == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f", p.LapsedEndedS)
}

// idleCell is p's idle CPU, or "–" when it was not measured
// (--idle-window 0).
func idleCell(p ScalePoint) string {
	if p.IdleWindowS == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", p.IdleCPUPct)
}

// verdicts are the linearity and target lines, in words.
func (r *ScaleResult) verdicts() []string {
	var out []string
	for _, l := range r.Linearity {
		word := "linear"
		if !l.Linear {
			word = "NOT linear"
		}
		out = append(out, fmt.Sprintf("%s %s: per-subscriber time at %s ÷ at %s = %.2f (≤ %.1f is linear): %s",
			l.Kind, l.Metric, humanCount(l.To), humanCount(l.From), l.Ratio, l.Threshold, word))
	}
	for _, t := range r.Targets {
		word := "met"
		if !t.Met {
			word = "MISSED"
		}
		out = append(out, fmt.Sprintf("target %s %s at 1M: %.3g (target ≤ %g): %s", t.Kind, t.Metric, t.Value, t.Target, word))
	}
	return out
}

// WriteTable prints the curve and the verdicts.
func (r *ScaleResult) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, row := range r.rows() {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "base RssAnon (no subscribers): %.0f MB\n", float64(r.BaseRSSAnon)/1e6)
	for _, v := range r.verdicts() {
		fmt.Fprintln(w, v)
	}
	return nil
}

// Markdown renders the result as a Markdown table with the verdicts.
func (r *ScaleResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# bench scale\n\n`%s` (%s, %d CPUs, kernel %s)\n\n", r.Command, r.Started, r.CPUs, r.Kernel)
	rows := r.rows()
	for i, row := range rows {
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
		if i == 0 {
			b.WriteString("|" + strings.Repeat(" --- |", len(row)) + "\n")
		}
	}
	fmt.Fprintf(&b, "\nBase RssAnon (no subscribers): %.0f MB. Seeding: %s\n\n", float64(r.BaseRSSAnon)/1e6, r.Seeding)
	for _, v := range r.verdicts() {
		b.WriteString("- " + v + "\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range r.Notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}

// chart draws the first start per subscriber point (milliseconds), with
// the package's bar chart.
func (r *ScaleResult) chart(w io.Writer) error {
	var bars []Bar
	ps := slices.Clone(r.Points)
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Kind != ps[j].Kind {
			return ps[i].Kind < ps[j].Kind
		}
		return ps[i].Subscribers < ps[j].Subscribers
	})
	for _, p := range ps {
		if p.Error != "" {
			continue
		}
		bars = append(bars, Bar{Label: p.Kind + " " + humanCount(p.Subscribers), Value: math.Round(p.FirstStartS * 1000)})
	}
	return writeBarChart(w, "ispmux first start to forwarding", "milliseconds", "ms", bars)
}

// humanCount writes 10000 as 10k and 1000000 as 1M.
func humanCount(n int) string {
	switch {
	case n >= 1000000 && n%1000000 == 0:
		return fmt.Sprintf("%dM", n/1000000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// median returns the median of xs and their min and max (0s if empty).
func median(xs []float64) (med, lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med = s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[0], s[n-1]
}
