package bench

import (
	"fmt"
	"math"
	"slices"
)

// The summary of bench forward's trials: finish derives a ForwardResult's
// sweep rows, no-drop rates, calibration rows, ratios and targets from its
// trials and no-drop runs.

// finish computes the sweep, the no-drop rates, the calibration rows, the
// ratios and the targets from the trials.
func (r *ForwardResult) finish() {
	r.Sweep, r.NDR, r.Calibration = nil, nil, nil
	var cases []string
	for _, c := range r.Cases {
		if c.Name != CaseCalibration {
			cases = append(cases, c.Name)
		}
	}
	ndrs := map[string]NDRRow{}
	for _, n := range r.Sources {
		for _, c := range cases {
			var pps []float64
			bound := 0
			for _, nr := range r.NDRRuns {
				if nr.Case == c && nr.Sources == n {
					pps = append(pps, nr.Result.PPS)
					if nr.Result.GeneratorBound {
						bound++
					}
				}
			}
			if len(pps) == 0 {
				continue
			}
			row := NDRRow{Case: c, Sources: n, PPS: stat(pps), GeneratorBound: 2*bound > len(pps)}
			ndrs[fmt.Sprint(c, n)] = row
			r.NDR = append(r.NDR, row)
		}
	}
	for _, n := range r.Sources {
		for _, rate := range append(append([]float64(nil), r.Rates...), 0) {
			var busy, off []float64
			for _, t := range r.Trials {
				if t.Case == CaseCalibration && t.Sources == n && t.Rate == rate && t.WindowS > 0 {
					busy = append(busy, round(t.BusyS/t.WindowS, 3))
					off = append(off, t.OfferedPPS)
				}
			}
			if len(busy) > 0 {
				r.Calibration = append(r.Calibration, CalRow{Sources: n, OfferedPPS: rate, BusyPerS: stat(busy), Offered: stat(off)})
			}
		}
		for _, rate := range r.Rates {
			row := SweepRow{Sources: n, OfferedPPS: rate, NsPerPkt: map[string]*Stat{}, LossPct: map[string]*Stat{}, Offered: map[string]*Stat{}}
			for _, c := range append(append([]string(nil), cases...), CaseCalibration) {
				var ns, loss, off []float64
				for _, t := range r.Trials {
					if t.Case != c || t.Sources != n || t.Rate != rate || t.Kind != "fixed" {
						continue
					}
					if t.NsPerPkt != nil {
						ns = append(ns, *t.NsPerPkt)
					}
					loss = append(loss, t.LossPct)
					off = append(off, t.OfferedPPS)
				}
				if len(off) == 0 {
					continue
				}
				if s := stat(ns); s != nil {
					row.NsPerPkt[c] = s
				}
				if c != CaseCalibration {
					row.LossPct[c] = stat(loss)
				}
				row.Offered[c] = stat(off)
				if stat(off).Median < 0.97*rate {
					row.RateGeneratorBound = true
				}
			}
			med := func(c string) *float64 {
				if s := row.NsPerPkt[c]; s != nil {
					return ptr(round(s.Median, 1))
				}
				return nil
			}
			row.ISPmuxNsPerPkt, row.KernelNsPerPkt, row.BareNsPerPkt, row.KernelRulesNsPerPkt = med(CaseISPmux), med(CaseKernel), med(CaseBare), med(CaseKernelRules)
			ndr := func(c string) float64 {
				if x, ok := ndrs[fmt.Sprint(c, n)]; ok {
					if x.GeneratorBound {
						row.GeneratorBound = true
					}
					return round(x.PPS.median(), 0)
				}
				return 0
			}
			row.ISPmuxNDRPPS, row.KernelNDRPPS, row.BareNDRPPS = ndr(CaseISPmux), ndr(CaseKernel), ndr(CaseBare)
			row.ISPmuxXDPNsPerPkt, row.ISPmuxXDPNDRPPS = med(CaseISPmuxXDP), ndr(CaseISPmuxXDP)
			_ = ndr(CaseKernelRules)
			row.GeneratorBound = row.GeneratorBound || row.RateGeneratorBound
			ratio := func(other, ispmux *float64) *float64 {
				if other == nil || ispmux == nil || *ispmux <= 0 {
					return nil
				}
				return ptr(round(*other / *ispmux, 3))
			}
			row.RatioVsKernel, row.RatioVsBare = ratio(row.KernelNsPerPkt, row.ISPmuxNsPerPkt), ratio(row.BareNsPerPkt, row.ISPmuxNsPerPkt)
			row.RatioVsKernelXDP, row.RatioVsBareXDP = ratio(row.KernelNsPerPkt, row.ISPmuxXDPNsPerPkt), ratio(row.BareNsPerPkt, row.ISPmuxXDPNsPerPkt)
			r.Sweep = append(r.Sweep, row)
		}
	}
	noisy, bgs, others := 0, []float64{}, []float64{}
	for _, t := range r.Trials {
		bgs = append(bgs, t.BackgroundBusy)
		others = append(others, t.OthersCPU)
		if t.Noisy {
			noisy++
		}
	}
	r.Quiet = nil
	if len(r.Trials) > 0 {
		r.Quiet = &QuietSummary{Trials: len(r.Trials), Noisy: noisy, BackgroundBusy: stat(bgs), OthersCPU: stat(others)}
	}
	r.RatioVsKernel, r.RatioVsBare, r.RatioVsKernelXDP, r.RatioVsBareXDP = 0, 0, 0, 0
	head := 256
	if !slices.Contains(r.Sources, head) && len(r.Sources) > 0 {
		head = slicesMin(r.Sources)
	}
	lowest := func(get func(SweepRow) *float64, only int) (float64, bool) {
		v, ok := math.Inf(1), false
		for _, row := range r.Sweep {
			if x := get(row); x != nil && (only == 0 || row.Sources == only) {
				v, ok = math.Min(v, *x), true
			}
		}
		return v, ok
	}
	vk := func(s SweepRow) *float64 { return s.RatioVsKernel }
	vb := func(s SweepRow) *float64 { return s.RatioVsBare }
	if v, ok := lowest(vk, head); ok {
		r.RatioVsKernel = v
	}
	if v, ok := lowest(vb, head); ok {
		r.RatioVsBare = v
	}
	if v, ok := lowest(func(s SweepRow) *float64 { return s.RatioVsKernelXDP }, head); ok {
		r.RatioVsKernelXDP = v
	}
	if v, ok := lowest(func(s SweepRow) *float64 { return s.RatioVsBareXDP }, head); ok {
		r.RatioVsBareXDP = v
	}
	r.Targets = nil
	// The targets hold "in every row", each on the median of every run: a
	// row where the other case has a figure but ispmux has none (it
	// forwarded nothing, or its figure was not positive), or where either
	// misses runs (a case that failed in a run), misses them. They are
	// evaluated on the medians themselves, not on the rounded ratios.
	// worst is the worst over the rows of ratio(ispmux, other), where
	// higher is worse if higherWorse; rows counts the rows the other case
	// has a figure in (a positive one if divides: the other's figure is
	// the divisor).
	worst := func(ispmux, other string, divides, higherWorse bool, ratio func(ispmux, other float64) float64) (v float64, rows int, missing bool) {
		seen := false
		for _, row := range r.Sweep {
			o := row.NsPerPkt[other]
			if o == nil || divides && o.Median <= 0 {
				continue
			}
			rows++
			i := row.NsPerPkt[ispmux]
			if i == nil || i.Median <= 0 || i.N < r.Runs || o.N < r.Runs {
				missing = true
				continue
			}
			x := ratio(i.Median, o.Median)
			if !seen || higherWorse && x > v || !higherWorse && x < v {
				v, seen = x, true
			}
		}
		return v, rows, missing
	}
	target := func(name, want, note string, v float64, rows int, missing, ok bool) {
		if rows == 0 {
			return
		}
		t := Target{Name: name, Want: want, Got: round(v, 3), Met: !missing && ok, Note: note}
		if missing {
			t.Note += "; a row without an ispmux figure of every run"
		}
		r.Targets = append(r.Targets, t)
	}
	for _, c := range []string{CaseISPmux, CaseISPmuxXDP} {
		name := "ispmux"
		if c == CaseISPmuxXDP {
			name = "ispmux with the XDP fast path"
		}
		measured := false
		for _, row := range r.Sweep {
			measured = measured || row.NsPerPkt[c] != nil
		}
		if !measured && c == CaseISPmuxXDP || !slices.Contains(cases, c) {
			continue // not run (results before it existed, or --cases without it)
		}
		v, rows, missing := worst(c, CaseKernel, false, false, func(i, o float64) float64 { return o / i })
		target(name+" CPU/pkt ≤ 1/1.3 of the nftables kernel's at every sweep point", "kernel ÷ ispmux ≥ 1.30 in every row", "lowest row",
			v, rows, missing, v >= 1.3)
		v, rows, missing = worst(c, CaseBare, true, true, func(i, o float64) float64 { return i / o })
		target(name+" CPU/pkt ≤ 1.05× the bare forwarder's at every sweep point", "ispmux ÷ bare ≤ 1.05 in every row", "highest row",
			v, rows, missing, v <= 1.05)
	}
}

func slicesMin(l []int) int {
	m := l[0]
	for _, v := range l[1:] {
		m = min(m, v)
	}
	return m
}
