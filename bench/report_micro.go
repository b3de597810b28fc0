package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ispmux/ispmux/internal/shellquote"
)

// bench micro: the Go microbenchmarks of the lookup and the pipeline next
// to their same-run memory floors (issue 11, deliverable 5), run from the
// source tree: `go test -c` builds the classifier's and the engine's test
// binaries once, then every run executes both, one after the other, pinned
// to one CPU; a run's ratios compare figures of the same run. Results go to
// micro.json, micro.md and micro.svg in --out.

// microSpec is one test binary of bench micro and the benchmarks it runs.
type microSpec struct {
	pkg   string // import path relative to the module root
	bench string // -test.bench pattern
}

var microSpecs = []microSpec{
	{"./classifier", `^BenchmarkMACTable(Floor)?$/^(1K|100K|1M)$`}, // and 1M/single (same function)
	{"./engine", `^BenchmarkPipeline(Floor|Down)?$/^(bare|1K|100K|1M)$`},
}

// Benchmark names the targets use.
const (
	benchMAC1M       = "BenchmarkMACTable/1M"
	benchMACFloor1M  = "BenchmarkMACTableFloor/1M"
	benchPipe1K      = "BenchmarkPipeline/1K"
	benchPipe1M      = "BenchmarkPipeline/1M"
	benchPipeBare    = "BenchmarkPipeline/bare"
	benchPipeFloor1M = "BenchmarkPipelineFloor/1M"
)

// MicroResult is bench micro's outcome: micro.json.
type MicroResult struct {
	Benchmark  string        `json:"benchmark"` // "micro"
	Runs       int           `json:"runs"`
	Benchtime  string        `json:"benchtime"`
	CPU        string        `json:"cpu,omitempty"`
	GoVersion  string        `json:"go"`
	Kernel     string        `json:"kernel,omitempty"`
	Started    string        `json:"started"`
	LoadBefore string        `json:"load_before,omitempty"`
	LoadAfter  string        `json:"load_after,omitempty"`
	Command    string        `json:"command"`
	Benchmarks []MicroBench  `json:"benchmarks"`
	Ratios     []MicroRatio  `json:"ratios"`
	Targets    []Target      `json:"targets"`
	RunsRaw    [][]benchLine `json:"runs_raw"`
	Notes      []string      `json:"notes"`
}

// MicroBench is one benchmark over the runs.
type MicroBench struct {
	Name    string           `json:"name"`
	NsPerOp *Stat            `json:"ns_per_op"`
	Allocs  *Stat            `json:"allocs_per_op"`
	Metrics map[string]*Stat `json:"metrics,omitempty"`
}

// MicroRatio is a same-run ratio over the runs.
type MicroRatio struct {
	Name  string `json:"name"`
	Value *Stat  `json:"value"`
}

