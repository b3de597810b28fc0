package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// Rendering bench forward's result: the table on stdout (WriteTable),
// forward.md and the forward section of docs/PERFORMANCE.md (Markdown and
// section; render.go's renderForward) and forward.svg (chart).

// caseTitles are the cases' column titles.
var caseTitles = map[string]string{
	CaseISPmux:      "ispmux",
	CaseISPmuxXDP:   "ispmux, XDP fast path",
	CaseKernel:      "kernel (nftables map)",
	CaseKernelRules: "kernel (rule per subscriber)",
	CaseBare:        "bare AF_XDP",
}

// JSON returns the result as indented JSON with a trailing newline.
func (r *ForwardResult) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
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
	has := caseSet(cs)
	rcs := ratioColumns(has)
	for _, rc := range rcs {
		fmt.Fprintf(tw, "\t%s", strings.ReplaceAll(rc.title, " ", ""))
	}
	fmt.Fprintln(tw, "\t")
	for _, row := range r.Sweep {
		fmt.Fprintf(tw, "%s\t%s", sizeLabel(row.Sources), humanPPS(row.OfferedPPS))
		for _, c := range cs {
			fmt.Fprintf(tw, "\t%s", fmtStat(row.NsPerPkt[c], "%.0f"))
		}
		for _, rc := range rcs {
			fmt.Fprintf(tw, "\t%s", fmtRatio(rc.get(row)))
		}
		fmt.Fprintln(tw, "\t")
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
	if has[CaseISPmux] {
		fmt.Fprintf(w, "\nratio_vs_kernel %.3f  ratio_vs_bare %.3f  (other's CPU/pkt ÷ ispmux's at %s sources; higher is better)\n",
			r.RatioVsKernel, r.RatioVsBare, sizeLabel(r.headSources()))
	}
	if r.RatioVsKernelXDP != 0 || r.RatioVsBareXDP != 0 {
		fmt.Fprintf(w, "ratio_vs_kernel_xdp %.3f  ratio_vs_bare_xdp %.3f  (the same for ispmux with its XDP fast path)\n",
			r.RatioVsKernelXDP, r.RatioVsBareXDP)
	}
	for _, t := range r.Targets {
		fmt.Fprintf(w, "target %s: %s, got %.3f (%s): %s\n", t.Name, t.Want, t.Got, t.Note, metWord(t.Met))
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
	return nil
}

func (r *ForwardResult) headSources() int {
	if slices.Contains(r.Sources, 256) || len(r.Sources) == 0 {
		return 256
	}
	return slicesMin(r.Sources)
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
	has := caseSet(cs)
	if has[CaseISPmux] {
		fmt.Fprintf(&b, "**ratio_vs_kernel = %.2f, ratio_vs_bare = %.2f** (the other's CPU per packet ÷ ispmux's at %s sources, lowest over the offered rates; higher is better for ispmux).\n\n",
			r.RatioVsKernel, r.RatioVsBare, sizeLabel(r.headSources()))
	}
	if r.RatioVsKernelXDP != 0 || r.RatioVsBareXDP != 0 {
		var parts []string
		if has[CaseKernel] {
			parts = append(parts, fmt.Sprintf("ratio_vs_kernel_xdp = %.2f", r.RatioVsKernelXDP))
		}
		if has[CaseBare] {
			parts = append(parts, fmt.Sprintf("ratio_vs_bare_xdp = %.2f", r.RatioVsBareXDP))
		}
		fmt.Fprintf(&b, "**With the XDP fast path: %s** (the same ratios for case ispmux-xdp).\n\n", strings.Join(parts, ", "))
	}
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
	rcs := ratioColumns(has)
	for _, rc := range rcs {
		fmt.Fprintf(&b, " %s |", rc.title)
	}
	b.WriteString(" loss % (median) |\n|---|---:|")
	for range len(cs) + len(rcs) {
		b.WriteString("---:|")
	}
	b.WriteString("---|\n")
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
		for _, rc := range rcs {
			fmt.Fprintf(&b, " %s |", fmtRatio(rc.get(row)))
		}
		fmt.Fprintf(&b, " %s |\n", strings.Join(losses, ", "))
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

// caseSet is the set of cases cs.
func caseSet(cs []string) map[string]bool {
	has := make(map[string]bool, len(cs))
	for _, c := range cs {
		has[c] = true
	}
	return has
}

// ratioColumn is a column of same-run ratios in the sweep table.
type ratioColumn struct {
	title string
	get   func(SweepRow) *float64
}

// ratioColumns are the ratio columns for the cases a result has: the
// kernel's and the bare forwarder's CPU per packet over each ispmux
// case's, where both were run.
func ratioColumns(has map[string]bool) []ratioColumn {
	var out []ratioColumn
	if has[CaseISPmux] && has[CaseKernel] {
		out = append(out, ratioColumn{"kernel ÷ ispmux", func(s SweepRow) *float64 { return s.RatioVsKernel }})
	}
	if has[CaseISPmux] && has[CaseBare] {
		out = append(out, ratioColumn{"bare ÷ ispmux", func(s SweepRow) *float64 { return s.RatioVsBare }})
	}
	if has[CaseISPmuxXDP] && has[CaseKernel] {
		out = append(out, ratioColumn{"kernel ÷ ispmux-xdp", func(s SweepRow) *float64 { return s.RatioVsKernelXDP }})
	}
	if has[CaseISPmuxXDP] && has[CaseBare] {
		out = append(out, ratioColumn{"bare ÷ ispmux-xdp", func(s SweepRow) *float64 { return s.RatioVsBareXDP }})
	}
	return out
}
