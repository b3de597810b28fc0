package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/internal/privtest"
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

func sampleAt(sec float64, offered, fwd, busyTicks uint64, proc int64) sample {
	s := sample{
		at:        time.Unix(1000, 0).Add(time.Duration(sec * float64(time.Second))),
		offered:   offered,
		forwarded: fwd,
		cpu: ProcStat{
			Total: CPUTimes{User: busyTicks / 2, SoftIRQ: busyTicks - busyTicks/2, Idle: 5000},
			CPU:   []CPUTimes{{User: busyTicks, Idle: 100}, {Idle: 100}},
		},
	}
	if proc >= 0 {
		s.hasProc, s.procTicks = true, uint64(proc)
	}
	return s
}

func TestComputeCase(t *testing.T) {
	// 10 s window: 5 M offered, 4 M forwarded, 15 s of busy CPU (1500
	// ticks), the forwarder process 8 s (800 ticks).
	a := sampleAt(0, 1_000_000, 2_000_000, 10_000, 300)
	b := sampleAt(10, 6_000_000, 6_000_000, 11_500, 1_100)
	c := computeCase(CaseISPmux, a, b)
	if c.OfferedPPS != 500_000 || c.ForwardedPPS != 400_000 || c.OfferedPackets != 5_000_000 || c.ForwardedPackets != 4_000_000 {
		t.Errorf("pps: %+v", c)
	}
	if c.LossPct != 20 {
		t.Errorf("loss = %v, want 20", c.LossPct)
	}
	if c.CPUBusyS != 15 || c.CPUSPerMpkt == nil || *c.CPUSPerMpkt != 3.75 || *c.CPUUsPerPktTotal != 3.75 {
		t.Errorf("cpu: busy %v per Mpkt %v", c.CPUBusyS, c.CPUSPerMpkt)
	}
	if c.ProcCPUS == nil || *c.ProcCPUS != 8 || *c.ProcCPUSPerMpkt != 2 {
		t.Errorf("proc cpu: %v %v", c.ProcCPUS, c.ProcCPUSPerMpkt)
	}
	if len(c.CPUBusyPct) != 2 || c.CPUBusyPct[0] != 100 || c.CPUBusyPct[1] != 0 {
		t.Errorf("per-CPU busy: %v", c.CPUBusyPct)
	}

	// Kernel case: no process; nothing forwarded: no per-packet figures.
	k := computeCase(CaseKernel, sampleAt(0, 0, 0, 0, -1), sampleAt(2, 100, 0, 200, -1))
	if k.ProcCPUS != nil || k.ProcCPUSPerMpkt != nil || k.CPUSPerMpkt != nil || k.CPUUsPerPktTotal != nil {
		t.Errorf("undefined figures set: %+v", k)
	}
	if k.LossPct != 100 || k.OfferedPPS != 50 {
		t.Errorf("kernel: %+v", k)
	}
	// A counter that went backwards gives 0, not a wrapped huge number.
	z := computeCase(CaseBare, sampleAt(0, 10, 10, 10, 10), sampleAt(1, 5, 5, 5, 5))
	if z.OfferedPackets != 0 || z.ForwardedPackets != 0 || z.LossPct != 0 {
		t.Errorf("reset counters: %+v", z)
	}
}

func testResult() *Result {
	r := &Result{Benchmark: "forward", Subscribers: 256, DurationS: 10, WarmupS: 1, FrameBytes: 64, CPUs: 2,
		Command: "ispmux bench forward", Generator: "trafgen ..."}
	r.Cases = []Case{
		computeCase(CaseISPmux, sampleAt(0, 0, 0, 0, 0), sampleAt(10, 3_000_000, 2_970_000, 2000, 1000)),
		computeCase(CaseKernel, sampleAt(0, 0, 0, 0, -1), sampleAt(10, 2_000_000, 2_000_000, 1000, -1)),
		computeCase(CaseBare, sampleAt(0, 0, 0, 0, 0), sampleAt(10, 4_000_000, 4_000_000, 2000, 1000)),
	}
	r.finish()
	return r
}

