package bench

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
)

// Bar is one bar of a chart.
type Bar struct {
	Label string
	Value float64
}

// writeBarSVG writes a plain SVG bar chart of bars (values in packets per
// second) with a title. It has no dependencies: every element is written by
// hand and every text is XML-escaped.
func writeBarSVG(w io.Writer, title string, bars []Bar) error {
	return writeBarChart(w, title, "packets per second", "pps", bars)
}

// writeBarChart is writeBarSVG for any rate: axis is the vertical axis's
// label and unit follows each bar's value.
func writeBarChart(w io.Writer, title, axis, unit string, bars []Bar) error {
	const (
		width, height = 640, 400
		left, right   = 70, 20
		top, bottom   = 50, 60
		plotW, plotH  = width - left - right, height - top - bottom
		barFill       = "#4a7ab5"
	)
	max := 0.0
	for _, b := range bars {
		if b.Value > max {
			max = b.Value
		}
	}
	scale := niceCeil(max)
	var b bytes.Buffer
	svgStart(&b, width, height, 13, title, 28, 16)
	svgAxis(&b, left, top, plotW, plotH, scale, axis)
	if n := len(bars); n > 0 {
		slot := float64(plotW) / float64(n)
		bw := slot * 0.6
		for i, bar := range bars {
			h := 0.0
			if scale > 0 {
				h = float64(plotH) * bar.Value / scale
			}
			x := float64(left) + slot*float64(i) + (slot-bw)/2
			y := float64(top+plotH) - h
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, y, bw, h, barFill)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x+bw/2, y-6, xmlText(fmt.Sprintf("%.0f %s", bar.Value, unit)))
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" font-weight="bold">%s</text>`+"\n", x+bw/2, top+plotH+22, xmlText(bar.Label))
		}
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// xmlText is s escaped for the text of an SVG element.
func xmlText(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// svgStart writes a chart's beginning: the XML declaration, the svg
// element of width x height (font size fontSize) on a white background,
// and title in bold, centred at y titleY in font size titleSize.
func svgStart(b *bytes.Buffer, width, height, fontSize int, title string, titleY, titleSize int) {
	fmt.Fprintf(b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="%d">`+"\n", width, height, width, height, fontSize)
	fmt.Fprintf(b, `<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle" font-size="%d" font-weight="bold">%s</text>`+"\n", width/2, titleY, titleSize, xmlText(title))
}

// svgAxis writes the vertical axis of a plot of plotW x plotH at (left,
// top): a grid line with its value (humanPPS) at each of 6 ticks from 0
// to scale, the base line, and the axis label turned upright.
func svgAxis(b *bytes.Buffer, left, top, plotW, plotH int, scale float64, axis string) {
	const ticks, gridColor = 5, "#dddddd"
	for i := 0; i <= ticks; i++ {
		v := scale * float64(i) / ticks
		y := float64(top+plotH) - float64(plotH)*float64(i)/ticks
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", left, y, left+plotW, y, gridColor)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, xmlText(humanPPS(v)))
	}
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000000"/>`+"\n", left, top+plotH, left+plotW, top+plotH)
	fmt.Fprintf(b, `<text x="16" y="%d" text-anchor="middle" transform="rotate(-90 16 %d)">%s</text>`+"\n", top+plotH/2, top+plotH/2, xmlText(axis))
}

// niceCeil rounds v up to 1, 2, 2.5 or 5 times a power of ten (1 for v <= 0).
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := 1.0
	for p*10 <= v {
		p *= 10
	}
	for p > v {
		p /= 10
	}
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// humanPPS formats a rate for an axis label: 0, 950, 12.5k, 1.2M.
func humanPPS(v float64) string {
	switch {
	case v >= 1e6:
		return trimZero(fmt.Sprintf("%.2f", v/1e6)) + "M"
	case v >= 1e3:
		return trimZero(fmt.Sprintf("%.1f", v/1e3)) + "k"
	}
	return fmt.Sprintf("%.0f", v)
}

func trimZero(s string) string {
	for len(s) > 1 && s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	return s
}

// seriesColors are the grouped chart's series colours, in order.
var seriesColors = []string{"#4a7ab5", "#d9822b", "#b0b0b0", "#5aa469", "#9467bd", "#8c564b"}

// writeGroupedChart writes a grouped bar chart: one group of bars per
// entry of groups, one bar per series (vals[group][series], nil = no bar),
// each the median with a min–max whisker, a legend and a vertical axis
// labelled axis. Like writeBarChart it has no dependencies.
func writeGroupedChart(w io.Writer, title, axis string, groups, series []string, vals [][]*Stat) error {
	const (
		height           = 420
		left, right      = 70, 20
		top, bottom      = 70, 70
		plotH            = height - top - bottom
		minGroupW        = 90
		defaultW         = 720
		legendRowHeight  = 18
		legendItemsPerRw = 4
	)
	width := max(defaultW, left+right+minGroupW*len(groups))
	plotW := width - left - right
	hi := 0.0
	for _, g := range vals {
		for _, s := range g {
			if s != nil {
				hi = max(hi, s.Max, s.Median)
			}
		}
	}
	scale := niceCeil(hi)
	var b bytes.Buffer
	svgStart(&b, width, height, 12, title, 22, 15)
	for i, s := range series {
		x := left + (i%legendItemsPerRw)*170
		y := 40 + (i/legendItemsPerRw)*legendRowHeight
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/>`+"\n", x, y-10, seriesColors[i%len(seriesColors)])
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", x+16, y, xmlText(s))
	}
	svgAxis(&b, left, top, plotW, plotH, scale, axis)
	y := func(v float64) float64 {
		if scale <= 0 {
			return float64(top + plotH)
		}
		return float64(top+plotH) - float64(plotH)*math.Max(0, v)/scale
	}
	if ng := len(groups); ng > 0 && len(series) > 0 {
		slot := float64(plotW) / float64(ng)
		bw := slot * 0.8 / float64(len(series))
		for gi, g := range groups {
			x0 := float64(left) + slot*float64(gi) + slot*0.1
			for si := range series {
				var s *Stat
				if gi < len(vals) && si < len(vals[gi]) {
					s = vals[gi][si]
				}
				if s == nil {
					continue
				}
				x := x0 + bw*float64(si)
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n",
					x, y(s.Median), bw*0.9, float64(top+plotH)-y(s.Median), seriesColors[si%len(seriesColors)], xmlText(fmt.Sprintf("%s, %s: %.0f [%.0f–%.0f]", g, series[si], s.Median, s.Min, s.Max)))
				if s.N > 1 && s.Max > s.Min {
					cx := x + bw*0.45
					fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000000"/>`+"\n", cx, y(s.Min), cx, y(s.Max))
				}
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" font-weight="bold">%s</text>`+"\n", x0+slot*0.4, top+plotH+18, xmlText(g))
		}
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}
