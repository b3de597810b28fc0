package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const microOutput = `goos: linux
goarch: amd64
pkg: github.com/ispmux/ispmux/classifier
cpu: AMD EPYC
BenchmarkMACTableFloor/1K-2         	100000000	        2.5 ns/op	        20.00 B/entry	       0 B/op	       0 allocs/op
BenchmarkMACTableFloor/1M           	80733664	        16.00 ns/op	        20.00 B/entry	       0 B/op	       0 allocs/op
BenchmarkMACTable/1M-2              	12020085	        40.00 ns/op	        20.00 B/entry	       0 B/op	       0 allocs/op
BenchmarkPipeline/bare 	17482981	        30 ns/op	       0 B/op	       0 allocs/op
BenchmarkPipeline/1K   	 2969436	        90 ns/op	        40.00 table-B/sub	       0 B/op	       0 allocs/op
BenchmarkPipeline/1M   	 4503512	        120 ns/op	        40.00 table-B/sub	       0 B/op	       1 allocs/op
BenchmarkPipelineFloor/1M         	72913800	        20 ns/op	       0 B/op	       0 allocs/op
PASS
ok  	github.com/ispmux/ispmux/classifier	4.569s
`

func TestParseBenchOutput(t *testing.T) {
	l, err := parseBenchOutput([]byte(microOutput))
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 7 {
		t.Fatalf("%d lines: %+v", len(l), l)
	}
	if l[0].Name != "BenchmarkMACTableFloor/1K" || l[0].NsPerOp != 2.5 || l[0].N != 100000000 || l[0].Metrics["B/entry"] != 20 {
		t.Errorf("line 0: %+v", l[0])
	}
	if l[5].Name != benchPipe1M || l[5].Allocs != 1 || l[5].Metrics["table-B/sub"] != 40 {
		t.Errorf("line 5: %+v", l[5])
	}
	for _, bad := range []string{"BenchmarkX 10 1.5\n", "BenchmarkX 10 abc ns/op\n", "BenchmarkX 10 5 B/op\n"} {
		if _, err := parseBenchOutput([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func testMicroResult(t *testing.T) *MicroResult {
	t.Helper()
	r := &MicroResult{Benchmark: "micro", Runs: 3, Benchtime: "1s", GoVersion: "go1.26", Started: "2026-12-02T00:00:00Z", Command: "ispmux bench micro"}
	for i := range 3 {
		l, err := parseBenchOutput([]byte(strings.ReplaceAll(microOutput, "40.00 ns/op", []string{"36.00 ns/op", "40.00 ns/op", "48.00 ns/op"}[i])))
		if err != nil {
			t.Fatal(err)
		}
		r.RunsRaw = append(r.RunsRaw, l)
	}
	r.microFinish()
	return r
}

func TestMicroFinish(t *testing.T) {
	r := testMicroResult(t)
	mac := r.bench(benchMAC1M)
	if mac == nil || *mac.NsPerOp != (Stat{Median: 40, Min: 36, Max: 48, N: 3}) {
		t.Fatalf("MAC 1M: %+v", mac)
	}
	if len(r.Ratios) != 2 || *r.Ratios[0].Value != (Stat{Median: 2.5, Min: 2.25, Max: 3, N: 3}) || r.Ratios[1].Value.Median != 2.4 {
		t.Errorf("ratios: %+v %+v", r.Ratios[0].Value, r.Ratios[1].Value)
	}
	want := []struct {
		got float64
		met bool
	}{{2.5, false}, {90, false}, {2.4, false}, {1, false}}
	if len(r.Targets) != len(want) {
		t.Fatalf("targets: %+v", r.Targets)
	}
	for i, w := range want {
		if r.Targets[i].Got != w.got || r.Targets[i].Met != w.met {
			t.Errorf("target %d: %+v, want %+v", i, r.Targets[i], w)
		}
	}
	md := r.Markdown()
	for _, s := range []string{"| `BenchmarkMACTable/1M` | 40.0 [36.0–48.0] | 0 |", "| MAC lookup ÷ memory floor at 1M | 2.50 [2.25–3.00] |", "**MISSED**", "![ns per operation](micro.svg)"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
	var svg bytes.Buffer
	if err := r.chart(&svg); err != nil || xml.Unmarshal(svg.Bytes(), new(struct{})) != nil {
		t.Errorf("chart: %v", err)
	}
}

// TestRenderPerformance renders a document from JSON files: blocks are
// replaced, prose outside them stays, files without a block get a
// section, a block without a file says so, and rendering is idempotent.
func TestRenderPerformance(t *testing.T) {
	dir := t.TempDir()
	bdir := filepath.Join(dir, "bench")
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, v any) {
		js, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bdir, name), js, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("forward.json", testForwardResult())
	write("micro.json", testMicroResult(t))
	write("dhcp.json", map[string]any{"ispmux_cpu_us_per_dora": 310.5, "relay_cpu_us_per_dora": 207.0, "p99_ms": map[string]any{"2000": 8.5, "100": 2.25, "500": 3},
		"ispmux_capacity_per_s": 4100, "relay_capacity_per_s": map[string]any{"median": 5200, "min": 5000, "max": 5400}, "outage_subscribers": 10000,
		"outage_ispmux_s": 21.5, "outage_relay_s": 25, "notes": []string{"dhcp note"}, "targets": []any{map[string]any{"name": "CPU per DORA", "want": "≤ 1.5×", "got": 1.5, "met": true}}})
	doc := "# ispmux performance\n\nIntro prose, kept.\n\n## Lab forwarding\n\n" + beginMarker("forward") + "\nstale figures 12345\n" + endMarker("forward") +
		"\n\n## Scale\n\n" + beginMarker("scale") + "\nold\n" + endMarker("scale") + "\n\n## Tenants (issue 7)\n\n| what | measured |\n|---|---|\n| claims | 137 ms |\n"
	docPath := filepath.Join(dir, "PERFORMANCE.md")
	files, err := renderPerformance(bdir, docPath, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	got := string(files[docPath])
	for _, s := range []string{
		"Intro prose, kept.", "## Tenants (issue 7)", "| claims | 137 ms |", // prose stays
		"| 256 | 100k | 1000 [900–1100] |", "![CPU ns per forwarded packet](bench/forward.svg)", // forward rendered
		"_Not measured yet: bench/scale.json is not committed._",                           // block without JSON
		"## Microbenchmarks: `ispmux bench micro`", "![ns per operation](bench/micro.svg)", // appended
		"## DHCP: `ispmux bench dhcp`", "| ispmux CPU per DORA, µs (store included) | 310 |", "| ispmux ÷ dhcrelay CPU per DORA | 1.50 |",
		"| dhcrelay capacity, DORA/s (≤ 1 % failed) | 5200 [5000–5400] |", "| 100 | 2.25 |\n| 500 | 3 |\n| 2000 | 8.50 |", "- dhcp note", "| CPU per DORA | ≤ 1.5× | 1.50 | **met** |",
	} {
		if !strings.Contains(got, s) {
			t.Errorf("rendered document lacks %q:\n%s", s, got)
		}
	}
	if strings.Contains(got, "stale figures") || strings.Contains(got, "\nold\n") {
		t.Errorf("stale block content kept:\n%s", got)
	}
	if strings.Index(got, "## Scale") > strings.Index(got, "## Tenants") || strings.Index(got, "## Tenants") > strings.Index(got, "## Microbenchmarks") {
		t.Error("sections out of order")
	}
	for _, f := range []string{"forward.svg", "micro.svg"} {
		if err := xml.Unmarshal(files[filepath.Join(bdir, f)], new(struct{})); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	again, err := renderPerformance(bdir, docPath, files[docPath])
	if err != nil || !bytes.Equal(again[docPath], files[docPath]) {
		t.Errorf("not idempotent: %v\n%s", err, again[docPath])
	}
	// scale.json arrives: its block is filled in place.
	write("scale.json", map[string]any{"points": []any{map[string]any{"subscribers": 1000000, "kind": "static", "first_start_s": 4.2, "restart_s": 2.5,
		"reload_s": 0.31, "rss_anon_bytes_per_subscriber": 350, "store_bytes_per_subscriber": 212.4}}})
	files, err = renderPerformance(bdir, docPath, files[docPath])
	if err != nil {
		t.Fatal(err)
	}
	if s := string(files[docPath]); !strings.Contains(s, "| 1000000 | static | 4.20 | 2.50 | 0.31 | 350 | 212 |") || strings.Contains(s, "Not measured yet") {
		t.Errorf("scale block:\n%s", s)
	}
	// A block without its end marker is an error, not a silent rewrite.
	if _, err := renderPerformance(bdir, docPath, []byte(beginMarker("micro")+"\n")); err == nil {
		t.Error("unterminated block accepted")
	}
}

// TestPerformanceDocUpToDate fails when docs/PERFORMANCE.md or a chart in
// docs/bench is not the rendering of the committed JSON under docs/bench:
// figures in the document cannot drift from the measurements. Fix with
// `make perf-doc`.
func TestPerformanceDocUpToDate(t *testing.T) {
	const dir, docPath = "../docs/bench", "../docs/PERFORMANCE.md"
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	files, err := renderPerformance(dir, docPath, doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range sortedKeys(files) {
		old, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s: %v (run `make perf-doc`)", p, err)
			continue
		}
		if !bytes.Equal(old, files[p]) {
			t.Errorf("%s is not the rendering of %s/*.json: run `make perf-doc`", p, dir)
		}
	}
}