// benchLine is one result line of `go test -bench`.
type benchLine struct {
	Name    string             `json:"name"` // without the -GOMAXPROCS suffix
	N       int64              `json:"n"`
	NsPerOp float64            `json:"ns_per_op"`
	Allocs  float64            `json:"allocs_per_op"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

var benchLineRE = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

// parseBenchOutput returns the result lines of `go test -bench` output.
func parseBenchOutput(out []byte) ([]benchLine, error) {
	var res []benchLine
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := benchLineRE.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		n, _ := strconv.ParseInt(m[2], 10, 64)
		l := benchLine{Name: m[1], N: n, Metrics: map[string]float64{}}
		f := strings.Fields(m[3])
		if len(f)%2 != 0 {
			return nil, fmt.Errorf("benchmark line %q: odd number of value fields", sc.Text())
		}
		seenNs := false
		for i := 0; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: %v", sc.Text(), err)
			}
			switch f[i+1] {
			case "ns/op":
				l.NsPerOp, seenNs = v, true
			case "allocs/op":
				l.Allocs = v
			case "B/op":
			default:
				l.Metrics[f[i+1]] = v
			}
		}
		if !seenNs {
			return nil, fmt.Errorf("benchmark line %q: no ns/op", sc.Text())
		}
		if len(l.Metrics) == 0 {
			l.Metrics = nil
		}
		res = append(res, l)
	}
	return res, sc.Err()
}

// microFinish computes the summaries, ratios and targets from RunsRaw.
func (r *MicroResult) microFinish() {
	byName := map[string]*MicroBench{}
	var order []string
	ns, allocs := map[string][]float64{}, map[string][]float64{}
	metrics := map[string]map[string][]float64{}
	for _, run := range r.RunsRaw {
		for _, l := range run {
			if _, ok := byName[l.Name]; !ok {
				byName[l.Name] = &MicroBench{Name: l.Name}
				order = append(order, l.Name)
				metrics[l.Name] = map[string][]float64{}
			}
			ns[l.Name] = append(ns[l.Name], l.NsPerOp)
			allocs[l.Name] = append(allocs[l.Name], l.Allocs)
			for k, v := range l.Metrics {
				metrics[l.Name][k] = append(metrics[l.Name][k], v)
			}
		}
	}
	r.Benchmarks = nil
	for _, n := range order {
		b := byName[n]
		b.NsPerOp, b.Allocs = stat(ns[n]), stat(allocs[n])
		for k, v := range metrics[n] {
			if b.Metrics == nil {
				b.Metrics = map[string]*Stat{}
			}
			b.Metrics[k] = stat(v)
		}
		r.Benchmarks = append(r.Benchmarks, *b)
	}
	// Same-run ratios, then their median over the runs.
	per := func(f func(map[string]float64) (float64, bool)) *Stat {
		var xs []float64
		for _, run := range r.RunsRaw {
			m := map[string]float64{}
			for _, l := range run {
				m[l.Name] = l.NsPerOp
			}
			if v, ok := f(m); ok {
				xs = append(xs, round(v, 3))
			}
		}
		return stat(xs)
	}
	macRatio := per(func(m map[string]float64) (float64, bool) {
		a, ok1 := m[benchMAC1M]
		b, ok2 := m[benchMACFloor1M]
		return a / b, ok1 && ok2 && b > 0
	})
	pipeRatio := per(func(m map[string]float64) (float64, bool) {
		a, ok1 := m[benchPipe1M]
		f, ok2 := m[benchPipeFloor1M]
		bare, ok3 := m[benchPipeBare]
		return a / (f + bare), ok1 && ok2 && ok3 && f+bare > 0
	})
	r.Ratios = nil
	r.Targets = nil
	if macRatio != nil {
		r.Ratios = append(r.Ratios, MicroRatio{Name: "MAC lookup ÷ memory floor at 1M", Value: macRatio})
		r.Targets = append(r.Targets, Target{Name: "MAC lookup at 1M ≤ 1.3× the memory floor", Want: "≤ 1.30", Got: round(macRatio.Median, 3), Met: macRatio.Median <= 1.3, Note: "median of same-run ratios"})
	}
	if b := r.bench(benchPipe1K); b != nil && b.NsPerOp != nil {
		r.Targets = append(r.Targets, Target{Name: "pipeline at 1K ≤ 50 ns per packet", Want: "≤ 50 ns", Got: round(b.NsPerOp.Median, 1), Met: b.NsPerOp.Median <= 50, Note: "median"})
	}
	if pipeRatio != nil {
		r.Ratios = append(r.Ratios, MicroRatio{Name: "pipeline ÷ (memory floor + bare) at 1M", Value: pipeRatio})
		r.Targets = append(r.Targets, Target{Name: "pipeline at 1M ≤ 1.5× (memory floor + bare)", Want: "≤ 1.50", Got: round(pipeRatio.Median, 3), Met: pipeRatio.Median <= 1.5, Note: "median of same-run ratios"})
	}
	if len(r.Benchmarks) > 0 {
		worst := 0.0
		for _, b := range r.Benchmarks {
			if b.Allocs != nil {
				worst = max(worst, b.Allocs.Max)
			}
		}
		r.Targets = append(r.Targets, Target{Name: "0 allocations per operation", Want: "0 in every benchmark and run", Got: worst, Met: worst == 0, Note: "highest"})
	}
}

func (r *MicroResult) bench(name string) *MicroBench {
	for i := range r.Benchmarks {
		if r.Benchmarks[i].Name == name {
			return &r.Benchmarks[i]
		}
	}
	return nil
}

// JSON returns the result as indented JSON with a trailing newline.
func (r *MicroResult) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WriteTable writes the human-readable summary.
func (r *MicroResult) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "benchmark\tns/op median [min–max]\tallocs/op\t")
	for _, b := range r.Benchmarks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", b.Name, fmtStat(b.NsPerOp, "%.1f"), fmtStat(b.Allocs, "%.0f"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, x := range r.Ratios {
		fmt.Fprintf(w, "%s: %s\n", x.Name, fmtStat(x.Value, "%.2f"))
	}
	for _, t := range r.Targets {
		fmt.Fprintf(w, "target %s: got %g: %s\n", t.Name, t.Got, metWord(t.Met))
	}
	return nil
}

// Markdown renders micro.md.
func (r *MicroResult) Markdown() string {
	return "# ispmux microbenchmarks\n\n" + r.section("##", "micro.svg")
}

// section renders the body (headings at level h, the chart at svg).
func (r *MicroResult) section(h, svg string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Run %s, %s, %s, kernel %s; load average %s before, %s after; %d runs of `%s`, each run both test binaries one after the other pinned to one CPU, -benchtime %s.\n\n",
		r.Started, orDash(r.CPU), r.GoVersion, orDash(r.Kernel), orDash(r.LoadBefore), orDash(r.LoadAfter), r.Runs, r.Command, r.Benchtime)
	if len(r.Targets) > 0 {
		b.WriteString("| target | want | got | |\n|---|---|---:|---|\n")
		for _, t := range r.Targets {
			fmt.Fprintf(&b, "| %s | %s | %g (%s) | **%s** |\n", t.Name, t.Want, t.Got, t.Note, metWord(t.Met))
		}
		b.WriteString("\n")
	}
	if len(r.Ratios) > 0 {
		b.WriteString("| same-run ratio | median [min–max] |\n|---|---:|\n")
		for _, x := range r.Ratios {
			fmt.Fprintf(&b, "| %s | %s |\n", x.Name, fmtStat(x.Value, "%.2f"))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "%s Results\n\nns per operation (per lookup, per read, per packet), median [min–max] over the runs.\n\n| benchmark | ns/op | allocs/op | other |\n|---|---:|---:|---|\n", h)
	for _, x := range r.Benchmarks {
		var other []string
		for _, k := range sortedKeys(x.Metrics) {
			other = append(other, fmt.Sprintf("%s %s", fmtStat(x.Metrics[k], "%.2f"), k))
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", x.Name, fmtStat(x.NsPerOp, "%.1f"), fmtStat(x.Allocs, "%.0f"), strings.Join(other, ", "))
	}
	if svg != "" {
		fmt.Fprintf(&b, "\n![ns per operation](%s)\n", svg)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// chart draws micro.svg: per table size, the lookup, its floor, the
// pipeline and its floor + bare.
func (r *MicroResult) chart(w io.Writer) error {
	sizes := []string{"1K", "100K", "1M"}
	series := []string{"MAC lookup", "MAC floor", "pipeline", "pipeline floor + bare"}
	vals := make([][]*Stat, len(sizes))
	bare := r.bench(benchPipeBare)
	for i, sz := range sizes {
		get := func(n string) *Stat {
			if b := r.bench(n); b != nil {
				return b.NsPerOp
			}
			return nil
		}
		var fb *Stat
		if f := get("BenchmarkPipelineFloor/" + sz); f != nil && bare != nil && bare.NsPerOp != nil {
			fb = &Stat{Median: f.Median + bare.NsPerOp.Median, Min: f.Min + bare.NsPerOp.Min, Max: f.Max + bare.NsPerOp.Max, N: f.N}
		}
		vals[i] = []*Stat{get("BenchmarkMACTable/" + sz), get("BenchmarkMACTableFloor/" + sz), get("BenchmarkPipeline/" + sz), fb}
	}
	return writeGroupedChart(w, "ns per operation by table size (median, min–max)", "ns per op", sizes, series, vals)
}

// microBench runs `ispmux bench micro`.
func microBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench micro", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.Int("runs", 5, "runs (each runs every benchmark once): medians with min and max")
	benchtime := fs.String("benchtime", "1s", "go test -benchtime")
	src := fs.String("src", ".", "the ispmux source tree (the module root)")
	out := fs.String("out", "bench-out", "directory for micro.json, micro.md and micro.svg")
	cpu := fs.String("cpu", fwdCPU, "CPU the benchmarks are pinned to (taskset); empty: not pinned")
	asJSON := fs.Bool("json", false, "print one JSON object instead of the table")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *runs < 1 || *runs > 50 || fs.NArg() != 0 {
		return errors.New("usage: ispmux bench micro [--runs 5] [--benchtime 1s] [--src .] [--out DIR] [--cpu 1] [--json]")
	}
	if !exists(filepath.Join(*src, "go.mod")) {
		return fmt.Errorf("bench micro: %s is not the source tree (no go.mod); run it from the repository or pass --src", *src)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "ispmux-micro-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	p := newHeartbeat(stderr, 3*time.Second)
	defer p.close()
	r := &MicroResult{Benchmark: "micro", Runs: *runs, Benchtime: *benchtime, GoVersion: runtime.Version(), Kernel: kernelRelease(),
		CPU: cpuModel(), Started: time.Now().UTC().Format(time.RFC3339), LoadBefore: loadAvg(),
		Command: shellquote.Join(append([]string{"ispmux", "bench", "micro"}, args...))}
	r.Notes = []string{
		"Memory floor: random 16-byte reads over a table of the same size as the structure measured (the MAC table's slot array at N entries), 64 per batch as the datapath batches, indices precomputed: what touching the memory costs with nothing else done (BenchmarkMACTableFloor, BenchmarkPipelineFloor). Ratios are taken within a run, then their median over the runs.",
		"BenchmarkPipeline/bare is the worker, the in-memory ports, the generator's copy into RX frames, the egress copy and TX with a handler that decides nothing: the pipeline's floor apart from the table.",
		"BenchmarkPipelineDown is the pipeline the other way (no target): an ISP's router sending to its bound subscribers, through the FIB lookup and the new header towards the access port; its /bare is the bare worker from the uplink to the access port.",
	}
	bins := make([]string, len(microSpecs))
	for i, s := range microSpecs {
		bins[i] = filepath.Join(tmp, strings.Trim(strings.ReplaceAll(s.pkg, "/", "_"), "._")+".test")
		p.set("go test -c %s", s.pkg)
		cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", bins[i], s.pkg)
		cmd.Dir = *src
		if o, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("bench micro: go test -c %s: %v\n%s", s.pkg, err, o)
		}
	}
	for run := 1; run <= *runs; run++ {
		var lines []benchLine
		for i, s := range microSpecs {
			p.set("run %d/%d: %s", run, *runs, s.pkg)
			argv := []string{bins[i], "-test.run", "^$", "-test.bench", s.bench, "-test.benchmem", "-test.benchtime", *benchtime}
			if *cpu != "" {
				argv = append([]string{"taskset", "-c", *cpu}, argv...)
			}
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Dir = filepath.Join(*src, s.pkg)
			o, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("bench micro: %s: %v\n%s", shellquote.Join(argv), err, o)
			}
			l, err := parseBenchOutput(o)
			if err != nil {
				return fmt.Errorf("bench micro: %s: %w", s.pkg, err)
			}
			for _, x := range l {
				p.logf("run %d: %s %.1f ns/op, %g allocs/op", run, x.Name, x.NsPerOp, x.Allocs)
			}
			lines = append(lines, l...)
		}
		r.RunsRaw = append(r.RunsRaw, lines)
	}
	r.LoadAfter = loadAvg()
	r.microFinish()
	if err := writeFiles(*out, "micro", r, r.chart); err != nil {
		return err
	}
	return emit(stdout, r, *asJSON, *out, "micro")
}

// cpuModel is /proc/cpuinfo's first "model name".
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
