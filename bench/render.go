package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// docs/PERFORMANCE.md is rendered from the benchmarks' JSON committed under
// docs/bench (issue 11: no hand-typed figures). The document is prose with
// generated blocks:
//
//	<!-- bench:forward begin (generated from bench/forward.json by `make perf-doc`; do not edit) -->
//	…
//	<!-- bench:forward end -->
//
// `ispmux bench report` replaces every block's content with the rendering
// of its JSON file and leaves everything outside the blocks as it is (other
// sections, written by hand, stay). A JSON file without a block in the
// document gets a new section at the end; a block without its JSON file
// says so. forward.svg and micro.svg are drawn from their JSON too. A test
// (TestPerformanceDocUpToDate) fails when the committed document or charts
// differ from the rendering of the committed JSON.

// renderedBench is one benchmark the renderer knows.
type renderedBench struct {
	name  string // file stem: NAME.json, block bench:NAME
	title string // heading of a section the renderer adds
	// render returns the block's body (headings at level h, charts under
	// svgDir), and charts to write into the JSON's directory.
	render func(js []byte, h, svgDir, dir string) (body string, charts map[string][]byte, err error)
}

var renderedBenches = []renderedBench{
	{"forward", "Lab forwarding: `ispmux bench forward`", renderForwardAs("forward")},
	// Where the fast path's work runs (stop 35): the same cases with the
	// kernel's forwarding left in the generator's softirq, as the XDP
	// program's is (--kernel-rps=false), and with the fast path moved off
	// that CPU in threaded NAPI (--xdp-napi-thread).
	{"forward-softirq", "Lab forwarding, both in the generator's softirq", renderForwardAs("forward-softirq")},
	{"forward-napi", "Lab forwarding, the fast path in threaded NAPI", renderForwardAs("forward-napi")},
	{"micro", "Microbenchmarks: `ispmux bench micro`", renderMicro},
	{"dhcp", "DHCP: `ispmux bench dhcp`", renderDHCP},
	{"scale", "Scale: `ispmux bench scale`", renderScale},
}

func beginMarker(name string) string {
	return "<!-- bench:" + name + " begin (generated from bench/" + name + ".json by `make perf-doc`; do not edit) -->"
}

func endMarker(name string) string { return "<!-- bench:" + name + " end -->" }

// renderPerformance renders doc (the document's current text) from the JSON
// files in dir; svgDir is dir as the document links it. It returns every
// file it produces by path: the document at docPath and the charts in dir.
func renderPerformance(dir, docPath string, doc []byte) (map[string][]byte, error) {
	rel, err := filepath.Rel(filepath.Dir(docPath), dir)
	if err != nil {
		rel = dir
	}
	svgDir := filepath.ToSlash(rel)
	out := map[string][]byte{}
	text := string(doc)
	for _, rb := range renderedBenches {
		js, err := os.ReadFile(filepath.Join(dir, rb.name+".json"))
		have := err == nil
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		var body string
		if have {
			var charts map[string][]byte
			body, charts, err = rb.render(js, "###", svgDir, dir)
			if err != nil {
				return nil, fmt.Errorf("bench report: %s.json: %w", rb.name, err)
			}
			for f, data := range charts {
				out[filepath.Join(dir, f)] = data
			}
		} else {
			body = fmt.Sprintf("_Not measured yet: %s/%s.json is not committed._\n", svgDir, rb.name)
		}
		block := beginMarker(rb.name) + "\n\n" + strings.TrimRight(body, "\n") + "\n\n" + endMarker(rb.name)
		bi := strings.Index(text, "<!-- bench:"+rb.name+" begin")
		switch {
		case bi >= 0:
			ei := strings.Index(text[bi:], endMarker(rb.name))
			if ei < 0 {
				return nil, fmt.Errorf("bench report: %s: block bench:%s has no end marker", docPath, rb.name)
			}
			text = text[:bi] + block + text[bi+ei+len(endMarker(rb.name)):]
		case have:
			text = strings.TrimRight(text, "\n") + "\n\n## " + rb.title + "\n\n" + block + "\n"
		}
	}
	out[docPath] = []byte(text)
	return out, nil
}

