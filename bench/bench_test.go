package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/lab"
)

const procStatText = `cpu  78755 3 30907 84195 357 11 4367 5 7 0
cpu0 37784 1 16113 42171 65 6 3168 2 0 0
cpu1 40970 2 14794 42024 292 5 1198 3 7 0
intr 1234 0 0
ctxt 99
btime 1700000000
`

func TestParseProcStat(t *testing.T) {
	ps, err := parseProcStat([]byte(procStatText))
	if err != nil {
		t.Fatal(err)
	}
	want := CPUTimes{User: 78755, Nice: 3, System: 30907, Idle: 84195, IOWait: 357, IRQ: 11, SoftIRQ: 4367, Steal: 5}
	if ps.Total != want {
		t.Errorf("total = %+v, want %+v", ps.Total, want)
	}
	if got := ps.Total.Busy(); got != 78755+3+30907+11+4367+5 {
		t.Errorf("busy = %d", got)
	}
	if len(ps.CPU) != 2 || ps.CPU[1].User != 40970 || ps.CPU[0].SoftIRQ != 3168 {
		t.Errorf("per-CPU = %+v", ps.CPU)
	}
	for _, bad := range []string{
		"",
		"intr 1 2 3\n",
		"cpu 1 2 3\n",
		"cpu 1 2 3 4 5 6 7 x 9 10\n",
		"cpu 1 2 3 4 5 6 7 8 9 10\ncpux 1 2 3 4 5 6 7 8 9 10\n",
	} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("parseProcStat(%q): no error", bad)
		}
	}
	// Old kernels had fewer columns after steal: 8 values suffice.
	if _, err := parseProcStat([]byte("cpu 1 2 3 4 5 6 7 8\n")); err != nil {
		t.Errorf("8 columns: %v", err)
	}
}

func TestBusyPct(t *testing.T) {
	a := ProcStat{CPU: []CPUTimes{{User: 100, Idle: 100}, {System: 10, Idle: 10}}}
	b := ProcStat{CPU: []CPUTimes{{User: 150, Idle: 150}, {System: 110, Idle: 10}}}
	got := busyPct(a, b)
	if len(got) != 2 || got[0] != 50 || got[1] != 100 {
		t.Errorf("busyPct = %v, want [50 100]", got)
	}
}

func TestReadProcStatLive(t *testing.T) {
	ps, err := readProcStat()
	if err != nil {
		t.Fatal(err)
	}
	if ps.Total.Busy() == 0 || len(ps.CPU) == 0 {
		t.Errorf("live /proc/stat: %+v", ps)
	}
	if comm, _, err := readPIDStat(os.Getpid()); err != nil || comm == "" {
		t.Errorf("own /proc/PID/stat: %q %v", comm, err)
	}
}

func TestParsePIDStat(t *testing.T) {
	// Field 14 (utime) = 700, field 15 (stime) = 42; the name has spaces
	// and parentheses.
	line := "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 1000 0 0 0 700 42 0 0 20 0 9 0 123 456789 100 18446744073709551615\n"
	comm, ticks, err := parsePIDStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if comm != "my (odd) proc" || ticks != 742 {
		t.Errorf("got %q %d, want %q 742", comm, ticks, "my (odd) proc")
	}
	for _, bad := range []string{
		"",
		"4242 noparens S 1",
		"4242 (x) S 1 2 3",
		"4242 (x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 abc 42 0",
		"4242 (x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 700 -1 0",
	} {
		if _, _, err := parsePIDStat([]byte(bad)); err == nil {
			t.Errorf("parsePIDStat(%q): no error", bad)
		}
	}
}

// cpuAt is a /proc/stat reading with two CPUs whose idle columns are
// idle0 and idle1 ticks, and the aggregate's busy columns busy ticks.
func cpuAt(idle0, idle1, busy uint64) ProcStat {
	return ProcStat{
		Total: CPUTimes{User: busy / 2, SoftIRQ: busy - busy/2, Idle: idle0 + idle1},
		CPU:   []CPUTimes{{User: busy / 2, Idle: idle0}, {SoftIRQ: busy - busy/2, Idle: idle1}},
	}
}

func TestBusySeconds(t *testing.T) {
	// 10 s on 2 CPUs: CPU 0 idle 4 s (busy 6), CPU 1 idle 9 s (busy 1).
	a, b := cpuAt(1000, 2000, 0), cpuAt(1400, 2900, 650)
	if got := busySeconds(a, b, 10*time.Second); math.Abs(got-7) > 1e-9 {
		t.Errorf("busySeconds = %v, want 7", got)
	}
	if got := sampledBusySeconds(a, b); got != 6.5 {
		t.Errorf("sampledBusySeconds = %v, want 6.5", got)
	}
	// Idle a little over the elapsed time (the readings' rounding): the
	// CPU counts as idle, never negative; a counter going backwards
	// counts as all busy, never more than the window.
	if got := busySeconds(cpuAt(0, 0, 0), cpuAt(1010, 0, 0), 10*time.Second); math.Abs(got-10) > 1e-9 {
		t.Errorf("clamped = %v, want 10", got)
	}
	if got := busySeconds(cpuAt(500, 500, 0), cpuAt(0, 1500, 0), 10*time.Second); math.Abs(got-10) > 1e-9 {
		t.Errorf("reset = %v, want 10", got)
	}
	if busySeconds(a, b, 0) != 0 || busySeconds(ProcStat{}, ProcStat{}, time.Second) != 0 {
		t.Error("empty window or no CPUs: want 0")
	}
}