func TestResultJSON(t *testing.T) {
	r := testResult()
	if r.ISPmuxPPS != 297_000 || r.KernelPPS != 200_000 || r.BarePPS != 400_000 {
		t.Errorf("headline pps: %v %v %v", r.ISPmuxPPS, r.KernelPPS, r.BarePPS)
	}
	if r.RatioVsKernel != 1.485 || r.RatioVsBare != 0.743 || r.LossPct != 1 {
		t.Errorf("ratios %v %v loss %v", r.RatioVsKernel, r.RatioVsBare, r.LossPct)
	}
	js, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	checkResultJSON(t, js)
	var m struct {
		Cases []map[string]any `json:"cases"`
	}
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	if m.Cases[1]["proc_cpu_s_per_mpkt"] != nil {
		t.Errorf("kernel proc_cpu_s_per_mpkt = %v, want null", m.Cases[1]["proc_cpu_s_per_mpkt"])
	}

	// Nothing forwarded anywhere: ratios are 0, and the JSON stays valid.
	empty := &Result{Cases: []Case{computeCase(CaseISPmux, sampleAt(0, 0, 0, 0, 0), sampleAt(1, 0, 0, 0, 0))}}
	empty.finish()
	if _, err := empty.JSON(); err != nil || empty.RatioVsKernel != 0 || empty.RatioVsBare != 0 {
		t.Errorf("empty result: %v %+v", err, empty)
	}

	var tbl bytes.Buffer
	if err := r.WriteTable(&tbl); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"offered pps", "process CPU s/Mpkt", "ispmux", "kernel", "bare", "297000"} {
		if !strings.Contains(tbl.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tbl.String())
		}
	}
	md := r.Markdown()
	for _, want := range []string{"| case |", "ispmux bench forward", "trafgen ..."} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

// checkResultJSON checks that js is one JSON object with every key the
// benchmark promises, and returns it.
func checkResultJSON(t *testing.T, js []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(js))
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, js)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		t.Fatalf("more than one JSON value on stdout:\n%s", js)
	}
	for _, k := range []string{"ispmux_pps", "kernel_pps", "bare_pps", "ratio_vs_kernel", "ratio_vs_bare", "loss_pct", "subscribers", "duration_s", "cases"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	cases, _ := m["cases"].([]any)
	if len(cases) != 3 {
		t.Fatalf("cases: %v", m["cases"])
	}
	for i, name := range []string{CaseISPmux, CaseKernel, CaseBare} {
		c, _ := cases[i].(map[string]any)
		if c["name"] != name {
			t.Errorf("case %d name %v, want %s", i, c["name"], name)
		}
		for _, k := range []string{"offered_pps", "forwarded_pps", "loss_pct", "cpu_us_per_pkt_total", "cpu_s_per_mpkt", "proc_cpu_s_per_mpkt", "window_s"} {
			if _, ok := c[k]; !ok {
				t.Errorf("case %s lacks %q", name, k)
			}
		}
	}
	return m
}

