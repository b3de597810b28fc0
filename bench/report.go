package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// Case names, in the order they run.
const (
	CaseISPmux = "ispmux"
	CaseKernel = "kernel"
	CaseBare   = "bare"
)

// sample is one reading of every counter the benchmark uses.
type sample struct {
	at        time.Time
	offered   uint64   // generator eth0 tx_packets
	forwarded uint64   // sum of rx_packets of every ISP router's eth0
	cpu       ProcStat // /proc/stat
	hasProc   bool     // procTicks is valid (a forwarder process exists)
	procTicks uint64   // forwarder process utime+stime
}

// Case is the result of one system under test.
type Case struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Command     string `json:"command,omitempty"`

	WindowS          float64 `json:"window_s"`
	OfferedPackets   uint64  `json:"offered_packets"`
	ForwardedPackets uint64  `json:"forwarded_packets"`
	OfferedPPS       float64 `json:"offered_pps"`
	ForwardedPPS     float64 `json:"forwarded_pps"`
	LossPct          float64 `json:"loss_pct"`

	// CPUBusyS is the whole machine's busy CPU time over the window.
	CPUBusyS float64 `json:"cpu_busy_s"`
	// CPUBusyPct is each CPU's busy share of the window, in percent.
	CPUBusyPct []float64 `json:"cpu_busy_pct"`
	// CPUUsPerPktTotal is CPUBusyS in µs per forwarded packet; null when
	// nothing was forwarded.
	CPUUsPerPktTotal *float64 `json:"cpu_us_per_pkt_total"`
	// CPUSPerMpkt is the same per million forwarded packets.
	CPUSPerMpkt *float64 `json:"cpu_s_per_mpkt"`
	// ProcCPUS is the forwarder process's own CPU time (utime+stime of
	// all its threads); null for the kernel case.
	ProcCPUS *float64 `json:"proc_cpu_s"`
	// ProcCPUSPerMpkt is ProcCPUS per million forwarded packets.
	ProcCPUSPerMpkt *float64 `json:"proc_cpu_s_per_mpkt"`

	// Diagnostics the forwarder reported (ispmux: its port counters).
	Diagnostics map[string]any `json:"diagnostics,omitempty"`
	// Error is set when the case could not be measured.
	Error string `json:"error,omitempty"`
}

// Result is the whole benchmark's outcome: forward.json and --json.
type Result struct {
	Benchmark     string  `json:"benchmark"`
	ISPmuxPPS     float64 `json:"ispmux_pps"`
	KernelPPS     float64 `json:"kernel_pps"`
	BarePPS       float64 `json:"bare_pps"`
	RatioVsKernel float64 `json:"ratio_vs_kernel"` // ispmux / kernel, 0 if kernel forwarded nothing
	RatioVsBare   float64 `json:"ratio_vs_bare"`   // ispmux / bare, 0 if bare forwarded nothing
	LossPct       float64 `json:"loss_pct"`        // ispmux's
	Subscribers   int     `json:"subscribers"`
	DurationS     float64 `json:"duration_s"`
	WarmupS       float64 `json:"warmup_s"`
	FrameBytes    int     `json:"frame_bytes"`
	CPUs          int     `json:"cpus"`
	// BackgroundCPUPct is each CPU's busy share while the lab was up but
	// idle, measured just before the cases: other load on the machine,
	// which the whole-machine CPU figures include.
	BackgroundCPUPct []float64 `json:"background_cpu_pct"`
	Kernel           string    `json:"kernel,omitempty"`
	Started          string    `json:"started"`
	Command          string    `json:"command"`
	Generator        string    `json:"generator"`
	Cases            []Case    `json:"cases"`
	Notes            []string  `json:"notes"`
}

func ptr(f float64) *float64 { return &f }