func TestNsPerPacket(t *testing.T) {
	// The case: 1.5 CPU-s per s at 300k pps forwarded; the generator
	// alone: 0.6 CPU-s per s. (1.5 − 0.6) / 300k = 3 µs.
	v, ok := nsPerPacket(7.5, 5, 3, 5, 300_000)
	if !ok || math.Abs(v-3000) > 1e-6 {
		t.Errorf("nsPerPacket = %v %v, want 3000", v, ok)
	}
	// Different window lengths are per second.
	if v, _ := nsPerPacket(3, 2, 6, 10, 300_000); math.Abs(v-3000) > 1e-6 {
		t.Errorf("per second: %v", v)
	}
	for _, c := range [][5]float64{{1, 1, 1, 1, 0}, {1, 0, 1, 1, 1}, {1, 1, 1, 0, 1}} {
		if _, ok := nsPerPacket(c[0], c[1], c[2], c[3], c[4]); ok {
			t.Errorf("nsPerPacket%v: ok", c)
		}
	}
}

func TestStat(t *testing.T) {
	if stat(nil) != nil {
		t.Error("stat(nil) != nil")
	}
	s := stat([]float64{5, 1, 3})
	if *s != (Stat{Median: 3, Min: 1, Max: 5, N: 3}) {
		t.Errorf("odd: %+v", s)
	}
	s = stat([]float64{4, 1, 3, 10})
	if *s != (Stat{Median: 3.5, Min: 1, Max: 10, N: 4}) {
		t.Errorf("even: %+v", s)
	}
	if got := fmtStat(s, "%.0f"); got != "4 [1–10]" {
		t.Errorf("fmtStat = %q", got)
	}
	if got := fmtStat(&Stat{Median: 2, Min: 2, Max: 2, N: 5}, "%.0f"); got != "2" {
		t.Errorf("fmtStat flat = %q", got)
	}
}

func fwdSampleAt(sec float64, attempted, refused, fwd uint64, cpu ProcStat, proc int64) fwdSample {
	s := fwdSample{at: time.Unix(1000, 0).Add(time.Duration(sec * float64(time.Second))),
		gen: genCounters{attempted: attempted, sent: attempted - refused, refused: refused}, forwarded: fwd, cpu: cpu}
	if proc >= 0 {
		s.hasProc, s.procTicks = true, uint64(proc)
	}
	return s
}

func TestComputeTrial(t *testing.T) {
	// 5 s window: 1.5 M offered (1000 refused), 1.485 M forwarded, CPUs
	// idle 2 s and 4 s of the 5, the forwarder process 3 s.
	a := fwdSampleAt(0, 1_000_000, 10, 2_000_000, cpuAt(100, 200, 0), 300)
	b := fwdSampleAt(5, 2_500_000, 1010, 3_485_000, cpuAt(300, 600, 400), 600)
	tr := computeTrial(CaseISPmux, 256, 2, 300_000, "fixed", a, b)
	if tr.OfferedPPS != 300_000 || tr.ForwardedPPS != 297_000 || tr.Offered != 1_500_000 || tr.Refused != 1000 || tr.Forwarded != 1_485_000 {
		t.Errorf("rates: %+v", tr)
	}
	if tr.LossPct != 1 || tr.WindowS != 5 || tr.Run != 2 || tr.Sources != 256 || tr.Rate != 300_000 || tr.Kind != "fixed" {
		t.Errorf("loss/window: %+v", tr)
	}
	if tr.BusyS != 4 || tr.SampledBusyS != 4 {
		t.Errorf("busy %v sampled %v, want 4 4", tr.BusyS, tr.SampledBusyS)
	}
	if tr.ProcCPUS == nil || *tr.ProcCPUS != 3 {
		t.Errorf("proc: %v", tr.ProcCPUS)
	}
	// The calibration forwards nothing and has no loss; the kernel cases
	// have no process.
	c := computeTrial(CaseCalibration, 256, 1, 0, "ceiling", fwdSampleAt(0, 0, 0, 0, cpuAt(0, 0, 0), -1), fwdSampleAt(2, 600_000, 0, 0, cpuAt(100, 150, 0), -1))
	if c.LossPct != 0 || c.ProcCPUS != nil || c.OfferedPPS != 300_000 || c.BusyS != 1.5 {
		t.Errorf("calibration: %+v", c)
	}
	// A counter that went backwards gives 0, not a wrapped huge number.
	z := computeTrial(CaseBare, 1, 1, 1, "fixed", fwdSampleAt(0, 10, 0, 10, cpuAt(0, 0, 0), 10), fwdSampleAt(1, 5, 0, 5, cpuAt(0, 0, 0), 5))
	if z.Offered != 0 || z.Forwarded != 0 || z.LossPct != 0 || *z.ProcCPUS != 0 {
		t.Errorf("reset counters: %+v", z)
	}
}

func TestSearchNDR(t *testing.T) {
	// A system that forwards up to capacity without loss, behind a
	// generator that cannot send more than ceiling.
	sys := func(capacity, ceiling float64, calls *[]float64) ndrTrialFunc {
		return func(_ context.Context, rate float64) (float64, float64, error) {
			*calls = append(*calls, rate)
			off := ceiling
			if rate > 0 && rate < ceiling {
				off = rate
			}
			if off <= capacity {
				return off, 0, nil
			}
			return off, 100 * (1 - capacity/off), nil
		}
	}
	ctx := context.Background()
	var calls []float64
	// Generator-bound: the first (flat-out) trial passes.
	r, err := searchNDR(ctx, sys(1e6, 350_000, &calls), 0.1, 0, 0, 0.03, 5)
	if err != nil || !r.GeneratorBound || r.PPS != 350_000 || r.Ceiling != 350_000 || len(calls) != 1 || calls[0] != 0 {
		t.Errorf("generator-bound: %+v %v %v", r, err, calls)
	}
	if got := r.String(); got != "≥ 350k" {
		t.Errorf("String = %q", got)
	}
	// Forwarder-bound at 243k, fixed trials passed 200k and failed
	// 300k: the bisection brackets 243k within 3 % in at most 5 steps.
	calls = nil
	r, err = searchNDR(ctx, sys(243_000, 400_000, &calls), 0.1, 200_000, 300_000, 0.03, 5)
	if err != nil || r.GeneratorBound || r.Ceiling != 400_000 {
		t.Fatalf("forwarder-bound: %+v %v", r, err)
	}
	if r.PPS > 243_000 || r.PPS < 243_000*0.94 || len(calls) > 6 {
		t.Errorf("NDR %v (want ≤ 243k within ~3 %%) after %d trials %v", r.PPS, len(calls), calls)
	}
	for _, s := range r.Steps {
		if s.Pass != (s.LossPct <= 0.1) {
			t.Errorf("step %+v", s)
		}
	}
	// Without fixed-rate bounds it bisects from 0 to the ceiling; with no
	// step allowed it reports the bound it has (0: below every rate).
	calls = nil
	r, _ = searchNDR(ctx, sys(100_000, 400_000, &calls), 0.1, 0, 0, 0.03, 8)
	if r.PPS > 100_000 || r.PPS < 95_000 {
		t.Errorf("from 0: %+v", r)
	}
	calls = nil
	r, _ = searchNDR(ctx, sys(100_000, 400_000, &calls), 0.1, 0, 0, 0.03, 0)
	if r.PPS != 0 || len(calls) != 1 || r.String() != "-" {
		t.Errorf("no steps: %+v %v", r, calls)
	}
	// An error stops the search.
	_, err = searchNDR(ctx, func(context.Context, float64) (float64, float64, error) { return 0, 0, errors.New("boom") }, 0.1, 0, 0, 0.03, 5)
	if err == nil {
		t.Error("error not returned")
	}
}

