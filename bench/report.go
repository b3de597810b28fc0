package bench

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// What the benchmarks' results and reports share: Result (the machine's
// load before the run, notes), the report interface with writeFiles
// (NAME.json, .md and .svg) and emit (stdout), and small helpers for
// figures (busyPct, round) and their text (fmtStat, orDash, pcts). Each
// benchmark's own result and rendering are in its files (bench forward:
// forward_result.go, forward_summary.go, forward_report.go; dhcpreport.go,
// scale_report.go, report_micro.go), the charts in svg.go and
// docs/PERFORMANCE.md in render.go.

// Result is what the lab benchmarks' results share: the machine's load
// before the run (backgroundLoad) and notes.
type Result struct {
	// BackgroundCPUPct is each CPU's busy share while the lab was up but
	// idle, measured just before the cases: other load on the machine,
	// which the whole-machine CPU figures include.
	BackgroundCPUPct []float64 `json:"background_cpu_pct"`
	Notes            []string  `json:"notes"`
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

func metWord(b bool) string {
	if b {
		return "met"
	}
	return "MISSED"
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
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