// computeCase derives a case's figures from the readings at the start (a)
// and end (b) of its steady window.
func computeCase(name string, a, b sample) Case {
	c := Case{Name: name}
	dt := b.at.Sub(a.at).Seconds()
	c.WindowS = round(dt, 3)
	c.OfferedPackets = sub(b.offered, a.offered)
	c.ForwardedPackets = sub(b.forwarded, a.forwarded)
	if dt > 0 {
		c.OfferedPPS = round(float64(c.OfferedPackets)/dt, 0)
		c.ForwardedPPS = round(float64(c.ForwardedPackets)/dt, 0)
	}
	if c.OfferedPackets > 0 {
		c.LossPct = round(100*(1-float64(c.ForwardedPackets)/float64(c.OfferedPackets)), 2)
	}
	busy := float64(sub(b.cpu.Total.Busy(), a.cpu.Total.Busy())) / clockTicks
	c.CPUBusyS = round(busy, 2)
	c.CPUBusyPct = busyPct(a.cpu, b.cpu)
	if c.ForwardedPackets > 0 {
		mpkt := float64(c.ForwardedPackets) / 1e6
		c.CPUUsPerPktTotal = ptr(round(busy*1e6/float64(c.ForwardedPackets), 3))
		c.CPUSPerMpkt = ptr(round(busy/mpkt, 3))
		if a.hasProc && b.hasProc {
			p := float64(sub(b.procTicks, a.procTicks)) / clockTicks
			c.ProcCPUS = ptr(round(p, 2))
			c.ProcCPUSPerMpkt = ptr(round(p/mpkt, 3))
		}
	} else if a.hasProc && b.hasProc {
		c.ProcCPUS = ptr(round(float64(sub(b.procTicks, a.procTicks))/clockTicks, 2))
	}
	return c
}

// finish fills the headline figures from the cases.
func (r *Result) finish() {
	for _, c := range r.Cases {
		switch c.Name {
		case CaseISPmux:
			r.ISPmuxPPS, r.LossPct = c.ForwardedPPS, c.LossPct
		case CaseKernel:
			r.KernelPPS = c.ForwardedPPS
		case CaseBare:
			r.BarePPS = c.ForwardedPPS
		}
	}
	r.RatioVsKernel, r.RatioVsBare = 0, 0
	if r.KernelPPS > 0 {
		r.RatioVsKernel = round(r.ISPmuxPPS/r.KernelPPS, 3)
	}
	if r.BarePPS > 0 {
		r.RatioVsBare = round(r.ISPmuxPPS/r.BarePPS, 3)
	}
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

// JSON returns the result as indented JSON with a trailing newline.
func (r *Result) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
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

// WriteTable writes the human-readable table and the headline ratios.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\toffered pps\tforwarded pps\tloss %\tCPU s/Mpkt total\tprocess CPU s/Mpkt\t")
	for _, c := range r.Cases {
		if c.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t\n", c.Name)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.2f\t%s\t%s\t\n", c.Name, c.OfferedPPS, c.ForwardedPPS, c.LossPct,
			fmtOpt(c.CPUSPerMpkt, "%.3f"), fmtOpt(c.ProcCPUSPerMpkt, "%.3f"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nispmux/kernel %.3f  ispmux/bare %.3f  (%d subscribers, %gs window, 64-byte frames)\n",
		r.RatioVsKernel, r.RatioVsBare, r.Subscribers, r.DurationS)
	for _, c := range r.Cases {
		if c.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", c.Name, c.Error)
		}
	}
	return err
}

// Markdown renders forward.md: the table, the exact command, the per-case
// commands and the notes.
func (r *Result) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# ispmux forwarding benchmark\n\n")
	fmt.Fprintf(&b, "Run %s on %d CPUs, kernel %s; %d traffic subscribers, 64-byte UDP frames, %gs steady window after %gs warm-up. CPUs busy before the run: %s.\n\n",
		r.Started, r.CPUs, r.Kernel, r.Subscribers, r.DurationS, r.WarmupS, pcts(r.BackgroundCPUPct))
	b.WriteString("| case | offered pps | forwarded pps | loss % | CPU µs/pkt total | CPU s/Mpkt total | process CPU s/Mpkt | CPUs busy |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range r.Cases {
		if c.Error != "" {
			fmt.Fprintf(&b, "| %s | - | - | - | - | - | - | - |\n", c.Name)
			continue
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.2f | %s | %s | %s | %s |\n", c.Name, c.OfferedPPS, c.ForwardedPPS, c.LossPct,
			fmtOpt(c.CPUUsPerPktTotal, "%.3f"), fmtOpt(c.CPUSPerMpkt, "%.3f"), fmtOpt(c.ProcCPUSPerMpkt, "%.3f"), pcts(c.CPUBusyPct))
	}
	fmt.Fprintf(&b, "\nispmux / kernel = **%.3f**, ispmux / bare = **%.3f**, ispmux loss %.2f %%.\n\n", r.RatioVsKernel, r.RatioVsBare, r.LossPct)
	fmt.Fprintf(&b, "Command:\n\n```\n%s\n```\n\nGenerator (identical for every case):\n\n```\n%s\n```\n\n", r.Command, r.Generator)
	b.WriteString("Systems under test:\n\n")
	for _, c := range r.Cases {
		fmt.Fprintf(&b, "- **%s**: %s", c.Name, c.Description)
		if c.Command != "" {
			fmt.Fprintf(&b, " — `%s`", c.Command)
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