// testForwardResult builds a result from synthetic trials: two sweep
// points, two rates, three runs, every case.
func testForwardResult() *ForwardResult {
	o := &forwardOptions{sources: []int{256, 65536}, rates: []float64{100_000, 200_000}, cases: allCases, runs: 3, kernelRPS: true,
		duration: 5 * time.Second, warmup: time.Second, ndrLoss: 0.1, ndrDuration: 2 * time.Second, tick: 100 * time.Microsecond}
	r := newForwardResult(o, []string{"--runs", "3"})
	r.Generator = "ispmux bench forward-gen ..."
	cost := map[string]float64{CaseISPmux: 1000, CaseISPmuxXDP: 500, CaseKernel: 1500, CaseKernelRules: 2500, CaseBare: 950}
	for _, n := range o.sources {
		for run := 1; run <= o.runs; run++ {
			for _, rate := range o.rates {
				cal := Trial{Case: CaseCalibration, Sources: n, Run: run, Rate: rate, Kind: "fixed", WindowS: 5, OfferedPPS: rate, BusyS: 5 * rate * 2e-6}
				r.Trials = append(r.Trials, cal)
				for _, c := range allCases {
					if c == CaseKernelRules && n > 4096 {
						continue
					}
					fwd := rate
					ns := cost[c] * (1 + 0.1*float64(run-2)) // runs 0.9, 1.0, 1.1
					if n > 256 {
						ns *= 1.2
					}
					busy := cal.BusyS + 5*fwd*ns*1e-9
					tr := Trial{Case: c, Sources: n, Run: run, Rate: rate, Kind: "fixed", WindowS: 5, OfferedPPS: rate, ForwardedPPS: fwd, BusyS: busy}
					if v, ok := nsPerPacket(tr.BusyS, tr.WindowS, cal.BusyS, cal.WindowS, tr.ForwardedPPS); ok {
						tr.NsPerPkt = ptr(round(v, 1))
					}
					r.Trials = append(r.Trials, tr)
				}
			}
			r.Trials = append(r.Trials, Trial{Case: CaseCalibration, Sources: n, Run: run, Kind: "ceiling", WindowS: 2, OfferedPPS: 350_000, BusyS: 1.6})
			for _, c := range allCases {
				if c == CaseKernelRules && n > 4096 {
					continue
				}
				res := ndrResult{PPS: 250_000 + float64(run)*1000, Ceiling: 350_000}
				if c == CaseBare {
					res = ndrResult{PPS: 350_000, Ceiling: 350_000, GeneratorBound: true}
				}
				r.NDRRuns = append(r.NDRRuns, NDRRun{Case: c, Sources: n, Run: run, Result: res})
			}
		}
	}
	r.finish()
	return r
}

func TestForwardResultFinish(t *testing.T) {
	r := testForwardResult()
	if len(r.Sweep) != 4 {
		t.Fatalf("%d sweep rows, want 4", len(r.Sweep))
	}
	row := r.Sweep[0]
	if row.Sources != 256 || row.OfferedPPS != 100_000 {
		t.Errorf("row 0: %+v", row)
	}
	want := map[string]float64{CaseISPmux: 1000, CaseKernel: 1500, CaseKernelRules: 2500, CaseBare: 950}
	for c, w := range want {
		s := row.NsPerPkt[c]
		if s == nil || math.Abs(s.Median-w) > 0.5 || math.Abs(s.Min-0.9*w) > 0.5 || math.Abs(s.Max-1.1*w) > 0.5 || s.N != 3 {
			t.Errorf("%s: %+v, want median %v", c, s, w)
		}
	}
	if *row.ISPmuxNsPerPkt != 1000 || *row.KernelNsPerPkt != 1500 || *row.BareNsPerPkt != 950 || *row.KernelRulesNsPerPkt != 2500 {
		t.Errorf("issue keys: %v %v %v", *row.ISPmuxNsPerPkt, *row.KernelNsPerPkt, *row.BareNsPerPkt)
	}
	if *row.RatioVsKernel != 1.5 || *row.RatioVsBare != 0.95 {
		t.Errorf("row ratios %v %v", *row.RatioVsKernel, *row.RatioVsBare)
	}
	if row.ISPmuxNDRPPS != 252_000 || row.BareNDRPPS != 350_000 || !row.GeneratorBound || row.RateGeneratorBound {
		t.Errorf("row NDR: %+v", row)
	}
	// 64K: no kernel-rules case.
	if r.Sweep[2].KernelRulesNsPerPkt != nil || r.Sweep[2].NsPerPkt[CaseKernelRules] != nil {
		t.Errorf("kernel-rules at 64K: %+v", r.Sweep[2])
	}
	if r.RatioVsKernel != 1.5 || r.RatioVsBare != 0.95 {
		t.Errorf("headline ratios %v %v", r.RatioVsKernel, r.RatioVsBare)
	}
	if len(r.Targets) != 4 || !r.Targets[0].Met || r.Targets[0].Got != 1.5 || r.Targets[1].Met || r.Targets[1].Got != 1.053 ||
		!r.Targets[2].Met || r.Targets[2].Got != 3 || !r.Targets[3].Met || r.Targets[3].Got != 0.526 {
		t.Errorf("targets: %+v", r.Targets)
	}
	if *row.ISPmuxXDPNsPerPkt != 500 || *row.RatioVsKernelXDP != 3 || r.RatioVsKernelXDP != 3 || r.RatioVsBareXDP != 1.9 {
		t.Errorf("fast path: %v %v %v %v", *row.ISPmuxXDPNsPerPkt, *row.RatioVsKernelXDP, r.RatioVsKernelXDP, r.RatioVsBareXDP)
	}
	if len(r.Calibration) != 6 || r.Calibration[0].BusyPerS.Median != 0.2 || r.Calibration[2].OfferedPPS != 0 {
		t.Errorf("calibration: %+v", r.Calibration)
	}
	var bare NDRRow
	for _, x := range r.NDR {
		if x.Case == CaseBare && x.Sources == 256 {
			bare = x
		}
	}
	if !bare.GeneratorBound || bare.PPS.Median != 350_000 {
		t.Errorf("bare NDR: %+v", bare)
	}
}