func TestWriteBarSVG(t *testing.T) {
	var b bytes.Buffer
	bars := []Bar{{"ispmux", 297_000}, {"kernel <&> \"x\"", 200_000}, {"bare", 0}}
	if err := writeBarSVG(&b, "pps & more <title>", bars); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	var root string
	rects, depth := 0, 0
	var texts []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, b.String())
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				root = e.Name.Local
				if e.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root namespace %q", e.Name.Space)
				}
			}
			if e.Name.Local == "rect" {
				rects++
			}
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
	if rects != 1+len(bars) { // background + one per bar
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

func TestShellQuote(t *testing.T) {
	got := shellQuote([]string{"ip", "netns", "exec", "a-b", "/x/y z", "it's", ""})
	want := `ip netns exec a-b '/x/y z' 'it'\''s' ''`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestParseForward(t *testing.T) {
	o, err := parseForward(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.duration != 10*time.Second || o.subscribers != 256 || o.id != "benchfw" || o.out != "bench-out" || o.asJSON || o.keep || o.warmup != time.Second {
		t.Errorf("defaults: %+v", o)
	}
	for _, bad := range [][]string{{"--duration", "0s"}, {"--subscribers", "0"}, {"--subscribers", "5000"}, {"extra"}, {"--nope"}} {
		if _, err := parseForward(bad, io.Discard); err == nil {
			t.Errorf("parseForward(%q): no error", bad)
		}
	}
	if err := Main(context.Background(), []string{"nope"}, io.Discard, io.Discard); err == nil {
		t.Error("unknown benchmark accepted")
	}
}

// TestMACRewriter runs the bare forwarder's handler in a real worker over
// in-memory queues.
func TestMACRewriter(t *testing.T) {
	in, out := datapath.NewMemQueue(64, 2048), datapath.NewMemQueue(64, 2048)
	var sent [][]byte
	out.Sink = func(f []byte) { sent = append(sent, append([]byte(nil), f...)) }
	h := &macRewriter{in: 0, out: 1}
	copy(h.mac[:], []byte{2, 0, 0, 0, 0xb1, 1, 2, 0, 0, 0, 0xa1, 1})
	w, err := datapath.NewWorker(0, []datapath.Queue{in, out}, h, 64, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 60)
	copy(frame, []byte{2, 0, 0, 0, 0xa0, 1, 2, 0x10, 0, 0, 0, 1, 8, 0, 0x45})
	in.Inject(frame)
	in.Inject(frame[:10]) // runt: dropped
	out.Inject(frame)     // wrong direction: dropped
	w.RunOnce()
	if len(sent) != 1 {
		t.Fatalf("%d frames sent, want 1", len(sent))
	}
	want := append([]byte{2, 0, 0, 0, 0xb1, 1, 2, 0, 0, 0, 0xa1, 1}, frame[12:]...)
	if !bytes.Equal(sent[0], want) {
		t.Errorf("sent % x\nwant % x", sent[0], want)
	}
	if h.fwd != 1 || h.drop != 2 {
		t.Errorf("fwd %d drop %d, want 1 2", h.fwd, h.drop)
	}
	if in.FreeFrames() != 64 || out.FreeFrames() != 64 {
		t.Errorf("frames leaked: in %d out %d free of 64", in.FreeFrames(), out.FreeFrames())
	}
}

// TestForwardLab runs the whole benchmark, briefly, in a real lab: all three
// systems must forward, and the JSON must carry every promised key. It
// asserts no speed figure (this machine is shared and noisy).
func TestForwardLab(t *testing.T) {
	privtest.Lab(t) // network namespaces, XDP: root, and not in -short
	dir := t.TempDir()
	exe := filepath.Join(dir, "ispmux")
	build := exec.Command("go", "build", "-o", exe, "github.com/ispmux/ispmux/cmd/ispmux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	id := make([]byte, 2)
	if _, err := rand.Read(id); err != nil {
		t.Fatal(err)
	}
	labID := "bt" + hex.EncodeToString(id)
	outDir := filepath.Join(dir, "out")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	err := Main(ctx, []string{"forward", "--duration", "2s", "--subscribers", "16", "--json",
		"--id", labID, "--out", outDir, "--exe", exe}, &stdout, &stderr)
	t.Logf("benchmark took %v; stderr:\n%s", time.Since(start), stderr.String())
	if err != nil {
		t.Fatalf("bench forward: %v\nstdout:\n%s", err, stdout.String())
	}
	m := checkResultJSON(t, stdout.Bytes())
	for _, k := range []string{"ispmux_pps", "kernel_pps", "bare_pps"} {
		if v, _ := m[k].(float64); !(v > 0) {
			t.Errorf("%s = %v, want > 0", k, m[k])
		}
	}
	for _, c := range m["cases"].([]any) {
		c := c.(map[string]any)
		if v, _ := c["forwarded_pps"].(float64); !(v > 0) || c["error"] != nil {
			t.Errorf("case %v: forwarded %v pps, error %v", c["name"], c["forwarded_pps"], c["error"])
		}
	}
	for _, f := range []string{"forward.json", "forward.md", "forward.svg"} {
		if fi, err := os.Stat(filepath.Join(outDir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	// The lab is gone.
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), labID+"-") {
		t.Errorf("lab %s left behind:\n%s", labID, out)
	}
}