// reportCmd runs `ispmux bench report [--check] [DIR [DOC]]`.
func reportCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	check := fs.Bool("check", false, "change nothing; fail if the document or a chart is not the rendering of the JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	dir, docPath := "docs/bench", "docs/PERFORMANCE.md"
	switch fs.NArg() {
	case 0:
	case 1:
		dir = fs.Arg(0)
	case 2:
		dir, docPath = fs.Arg(0), fs.Arg(1)
	default:
		return errors.New("usage: ispmux bench report [--check] [DIR [DOC]]")
	}
	doc, err := os.ReadFile(docPath)
	if err != nil {
		return fmt.Errorf("bench report: %w", err)
	}
	files, err := renderPerformance(dir, docPath, doc)
	if err != nil {
		return err
	}
	var stale []string
	for _, p := range sortedKeys(files) {
		old, err := os.ReadFile(p)
		if err == nil && bytes.Equal(old, files[p]) {
			continue
		}
		if *check {
			stale = append(stale, p)
			continue
		}
		if err := os.WriteFile(p, files[p], 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", p)
	}
	if len(stale) > 0 {
		return fmt.Errorf("bench report: %s not the rendering of %s/*.json: run `make perf-doc`", strings.Join(stale, ", "), dir)
	}
	return nil
}

// renderForwardAs renders a bench forward result whose chart is
// name.svg. The summary (sweep, ratios, targets) is derived again from the
// trials, so a result written before a change to it reads as a new one
// would.
func renderForwardAs(name string) func(js []byte, h, svgDir, _ string) (string, map[string][]byte, error) {
	return func(js []byte, h, svgDir, _ string) (string, map[string][]byte, error) {
		var r ForwardResult
		if err := json.Unmarshal(js, &r); err != nil {
			return "", nil, err
		}
		r.finish()
		var svg bytes.Buffer
		if err := r.chart(&svg); err != nil {
			return "", nil, err
		}
		return r.section(h, svgDir+"/"+name+".svg"), map[string][]byte{name + ".svg": svg.Bytes()}, nil
	}
}

func renderMicro(js []byte, h, svgDir, _ string) (string, map[string][]byte, error) {
	var r MicroResult
	if err := json.Unmarshal(js, &r); err != nil {
		return "", nil, err
	}
	var svg bytes.Buffer
	if err := r.chart(&svg); err != nil {
		return "", nil, err
	}
	return r.section(h, svgDir+"/micro.svg"), map[string][]byte{"micro.svg": svg.Bytes()}, nil
}

// fmtAny renders a JSON value of another benchmark's file: a number, a
// {median, min, max} object, a string, true/false, null ("–").
func fmtAny(v any) string {
	switch x := v.(type) {
	case nil:
		return "–"
	case float64:
		return fmtNum(x)
	case bool:
		if x {
			return "yes"
		}
		return "no"
	case string:
		return x
	case map[string]any:
		if m, ok := x["median"].(float64); ok {
			s := fmtNum(m)
			lo, ok1 := x["min"].(float64)
			hi, ok2 := x["max"].(float64)
			if ok1 && ok2 && fmtNum(lo) != fmtNum(hi) {
				s += " [" + fmtNum(lo) + "–" + fmtNum(hi) + "]"
			}
			return s
		}
	}
	b, _ := json.Marshal(v)
	return "`" + string(b) + "`"
}

// fmtNum prints a figure with about three significant digits.
func fmtNum(x float64) string {
	a := math.Abs(x)
	switch {
	case x == math.Trunc(x) && a < 1e15:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case a >= 100:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(x, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(x, 'f', 2, 64)
	}
	return strconv.FormatFloat(x, 'g', 3, 64)
}

func numOf(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case map[string]any:
		m, ok := x["median"].(float64)
		return m, ok
	}
	return 0, false
}

// renderCommon renders what any result may carry: when and how it ran,
// targets ({name, want, got, met}) and notes.
func renderCommon(b *strings.Builder, m map[string]any) {
	var meta []string
	for _, k := range []string{"started", "kernel", "cpus", "runs", "command"} {
		if v, ok := m[k]; ok && v != nil {
			s := fmtAny(v)
			if k == "command" {
				s = "`" + s + "`"
			}
			meta = append(meta, k+" "+s)
		}
	}
	if len(meta) > 0 {
		fmt.Fprintf(b, "Run: %s.\n\n", strings.Join(meta, "; "))
	}
	if ts, ok := m["targets"].([]any); ok && len(ts) > 0 {
		b.WriteString("| target | want | got | |\n|---|---|---:|---|\n")
		for _, t := range ts {
			tm, _ := t.(map[string]any)
			met := "–"
			if v, ok := tm["met"].(bool); ok {
				met = "**" + metWord(v) + "**"
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s |\n", fmtAny(tm["name"]), fmtAny(tm["want"]), fmtAny(tm["got"]), met)
		}
		b.WriteString("\n")
	}
}

func renderNotes(b *strings.Builder, m map[string]any) {
	if ns, ok := m["notes"].([]any); ok && len(ns) > 0 {
		b.WriteString("\n")
		for _, n := range ns {
			fmt.Fprintf(b, "- %s\n", fmtAny(n))
		}
	}
}

// renderDHCP renders bench dhcp's JSON by issue 11's keys.
func renderDHCP(js []byte, h, svgDir, dir string) (string, map[string][]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		return "", nil, err
	}
	var b strings.Builder
	renderCommon(&b, m)
	b.WriteString("| figure | value |\n|---|---:|\n")
	row := func(label, key string) {
		if v, ok := m[key]; ok {
			fmt.Fprintf(&b, "| %s | %s |\n", label, fmtAny(v))
		}
	}
	row("ispmux CPU per DORA, µs (store included)", "ispmux_cpu_us_per_dora")
	row("dhcrelay CPU per DORA, µs", "relay_cpu_us_per_dora")
	if a, ok1 := numOf(m["ispmux_cpu_us_per_dora"]); ok1 {
		if r, ok2 := numOf(m["relay_cpu_us_per_dora"]); ok2 && r > 0 {
			fmt.Fprintf(&b, "| ispmux ÷ dhcrelay CPU per DORA | %s |\n", fmtNum(round(a/r, 2)))
		}
	}
	row("ispmux capacity, DORA/s (≤ 1 % failed)", "ispmux_capacity_per_s")
	row("dhcrelay capacity, DORA/s (≤ 1 % failed)", "relay_capacity_per_s")
	row("outage recovery: subscribers", "outage_subscribers")
	row("outage recovery: ispmux, s to 99.9 % bound", "outage_ispmux_s")
	row("outage recovery: dhcrelay, s to 99.9 % bound", "outage_relay_s")
	if p99, ok := m["p99_ms"].(map[string]any); ok && len(p99) > 0 {
		keys := sortedKeys(p99)
		sort.SliceStable(keys, func(i, j int) bool {
			a, e1 := strconv.ParseFloat(keys[i], 64)
			c, e2 := strconv.ParseFloat(keys[j], 64)
			if e1 != nil || e2 != nil {
				return keys[i] < keys[j]
			}
			return a < c
		})
		// The p99 table: the end-to-end figures, then (bench dhcp
		// --legs) the relays' own parts and Kea's.
		cols := []struct{ key, label string }{
			{"p99_ms", "ispmux REQUEST → ACK p99, ms"},
			{"offer_p99_ms", "ispmux DISCOVER → OFFER p99, ms"},
			{"wire_p99_ms", "at the client's wire: ispmux ACK p99, ms"},
			{"wire_offer_p99_ms", "at the client's wire: ispmux OFFER p99, ms"},
			{"ack_through_p99_ms", "ispmux's part: ACK p99, ms"},
			{"offer_through_p99_ms", "ispmux's part: OFFER p99, ms"},
			{"server_offer_p99_ms", "Kea's part: OFFER p99, ms"},
			{"relay_ack_through_p99_ms", "dhcrelay's part: ACK p99, ms"},
			{"relay_offer_through_p99_ms", "dhcrelay's part: OFFER p99, ms"},
		}
		var head, align []string
		var maps []map[string]any
		for _, c := range cols {
			if mm, ok := m[c.key].(map[string]any); ok && len(mm) > 0 {
				head, align, maps = append(head, c.label), append(align, "---:"), append(maps, mm)
			}
		}
		fmt.Fprintf(&b, "\n| offered DORA/s | %s |\n|---:|%s|\n", strings.Join(head, " | "), strings.Join(align, "|"))
		for _, k := range keys {
			cells := make([]string, len(maps))
			for i, mm := range maps {
				cells[i] = "-"
				if v, ok := mm[k]; ok {
					cells[i] = fmtAny(v)
				}
			}
			fmt.Fprintf(&b, "| %s | %s |\n", k, strings.Join(cells, " | "))
		}
		if len(maps) > 2 {
			b.WriteString("\nThe parts come from kernel timestamps at the generator's interface and at Kea's (`bench dhcp --legs`): a relay's part is the request's way to Kea and the answer's way back, ispmux's store commit before an ACK included; Kea's part is from a request's arrival to its answer. At the client's wire is the whole exchange from the request leaving the generator's interface to the answer arriving there: the end-to-end figures without the generator's own delays in sending and reading. Each column is its own p99: the parts' p99s do not add up to the whole's, and the generator's own time is in none of them.\n")
		}
	}
	if exists(filepath.Join(dir, "dhcp.svg")) {
		fmt.Fprintf(&b, "\n![bench dhcp](%s/dhcp.svg)\n", svgDir)
	}
	renderNotes(&b, m)
	return b.String(), nil, nil
}

// renderScale renders bench scale's JSON by issue 11's keys.
func renderScale(js []byte, h, svgDir, dir string) (string, map[string][]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		return "", nil, err
	}
	var b strings.Builder
	renderCommon(&b, m)
	cols := []struct{ key, title string }{
		{"subscribers", "subscribers"}, {"kind", "kind"}, {"first_start_s", "first start, s"}, {"restart_s", "restart, s"},
		{"reload_s", "reload (one change), s"}, {"rss_anon_bytes_per_subscriber", "RssAnon B/subscriber"}, {"store_bytes_per_subscriber", "store B/subscriber"},
	}
	if pts, ok := m["points"].([]any); ok && len(pts) > 0 {
		if pm, _ := pts[0].(map[string]any); pm != nil && pm["idle_cpu_pct"] != nil { // measured since stop 34
			cols = append(cols, struct{ key, title string }{"idle_cpu_pct", "idle CPU, % of one"})
		}
		for _, c := range []struct{ key, title string }{
			{"lapsed_ended_s", "lapsed bindings ended, s"}, // the lapsed kind, since stop 41
			{"compact_s", "ispmux compact, s"},             // since the compaction was measured
			{"import_devices_per_s", "device import, devices/s"},
		} {
			for _, p := range pts {
				if pm, _ := p.(map[string]any); pm != nil && pm[c.key] != nil {
					cols = append(cols, c)
					break
				}
			}
		}
		b.WriteString("|")
		for _, c := range cols {
			b.WriteString(" " + c.title + " |")
		}
		b.WriteString("\n|")
		for range cols {
			b.WriteString("---:|")
		}
		b.WriteString("\n")
		for _, p := range pts {
			pm, _ := p.(map[string]any)
			b.WriteString("|")
			for _, c := range cols {
				b.WriteString(" " + fmtAny(pm[c.key]) + " |")
			}
			b.WriteString("\n")
		}
	}
	if exists(filepath.Join(dir, "scale.svg")) {
		fmt.Fprintf(&b, "\n![bench scale](%s/scale.svg)\n", svgDir)
	}
	renderNotes(&b, m)
	return b.String(), nil, nil
}