func TestForwardResultOutputs(t *testing.T) {
	r := testForwardResult()
	js, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	checkForwardJSON(t, js)
	var tbl bytes.Buffer
	if err := r.WriteTable(&tbl); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ispmux ns/pkt", "kernel÷ispmux", "1000 [900–1100]", "1.50", "≥ 350k", "MISSED", "ratio_vs_kernel 1.500"} {
		if !strings.Contains(tbl.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tbl.String())
		}
	}
	md := r.Markdown()
	for _, want := range []string{"# ispmux forwarding benchmark", "| 256 | 100k |", "| 64K | 200k |", "1500 [1350–1650]", "≥ 350k", "**ratio_vs_kernel = 1.50",
		"ispmux bench forward --runs 3", "ispmux bench forward-gen ...", "![CPU ns per forwarded packet](forward.svg)", "**met**", "**MISSED**"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	var svg bytes.Buffer
	if err := r.chart(&svg); err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(svg.Bytes(), new(struct{})); err != nil {
		t.Errorf("chart: %v", err)
	}
	// Nothing measured: the outputs still render.
	e := newForwardResult(&forwardOptions{sources: []int{16}, rates: []float64{1000}, cases: []string{CaseISPmux}, runs: 1}, nil)
	e.finish()
	if _, err := e.JSON(); err != nil || e.RatioVsKernel != 0 || len(e.Targets) != 0 || e.Markdown() == "" {
		t.Errorf("empty result: %v %+v", err, e)
	}
}

// checkForwardJSON checks that js is one JSON object with every key issue
// 11 promises for bench forward, and returns it.
func checkForwardJSON(t *testing.T, js []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(js))
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, js)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		t.Fatalf("more than one JSON value on stdout:\n%s", js)
	}
	for _, k := range []string{"sweep", "ratio_vs_kernel", "ratio_vs_bare", "targets", "trials", "runs"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	sweep, _ := m["sweep"].([]any)
	if len(sweep) == 0 {
		t.Fatalf("sweep: %v", m["sweep"])
	}
	for _, x := range sweep {
		row, _ := x.(map[string]any)
		for _, k := range []string{"sources", "offered_pps", "ispmux_ns_per_pkt", "kernel_ns_per_pkt", "bare_ns_per_pkt",
			"ispmux_ndr_pps", "kernel_ndr_pps", "bare_ndr_pps", "generator_bound"} {
			if _, ok := row[k]; !ok {
				t.Errorf("sweep row lacks %q: %v", k, row)
			}
		}
	}
	return m
}

// readSVG parses an SVG document (failing t unless it is well-formed with
// one svg root in the SVG namespace): how many of each element it has,
// and its texts, trimmed, in order.
func readSVG(t *testing.T, doc []byte) (elems map[string]int, texts []string) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(doc))
	elems = map[string]int{}
	var root string
	depth := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				root = e.Name.Local
				if e.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root namespace %q", e.Name.Space)
				}
			}
			elems[e.Name.Local]++
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if s := strings.TrimSpace(string(e)); s != "" {
				texts = append(texts, s)
			}
		}
	}
	if root != "svg" || depth != 0 {
		t.Errorf("root %q, depth %d", root, depth)
	}
	return elems, texts
}

func TestWriteBarSVG(t *testing.T) {
	var b bytes.Buffer
	bars := []Bar{{"ispmux", 297_000}, {"kernel <&> \"x\"", 200_000}, {"bare", 0}}
	if err := writeBarSVG(&b, "pps & more <title>", bars); err != nil {
		t.Fatal(err)
	}
	els, texts := readSVG(t, b.Bytes())
	if rects := els["rect"]; rects != 1+len(bars) { // background + one per bar
		t.Errorf("%d rects, want %d", rects, 1+len(bars))
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"pps & more <title>", "kernel <&> \"x\"", "297000 pps", "bare", "0 pps"} {
		if !strings.Contains(all, want) {
			t.Errorf("SVG text lacks %q: %s", want, all)
		}
	}
	// No bars at all, or all zero: still well-formed.
	for _, bs := range [][]Bar{nil, {{"a", 0}}} {
		var e bytes.Buffer
		if err := writeBarSVG(&e, "empty", bs); err != nil {
			t.Fatal(err)
		}
		if err := xml.Unmarshal(e.Bytes(), new(struct{})); err != nil {
			t.Errorf("empty chart: %v", err)
		}
	}
}

