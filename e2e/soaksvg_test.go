package e2e

import (
	"fmt"
	"html"
	"math"
	"strings"
	"testing"
)

// soakSVG draws the soak report: one panel per series over time (the
// warm-up shaded, the fitted slope after it dashed), and a strip with
// the checks (green consistent, red not), the flaps and the reloads.
func soakSVG(rep *soakReport) []byte {
	const (
		w, left, right = 960.0, 70.0, 20.0
		panelH, gap    = 120.0, 46.0
		top            = 56.0
	)
	type panel struct {
		title, unit, key string
		v                func(soakSample) float64
		alt              func(soakSample) float64 // a second, dotted line
		altName          string
	}
	panels := []panel{
		{"memory: RssAnon after a GC (dotted: VmRSS)", "MiB", "rss_anon_gc_kb",
			func(s soakSample) float64 { return float64(s.RSSAnonKB) / 1024 },
			func(s soakSample) float64 { return float64(s.RSSKB) / 1024 }, "VmRSS"},
		{"goroutines", "", "goroutines", func(s soakSample) float64 { return float64(s.Goroutines) }, nil, ""},
		{"open files", "", "open_files", func(s soakSample) float64 { return float64(s.FDs) }, nil, ""},
		{"store file", "MiB", "store_bytes", func(s soakSample) float64 { return float64(s.StoreBytes) / (1 << 20) }, nil, ""},
		{"events held in the store's log (bounded by its retention)", "k", "events_held", func(s soakSample) float64 { return float64(s.Events) / 1000 }, nil, ""},
	}
	stripH := 60.0
	h := top + float64(len(panels))*(panelH+gap) + stripH + 40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="16" font-weight="bold">ispmux soak: %s, %d DHCP subscribers, %d s leases, iperf3 through both ISPs, %d reloads, %d link flaps, no kill</text>`+"\n",
		left, html.EscapeString(rep.Duration), rep.Subscribers, rep.LeaseS, rep.Reloads, len(rep.Flaps))
	fmt.Fprintf(&b, `<text x="%.0f" y="40" fill="#444">%s · commit %s · checks consistent %d/%d · flap recovery p50 %.0f ms, max %.0f ms · shaded: warm-up (%.0f s), dashed: slope after it</text>`+"\n",
		left, rep.Date.Format("2006-01-02 15:04 UTC"), html.EscapeString(rep.Commit), rep.ChecksOK, len(rep.Checks), rep.FlapRecovery.P50MS, rep.FlapRecovery.MaxMS, rep.WarmupS)
	tmax := 1.0
	for _, s := range rep.Samples {
		tmax = max(tmax, s.T)
	}
	for _, c := range rep.Checks {
		tmax = max(tmax, c.T)
	}
	pw := w - left - right
	x := func(t float64) float64 { return left + pw*t/tmax }
	for pi, p := range panels {
		y0 := top + float64(pi)*(panelH+gap) + 18
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, s := range rep.Samples {
			lo, hi = min(lo, p.v(s)), max(hi, p.v(s))
			if p.alt != nil {
				lo, hi = min(lo, p.alt(s)), max(hi, p.alt(s))
			}
		}
		if len(rep.Samples) == 0 {
			lo, hi = 0, 1
		}
		lo = min(lo, 0)
		if hi <= lo {
			hi = lo + 1
		}
		hi += (hi - lo) * 0.08
		y := func(v float64) float64 { return y0 + panelH - panelH*(v-lo)/(hi-lo) }
		sl := rep.Slopes[p.key]
		title := p.title
		// The slope in the panel's unit (each panel is linear in its field).
		scale := p.v(soakSample{RSSAnonKB: 1, Goroutines: 1, FDs: 1, StoreBytes: 1, Events: 1})
		if _, ok := rep.Slopes[p.key]; ok {
			title += fmt.Sprintf(" — after the warm-up: %+.3g %s/h (%+.3g %s over the window): %s", sl.PerHour*scale, p.unit, sl.Growth*scale, p.unit,
				map[bool]string{true: "flat", false: "NOT FLAT"}[sl.Flat])
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-weight="bold">%s</text>`+"\n", left, y0-6, html.EscapeString(title))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#eee"/>`+"\n", left, y0, x(rep.WarmupS)-left, panelH)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", left, y0, pw, panelH)
		for _, v := range []float64{lo, (lo + hi) / 2, hi} {
			fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end" fill="#444">%s %s</text>`+"\n", left-4, y(v)+4, svgNum(v), p.unit)
		}
		line := func(f func(soakSample) float64, style string) {
			var pts []string
			for _, s := range rep.Samples {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.T), y(f(s))))
			}
			fmt.Fprintf(&b, `<polyline fill="none" %s points="%s"/>`+"\n", style, strings.Join(pts, " "))
		}
		if p.alt != nil {
			line(p.alt, `stroke="#888" stroke-width="1.2" stroke-dasharray="2,3"`)
		}
		line(p.v, `stroke="#1f5fa8" stroke-width="1.6"`)
		// The fitted line after the warm-up (in the panel's unit).
		if sl.PerHour != 0 || sl.Mean != 0 {
			var t0, t1 float64 = rep.WarmupS, tmax
			var n, sx float64
			for _, s := range rep.Samples {
				if s.T >= rep.WarmupS {
					n++
					sx += s.T
				}
			}
			if n > 0 {
				mt := sx / n
				at := func(t float64) float64 { return (sl.Mean + sl.PerHour*(t-mt)/3600) * scale }
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#c0392b" stroke-width="1.2" stroke-dasharray="6,4"/>`+"\n",
					x(t0), y(at(t0)), x(t1), y(at(t1)))
			}
		}
	}
	// The strip: checks, flaps, reloads.
	y0 := top + float64(len(panels))*(panelH+gap) + 10
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-weight="bold">checks (bindings = ISPs' leases): green consistent, red not · flaps: orange · reloads (SIGHUP): blue</text>`+"\n", left, y0-6)
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", left, y0, pw, stripH)
	for _, c := range rep.Checks {
		col := "#27ae60"
		if !c.Consistent {
			col = "#c0392b"
		}
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`+"\n", x(c.T), y0+14, col)
	}
	for _, f := range rep.Flaps {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e67e22" stroke-width="1.5"><title>%s %s: %.0f ms</title></line>`+"\n",
			x(f.T), y0+26, x(f.T), y0+40, f.Port, f.Kind, f.RecoveryMS)
	}
	for i := 1; i <= rep.Reloads; i++ {
		t := float64(i) * rep.Plan["reload"]
		if t <= tmax {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#2e86c1" stroke-width="1.5"/>`+"\n", x(t), y0+44, x(t), y0+56)
		}
	}
	for _, t := range []float64{0, tmax / 4, tmax / 2, 3 * tmax / 4, tmax} {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#444">%s</text>`+"\n", x(t), y0+stripH+16, svgDur(t))
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func svgNum(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func svgDur(s float64) string {
	if s >= 600 {
		return fmt.Sprintf("%.0f min", s/60)
	}
	return fmt.Sprintf("%.0f s", s)
}

// TestSoakSVG draws a made-up report (no lab): the picture is
// well-formed and carries the figures.
func TestSoakSVG(t *testing.T) {
	rep := &soakReport{Duration: "2m0s", WarmupS: 30, Subscribers: 200, LeaseS: 30, Reloads: 3, Plan: map[string]float64{"reload": 30}}
	for i := range 25 {
		rep.Samples = append(rep.Samples, soakSample{T: float64(i * 5), RSSKB: 90000 + i, RSSAnonKB: 70000 + i%3, Goroutines: 60, FDs: 40, StoreBytes: 16 << 20, Events: uint64(1000 * i)})
	}
	rep.Checks = []soakCheck{{T: 15, Consistent: true}, {T: 30, Consistent: false}}
	rep.Flaps = []soakFlap{{T: 10, Port: "acc0", Kind: "down-up", RecoveryMS: 20}}
	rep.Slopes, rep.Flat = soakSlopes(rep.Samples, rep.WarmupS)
	svg := string(soakSVG(rep))
	for _, want := range []string{"<svg", "</svg>", "goroutines", "open files", "#c0392b", "acc0 down-up"} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if s := rep.Slopes["goroutines"]; !s.Flat || s.PerHour != 0 {
		t.Errorf("goroutines: %+v, want flat with slope 0", s)
	}
	if s := rep.Slopes["rss_kb"]; s.PerHour < 700 || s.PerHour > 740 {
		t.Errorf("rss slope %v/h, want 720 (1 kB a 5 s sample)", s.PerHour)
	}
}