// writeGroupedChart, like writeBarChart, begins with svgStart and draws
// its axis with svgAxis: well-formed SVG, every text escaped (title, axis
// label, series, groups), the axis values 0 to the scale, a bar per value
// given (a nil one none) and a whisker where min and max differ.
func TestWriteGroupedChart(t *testing.T) {
	st := func(med, lo, hi float64, n int) *Stat { return &Stat{Median: med, Min: lo, Max: hi, N: n} }
	var b bytes.Buffer
	err := writeGroupedChart(&b, "ns & <t>", "ns <per> op", []string{"1k", "1M <&>"}, []string{"ispmux", "kernel \"k\""},
		[][]*Stat{{st(10, 8, 12, 3), nil}, {st(20, 20, 20, 1), st(30, 25, 35, 2)}})
	if err != nil {
		t.Fatal(err)
	}
	els, texts := readSVG(t, b.Bytes())
	rects, lines := els["rect"], els["line"]
	// Background, 2 legend swatches, 3 bars; 6 grid lines, the base line, 2 whiskers.
	if rects != 1+2+3 || lines != 6+1+2 {
		t.Errorf("%d rects, %d lines; want 6 and 9\n%s", rects, lines, b.String())
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"ns & <t>|", "|ns <per> op|", "|ispmux|", "|kernel \"k\"|", "|1M <&>", "|0|", "|50|", "1k, ispmux: 10 [8–12]"} {
		if !strings.Contains(all, want) {
			t.Errorf("SVG text lacks %q: %s", want, all)
		}
	}
}

func TestNiceCeilAndHuman(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, 0.3: 0.5, 1: 1, 7: 10, 12: 20, 240_000: 250_000, 297_000: 500_000, 600_001: 1_000_000} {
		if got := niceCeil(in); math.Abs(got-want) > 1e-9 {
			t.Errorf("niceCeil(%v) = %v, want %v", in, got, want)
		}
	}
	for in, want := range map[float64]string{0: "0", 950: "950", 12_500: "12.5k", 100_000: "100k", 1_000_000: "1M", 1_250_000: "1.25M"} {
		if got := humanPPS(in); got != want {
			t.Errorf("humanPPS(%v) = %q, want %q", in, got, want)
		}
	}
}

// -h of bench forward, scale and dhcp (one setUsage): the usage line,
// then each flag with its default and usage, the tests' hidden flags
// (--exe and the like, no usage) left out.
func TestBenchUsage(t *testing.T) {
	for _, tt := range []struct {
		parse        func([]string, io.Writer) error
		line, listed string
	}{
		{func(a []string, w io.Writer) error { _, err := parseForward(a, w); return err },
			"usage: ispmux bench forward [--sources", "  --runs (default \"5\")\n    \tinterleaved runs"},
		{func(a []string, w io.Writer) error { _, err := parseScale(a, w); return err },
			"usage: ispmux bench scale [--subscribers", "  --runs (default \"3\")\n    \tstarts per point"},
		{func(a []string, w io.Writer) error { _, err := parseKill9(a, w); return err },
			"usage: ispmux bench kill9 [--subscribers", "  --crashes (default \"12\")\n    \tSIGKILLs"},
		{func(a []string, w io.Writer) error { _, err := parseDHCP(a, w); return err },
			"usage: ispmux bench dhcp [--clients", "  --keep (default \"false\")\n    \t"},
	} {
		var b strings.Builder
		if err := tt.parse([]string{"-h"}, &b); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s: -h: %v, want flag.ErrHelp", tt.line, err)
		}
		out := b.String()
		if !strings.HasPrefix(out, tt.line) || !strings.Contains(out, tt.listed) || strings.Contains(out, "--exe") {
			t.Errorf("-h printed:\n%s\nwant it to begin %q, to list %q and not --exe", out, tt.line, tt.listed)
		}
	}
}

// The end of the error messages that quote a child's output (child.tail)
// or a watched log (logWatch.tail), one errTail: the last 8 lines on one
// line after ": ", nothing for none; perfdhcp's quotes lastLinesOf.
func TestErrTail(t *testing.T) {
	for in, want := range map[string]string{
		"":                            "",
		" \n\n":                       "",
		"one\n":                       ": one",
		"\na\nb\n\n":                  ": a | b",
		"1\n2\n3\n4\n5\n6\n7\n8\n9\n": ": 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9",
	} {
		c := &child{out: &tailBuffer{max: 1 << 10}}
		lw := &logWatch{want: map[string]chan struct{}{}}
		_, _ = c.out.Write([]byte(in))
		_, _ = lw.Write([]byte(in))
		if got, got2 := c.tail(), lw.tail(); got != want || got2 != want {
			t.Errorf("output %q: child.tail %q, logWatch.tail %q, want %q", in, got, got2, want)
		}
	}
	if got := lastLinesOf("a\nb\nc\n", 2); got != "b | c" {
		t.Errorf("lastLinesOf(a b c, 2) = %q", got)
	}
}

func TestParseForward(t *testing.T) {
	o, err := parseForward(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.sources, []int{256, 65536, 1 << 20}) || !slices.Equal(o.rates, []float64{100_000, 200_000, 300_000}) ||
		!slices.Equal(o.cases, allCases) || o.runs != 5 || o.duration != 5*time.Second || o.id != "benchfw" || o.out != "bench-out" ||
		o.asJSON || o.keep || o.warmup != time.Second || !o.ndr || o.ndrLoss != 0.1 || o.rulesMax != 4096 {
		t.Errorf("defaults: %+v", o)
	}
	o, err = parseForward([]string{"--sources", "16,1K", "--rates", "50k,1.5M", "--cases", "bare,ispmux", "--runs", "1"}, io.Discard)
	if err != nil || !slices.Equal(o.sources, []int{16, 1024}) || !slices.Equal(o.rates, []float64{50_000, 1_500_000}) || !slices.Equal(o.cases, []string{CaseBare, CaseISPmux}) {
		t.Errorf("parsed: %+v %v", o, err)
	}
	for _, bad := range [][]string{{"--duration", "0s"}, {"--sources", "0"}, {"--sources", "2M"}, {"--sources", "x"}, {"--rates", "10"},
		{"--cases", "ispmux,ispmux"}, {"--cases", "nope"}, {"--runs", "0"}, {"extra"}, {"--nope"}} {
		if _, err := parseForward(bad, io.Discard); err == nil {
			t.Errorf("parseForward(%q): no error", bad)
		}
	}
	if err := Main(context.Background(), []string{"nope"}, io.Discard, io.Discard); err == nil {
		t.Error("unknown benchmark accepted")
	}
}

func TestSizeLabel(t *testing.T) {
	for n, want := range map[int]string{16: "16", 256: "256", 1000: "1000", 1024: "1K", 65536: "64K", 1 << 20: "1M", 3 << 20: "3M"} {
		if got := sizeLabel(n); got != want {
			t.Errorf("sizeLabel(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestGenFrame checks the generator's frames: valid IPv4 checksums, the
// source's MAC and address, and a walk that visits every source once per
// cycle.
func TestGenFrame(t *testing.T) {
	f := make([]byte, 60)
	dst := [6]byte{2, 0, 0, 0, 0xa0, 1}
	genFrame(f, dst, [4]byte{198, 18, 0, 1}, 0x12345)
	var p classifier.Packet
	if r := p.Decode(f); r != classifier.ReasonNone {
		t.Fatalf("decode: %v", r)
	}
	if p.Src != 0x021100012345 || p.SrcIP != 100<<24|81<<16|0x23<<8|0x45 || p.DstIP != 198<<24|18<<16|1 || p.DstPort != 9 {
		t.Errorf("decoded %+v", p)
	}
	if ipChecksum(f[14:34]) != 0 {
		t.Error("IPv4 header checksum does not verify")
	}
	for _, n := range []int{1, 2, 3, 256, 1000, 65536} {
		s := sourceStride(n)
		seen := make([]bool, n)
		k := 0
		for range n {
			if seen[k] {
				t.Fatalf("n %d stride %d: source %d twice in one cycle", n, s, k)
			}
			seen[k] = true
			if k += s; k >= n {
				k -= n
			}
		}
		if n > 4 && (s == 1 || gcd(s, n) != 1) {
			t.Errorf("n %d: stride %d", n, s)
		}
	}
	mac, ip := forwardSource(maxSources - 1)
	if mac != [6]byte{2, 0x11, 0, 0x0f, 0xff, 0xff} || ip != [4]byte{100, 95, 255, 255} {
		t.Errorf("last source %x %v", mac, ip)
	}
}

func TestGenStats(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s")
	b := make([]byte, 32)
	binary.LittleEndian.PutUint64(b[0:], 10)
	binary.LittleEndian.PutUint64(b[8:], 9)
	binary.LittleEndian.PutUint64(b[16:], 1)
	binary.LittleEndian.PutUint64(b[24:], 2)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	c, done, err := readGenStats(p)
	if err != nil || !done || c != (genCounters{10, 9, 1}) {
		t.Errorf("readGenStats = %+v %v %v", c, done, err)
	}
	if err := os.WriteFile(p, b[:8], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readGenStats(p); err == nil {
		t.Error("short file accepted")
	}
}

func TestForwardConfig(t *testing.T) {
	tp := &lab.Topology{ID: "x", Appliance: lab.Appliance{NS: "x-app", Access: []lab.Iface{{Name: "acc0"}, {Name: "acc1"}}, Uplinks: []lab.Iface{{Name: "upa"}, {Name: "upb"}}},
		ISPs:      []lab.ISP{{Name: "alpha", Uplink: "upa", OurAddr: "192.0.2.2/24", RouterAddr: "192.0.2.1"}, {Name: "beta", Uplink: "upb", OurAddr: "192.0.2.2/24", RouterAddr: "192.0.2.1"}},
		Generator: &lab.Gen{Access: "acc1"}}
	cfg := string(forwardConfig(tp, "/tmp/s", 3, true))
	for _, want := range []string{"mac_table_size = 1048576\ncompletion_ring", "mac = \"02:11:00:00:00:02\"\nisp = \"alpha\"\nip = \"100.80.0.2\"\naccess = \"acc1\"",
		"mac = \"02:11:00:00:00:01\"\nisp = \"beta\""} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	big := string(forwardConfig(tp, "/tmp/s", 1<<20, false))
	if !strings.Contains(big, fmt.Sprintf("mac_table_size = %d\n", 1<<20+4096)) || strings.Contains(big, "02:11:") {
		t.Error("1M from the store: MAC table not sized, or static entries written")
	}
	for _, c := range []struct {
		mode string
		n    int
		want string
	}{{"auto", 256, BindingsStatic}, {"auto", 100_000, BindingsStatic}, {"auto", 1 << 20, BindingsStore}, {BindingsStore, 16, BindingsStore}, {BindingsStatic, 1 << 20, BindingsStatic}} {
		if got := bindingsFor(c.mode, c.n); got != c.want {
			t.Errorf("bindingsFor(%s, %d) = %s, want %s", c.mode, c.n, got, c.want)
		}
	}
}

// TestMACRewriter runs the bare forwarder's handler in a real worker over
// in-memory queues: two ingress ports, two uplinks picked by the source
// MAC's last byte.
func TestMACRewriter(t *testing.T) {
	var qs []datapath.Queue
	sent := make([][][]byte, 4)
	var mem []*datapath.MemQueue
	for i := range 4 {
		q := datapath.NewMemQueue(64, 2048)
		q.Sink = func(f []byte) { sent[i] = append(sent[i], append([]byte(nil), f...)) }
		qs, mem = append(qs, q), append(mem, q)
	}
	h := &macRewriter{in: 2}
	for b := range h.out {
		h.out[b] = 2 + uint8(b%2)
	}
	h.mac = [][12]byte{{2, 0, 0, 0, 0xb1, 1, 2, 0, 0, 0, 0xa1, 1}, {2, 0, 0, 0, 0xb1, 2, 2, 0, 0, 0, 0xa1, 2}}
	w, err := datapath.NewWorker(0, qs, h, 64, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	even, odd := make([]byte, 60), make([]byte, 60)
	genFrame(even, [6]byte{2, 0, 0, 0, 0xa0, 1}, [4]byte{198, 18, 0, 1}, 4)
	genFrame(odd, [6]byte{2, 0, 0, 0, 0xa0, 1}, [4]byte{198, 18, 0, 1}, 7)
	mem[1].Inject(even)
	mem[0].Inject(odd)
	mem[1].Inject(even[:10]) // runt: dropped
	mem[2].Inject(even)      // from an uplink: dropped
	w.RunOnce()
	if len(sent[2]) != 1 || len(sent[3]) != 1 || len(sent[0])+len(sent[1]) != 0 {
		t.Fatalf("sent per port: %d %d %d %d, want 0 0 1 1", len(sent[0]), len(sent[1]), len(sent[2]), len(sent[3]))
	}
	if want := append(h.mac[0][:], even[12:]...); !bytes.Equal(sent[2][0], want) {
		t.Errorf("even source to upa: % x\nwant % x", sent[2][0], want)
	}
	if want := append(h.mac[1][:], odd[12:]...); !bytes.Equal(sent[3][0], want) {
		t.Errorf("odd source to upb: % x\nwant % x", sent[3][0], want)
	}
	if h.fwd != 2 || h.drop != 2 {
		t.Errorf("fwd %d drop %d, want 2 2", h.fwd, h.drop)
	}
	for i, q := range mem {
		if q.FreeFrames() != 64 {
			t.Errorf("port %d leaked frames: %d free of 64", i, q.FreeFrames())
		}
	}
}

// TestForwardLab runs the whole benchmark, briefly, in a real lab: a
// small sweep point, one rate, one run, every case, a short no-drop rate
// search; all must forward, and the JSON must carry every promised key. It
// asserts no speed figure (this machine is shared and noisy).
func TestForwardLab(t *testing.T) {
	dir, exe, labID := newBenchLab(t, "bt") // network namespaces, XDP: root, and not in -short
	outDir := filepath.Join(dir, "out")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout bytes.Buffer
	stderr := &lineTimes{}
	start := time.Now()
	err := Main(ctx, []string{"forward", "--sources", "16", "--rates", "20k", "--runs", "1", "--duration", "1s", "--warmup", "500ms",
		"--ndr-duration", "1s", "--ndr-steps", "1", "--quiet-wait", "0s", "--json", "--id", labID, "--out", outDir, "--exe", exe}, &stdout, stderr)
	t.Logf("benchmark took %v; stderr:\n%s", time.Since(start), stderr.String())
	if err != nil {
		t.Fatalf("bench forward: %v\nstdout:\n%s", err, stdout.String())
	}
	m := checkForwardJSON(t, stdout.Bytes())
	row := m["sweep"].([]any)[0].(map[string]any)
	for _, k := range []string{"ispmux_ns_per_pkt", "kernel_ns_per_pkt", "bare_ns_per_pkt", "kernel_rules_ns_per_pkt"} {
		if _, ok := row[k].(float64); !ok {
			t.Errorf("%s = %v, want a number", k, row[k])
		}
	}
	for _, tr := range m["trials"].([]any) {
		tr := tr.(map[string]any)
		if tr["case"] == CaseCalibration || tr["kind"] != "fixed" {
			continue
		}
		if v, _ := tr["forwarded_pps"].(float64); !(v > 0) {
			t.Errorf("case %v: forwarded %v pps", tr["case"], tr["forwarded_pps"])
		}
	}
	if errs, _ := m["errors"].([]any); len(errs) > 0 {
		t.Errorf("errors: %v", errs)
	}
	for _, f := range []string{"forward.json", "forward.md", "forward.svg"} {
		if fi, err := os.Stat(filepath.Join(outDir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if gap := stderr.longestGap(); gap > 5*time.Second {
		t.Errorf("no progress line for %v (want ≤ 5 s)", gap)
	}
	checkLabGone(t, labID)
}

// lineTimes is an io.Writer that keeps what is written and when each
// write came, to check that a benchmark prints progress often enough.
type lineTimes struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	times []time.Time
}

func (l *lineTimes) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.times = append(l.times, time.Now())
	return l.buf.Write(p)
}

func (l *lineTimes) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *lineTimes) longestGap() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var g time.Duration
	for i := 1; i < len(l.times); i++ {
		g = max(g, l.times[i].Sub(l.times[i-1]))
	}
	return g
}

func TestOthersTicks(t *testing.T) {
	// pgrp (field 5) 4200, flags (field 9) 0x400100, utime 700, stime 42.
	line := "4242 (my (odd) proc) S 1 4200 4200 0 -1 4194560 1000 0 0 0 700 42 0 0 20 0 9 0 123 456789 100 18446744073709551615\n"
	pg, flags, ticks, ok := parseStatGroup([]byte(line))
	if !ok || pg != 4200 || flags != 4194560 || ticks != 742 {
		t.Errorf("parseStatGroup = %d %#x %d %v", pg, flags, ticks, ok)
	}
	if _, _, _, ok := parseStatGroup([]byte("1 (x) S 1")); ok {
		t.Error("short line accepted")
	}
	// Processes in both readings count their increase, new ones all of
	// theirs, gone ones nothing; a counter going back counts 0.
	if d := othersDelta(map[int]uint64{1: 100, 2: 50, 3: 10}, map[int]uint64{1: 130, 2: 40, 4: 7}); d != 37 {
		t.Errorf("othersDelta = %d, want 37", d)
	}
	// Live: this process is never counted; some process is.
	m := othersTicks(map[int]bool{})
	if _, ok := m[os.Getpid()]; ok {
		t.Error("the benchmark counted itself")
	}
}

func TestForwardResultMerge(t *testing.T) {
	prev := testForwardResult() // 256 and 64K
	prev.Sessions = []Session{{Command: "ispmux bench forward --sources 256,64K", Sources: []int{256, 65536}, Started: "2026-12-02T01:00:00Z"}}
	prev.Started = "2026-12-02T01:00:00Z"
	prev.Errors = []string{"bare, 64K sources, run 1: boom", "ispmux, 256 sources, run 2: bang"}
	prev.Points = []PointInfo{{Sources: 256, Bindings: "static"}, {Sources: 65536, Bindings: "static"}}
	prev.Diagnostics = []Diagnostic{{Case: "bare", Sources: 256, Run: 1}, {Case: "bare", Sources: 65536, Run: 1}}
	js, err := prev.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var old ForwardResult
	if err := json.Unmarshal(js, &old); err != nil {
		t.Fatal(err)
	}
	// A new session measures 64K again (cheaper this time) and 1M.
	cur := testForwardResult()
	cur.Sources = []int{65536, 1 << 20}
	var trials []Trial
	for _, tr := range cur.Trials {
		if tr.Sources == 256 {
			continue
		}
		if tr.NsPerPkt != nil {
			tr.NsPerPkt = ptr(*tr.NsPerPkt / 2)
		}
		trials = append(trials, tr)
		if tr.Sources == 65536 {
			tr.Sources = 1 << 20
			trials = append(trials, tr)
		}
	}
	cur.Trials, cur.NDRRuns = trials, nil
	cur.Points = []PointInfo{{Sources: 65536, Bindings: "store"}, {Sources: 1 << 20, Bindings: "store"}}
	cur.Diagnostics = []Diagnostic{{Case: "ispmux", Sources: 65536, Run: 1}}
	cur.Sessions = []Session{{Command: "ispmux bench forward --sources 64K,1M", Sources: cur.Sources, Started: "2026-12-02T02:00:00Z"}}
	cur.Started = "2026-12-02T02:00:00Z"
	if err := cur.merge(&old); err != nil {
		t.Fatal(err)
	}
	cur.finish()
	if !slices.Equal(cur.Sources, []int{256, 65536, 1 << 20}) || len(cur.Sweep) != 6 || len(cur.Sessions) != 2 || cur.Started != "2026-12-02T01:00:00Z" {
		t.Fatalf("merged: sources %v, %d rows, sessions %+v", cur.Sources, len(cur.Sweep), cur.Sessions)
	}
	if *cur.Sweep[0].ISPmuxNsPerPkt != 1000 || *cur.Sweep[2].ISPmuxNsPerPkt != 600 || *cur.Sweep[4].ISPmuxNsPerPkt != 600 {
		t.Errorf("256 kept, 64K replaced, 1M added: %v %v %v", *cur.Sweep[0].ISPmuxNsPerPkt, *cur.Sweep[2].ISPmuxNsPerPkt, *cur.Sweep[4].ISPmuxNsPerPkt)
	}
	if len(cur.Errors) != 1 || !strings.Contains(cur.Errors[0], "256 sources") {
		t.Errorf("errors: %v", cur.Errors)
	}
	if _, ok := cur.ndrRow(CaseISPmux, 256); !ok {
		t.Error("256's no-drop rates lost")
	}
	if want := []PointInfo{{Sources: 256, Bindings: "static"}, {Sources: 65536, Bindings: "store"}, {Sources: 1 << 20, Bindings: "store"}}; !reflect.DeepEqual(cur.Points, want) {
		t.Errorf("points: %+v, want %+v", cur.Points, want)
	}
	var diags []string
	for _, d := range cur.Diagnostics {
		diags = append(diags, fmt.Sprintf("%s %d run %d", d.Case, d.Sources, d.Run))
	}
	if want := []string{"bare 256 run 1", "ispmux 65536 run 1"}; !slices.Equal(diags, want) {
		t.Errorf("diagnostics: %q, want %q", diags, want)
	}
	other := testForwardResult()
	other.Rates = []float64{1}
	if err := other.merge(&old); err == nil {
		t.Error("results with other rates merged")
	}
}

// dropRun (a run measured again after the lab was rebuilt) forgets that
// run of that sweep point only: its trials, no-drop runs, diagnostics and
// errors; the run's nothing else left is null in the JSON, as before.
func TestForwardDropRun(t *testing.T) {
	r := &ForwardResult{
		Trials:      []Trial{{Case: "bare", Sources: 256, Run: 1}, {Case: "bare", Sources: 256, Run: 2}, {Case: "bare", Sources: 65536, Run: 2}},
		NDRRuns:     []NDRRun{{Case: "bare", Sources: 256, Run: 2}},
		Diagnostics: []Diagnostic{{Case: "bare", Sources: 256, Run: 2}, {Case: "ispmux", Sources: 256, Run: 3}},
		Errors:      []string{"bare, 256 sources, run 2: boom", "bare, 256 sources, run 20: bang", "bare, 64K sources, run 2: pow"},
	}
	(&fwdBench{r: r}).dropRun(256, 2)
	if want := []Trial{{Case: "bare", Sources: 256, Run: 1}, {Case: "bare", Sources: 65536, Run: 2}}; !reflect.DeepEqual(r.Trials, want) {
		t.Errorf("trials %+v, want %+v", r.Trials, want)
	}
	if r.NDRRuns != nil {
		t.Errorf("no-drop runs %+v, want nil", r.NDRRuns)
	}
	if want := []Diagnostic{{Case: "ispmux", Sources: 256, Run: 3}}; !reflect.DeepEqual(r.Diagnostics, want) {
		t.Errorf("diagnostics %+v, want %+v", r.Diagnostics, want)
	}
	if want := []string{"bare, 256 sources, run 20: bang", "bare, 64K sources, run 2: pow"}; !slices.Equal(r.Errors, want) {
		t.Errorf("errors %q, want %q", r.Errors, want)
	}
}
