package bench

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestMergeRunsAndStartFromKeptSessions: --merge took the run count and
// start time of an earlier session whose trials were all measured again
// (docs/bench/forward.json said runs 3, started 2026-12-02T17:58, while
// every figure in it was a median of 5 runs from two sessions started on
// 2026-12-03). Both now come from the sessions the result still holds.
func TestMergeRunsAndStartFromKeptSessions(t *testing.T) {
	// Session A: 256 and 64K, 3 runs.
	a := testForwardResult()
	a.Sessions = []Session{{Command: "A --runs 3", Sources: []int{256, 65536}, Started: "2026-12-02T01:00:00Z"}}
	a.Started = "2026-12-02T01:00:00Z"
	js, err := a.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var old ForwardResult
	if err := json.Unmarshal(js, &old); err != nil {
		t.Fatal(err)
	}
	// Session B: 256 and 64K again, 5 runs: nothing of A is left.
	b := testForwardResult()
	trials := append([]Trial(nil), b.Trials...)
	for _, tr := range b.Trials { // runs 4 and 5
		if tr.Run <= 2 {
			tr.Run += 3
			trials = append(trials, tr)
		}
	}
	b.Trials, b.Runs = trials, 5
	b.Sessions = []Session{{Command: "B --runs 5", Sources: []int{256, 65536}, Started: "2026-12-03T01:00:00Z"}}
	b.Started = "2026-12-03T01:00:00Z"
	if err := b.merge(&old); err != nil {
		t.Fatal(err)
	}
	b.finish()
	if n := b.Sweep[0].NsPerPkt[CaseISPmux].N; n != 5 {
		t.Fatalf("setup: median over %d runs", n)
	}
	if b.Runs != 5 {
		t.Errorf("merged result says %d runs; every figure is a median of 5 (session A's trials are all gone)", b.Runs)
	}
	if !strings.Contains(b.section("###", ""), "5 interleaved runs") {
		t.Errorf("rendered section does not say 5 interleaved runs")
	}

	// Three sessions as in docs/bench/forward.json: A (256), B (64K, 1M),
	// then C (256, 1M): A's start stays the result's start although none
	// of its trials is left.
	mk := func(sources []int, started string) *ForwardResult {
		r := testForwardResult()
		var tr []Trial
		for _, x := range r.Trials {
			if x.Sources == 256 {
				for _, n := range sources {
					x.Sources = n
					tr = append(tr, x)
				}
			}
		}
		r.Trials, r.NDRRuns, r.Sources = tr, nil, sources
		r.Sessions = []Session{{Command: started, Sources: sources, Started: started}}
		r.Started = started
		return r
	}
	roundTrip := func(r *ForwardResult) *ForwardResult {
		js, err := r.JSON()
		if err != nil {
			t.Fatal(err)
		}
		var o ForwardResult
		if err := json.Unmarshal(js, &o); err != nil {
			t.Fatal(err)
		}
		return &o
	}
	ra := mk([]int{256}, "2026-12-02T17:58:55Z")
	rb := mk([]int{65536, 1 << 20}, "2026-12-03T00:41:19Z")
	if err := rb.merge(roundTrip(ra)); err != nil {
		t.Fatal(err)
	}
	rc := mk([]int{256, 1 << 20}, "2026-12-03T12:10:26Z")
	if err := rc.merge(roundTrip(rb)); err != nil {
		t.Fatal(err)
	}
	for _, s := range rc.Sessions {
		if s.Started == "2026-12-02T17:58:55Z" {
			t.Fatalf("setup: session A kept")
		}
	}
	if rc.Started != "2026-12-03T00:41:19Z" {
		t.Errorf("started %s, want the earliest session still in the result (2026-12-03T00:41:19Z)", rc.Started)
	}
}

// TestForwardTargetRowWithoutISPmux: the targets say "in every row"; a
// row where ispmux has no CPU figure (it forwarded nothing in every run)
// was left out of the evaluation and the target reported met. It misses.
func TestForwardTargetRowWithoutISPmux(t *testing.T) {
	r := testForwardResult()
	for i := range r.Trials {
		tr := &r.Trials[i]
		if tr.Case == CaseISPmux && tr.Sources == 65536 && tr.Rate == 200_000 && tr.Kind == "fixed" {
			tr.ForwardedPPS, tr.Forwarded, tr.LossPct, tr.NsPerPkt = 0, 0, 100, nil
		}
	}
	r.finish()
	for _, row := range r.Sweep {
		if row.Sources == 65536 && row.OfferedPPS == 200_000 && row.ISPmuxNsPerPkt != nil {
			t.Fatalf("setup: ispmux has a figure")
		}
	}
	for _, tg := range r.Targets {
		if tg.Met && !strings.Contains(tg.Name, "XDP fast path") { // case ispmux-xdp forwarded
			t.Errorf("target %q met (got %v) although ispmux forwarded nothing at 64K sources, 200k pps (loss 100 %%)", tg.Name, tg.Got)
		}
	}
}

// TestDHCPTargetsNeedEveryRun: a run in which ispmux never got 99.9 % of
// the outage's subscribers bound (BoundS nil), or in which its case
// failed, was left out of the median, so one good run of five met the
// target. A target needs its figures from every run.
func TestDHCPTargetsNeedEveryRun(t *testing.T) {
	r := &DHCPResult{Runs: 5, Rates: []float64{2000}, OutageSubscribers: 10000}
	for run := 1; run <= 5; run++ {
		c := DHCPCase{Name: CaseDHCPISPmux, Phase: PhaseOutage, Run: run, Subscribers: 10000, Bound: 9000}
		if run == 1 {
			c.BoundS, c.Bound = ptr(3), 10000
		}
		r.Cases = append(r.Cases, c,
			DHCPCase{Name: CaseDHCPRelay, Phase: PhaseOutage, Run: run, Subscribers: 10000, Bound: 10000, BoundS: ptr(6)})
		// The fixed rate: ispmux failed in runs 2..5.
		rc := DHCPCase{Name: CaseDHCPISPmux, Phase: PhaseRate, Run: run, OfferedRate: 2000, AckP99Ms: ptr(2), OfferP99Ms: ptr(2)}
		if run > 1 {
			rc = DHCPCase{Name: CaseDHCPISPmux, Phase: PhaseRate, Run: run, OfferedRate: 2000, Error: "ispmux exited: signal: killed"}
		}
		r.Cases = append(r.Cases, rc)
	}
	r.finish()
	for _, tg := range r.Targets {
		if tg.Met {
			t.Errorf("target %q met (got %v) from 1 of 5 runs (the other 4: ispmux never reached it / failed)", tg.What, *tg.Value)
		}
	}
}

// TestCapacityNotFromAbortedSearch: a search that ended on an error (the
// system under test exited) before any step failed was reported as a
// capacity (the last rate that passed) with "the search's highest rate
// passed". It gives no capacity.
func TestCapacityNotFromAbortedSearch(t *testing.T) {
	r := &DHCPResult{Runs: 1, Search: true}
	r.Cases = []DHCPCase{
		{Name: CaseDHCPISPmux, Phase: PhaseSearch, Run: 1, OfferedRate: 100, LossPct: 0},
		{Name: CaseDHCPISPmux, Phase: PhaseSearch, Run: 1, OfferedRate: 200, LossPct: 0},
		{Name: CaseDHCPISPmux, Phase: PhaseSearch, Run: 1, OfferedRate: 400, Error: "ispmux exited: signal: segmentation fault"},
	}
	r.finish()
	if r.ISPmuxCapacity != nil {
		t.Errorf("capacity %v/s reported from a search that never found a failing rate (it was aborted at 400/s); saturated: %q", *r.ISPmuxCapacity, r.ISPmuxSaturated)
	}
}

// TestBareTargetUnrounded: ispmux ÷ bare was evaluated on the inverse of
// a ratio already rounded to 3 digits (1.0506 reported as 1.05, met); the
// targets are evaluated on the medians.
func TestBareTargetUnrounded(t *testing.T) {
	r := testForwardResult()
	for i := range r.Trials {
		tr := &r.Trials[i]
		if tr.NsPerPkt == nil {
			continue
		}
		switch tr.Case {
		case CaseISPmux:
			tr.NsPerPkt = ptr(1050.6)
		case CaseBare:
			tr.NsPerPkt = ptr(1000)
		}
	}
	r.finish()
	for _, tg := range r.Targets {
		if strings.Contains(tg.Name, "bare") && !strings.Contains(tg.Name, "XDP fast path") && tg.Met {
			t.Errorf("ispmux ÷ bare = 1050.6 ÷ 1000 = 1.0506 > 1.05, reported %v, met", tg.Got)
		}
	}
}

// TestForwardTargetNeedsEveryRun: a row whose ispmux figure came from one
// run of three (the case failed in the others: bench forward records the
// error and goes on) met the target on that one run.
func TestForwardTargetNeedsEveryRun(t *testing.T) {
	r := testForwardResult()
	var kept []Trial
	for _, tr := range r.Trials {
		if tr.Case == CaseISPmux && tr.Sources == 65536 && tr.Run > 1 {
			continue // failed: "ispmux, 64K sources, run 2: ..."
		}
		kept = append(kept, tr)
	}
	r.Trials = kept
	r.finish()
	if s := r.Sweep[2].NsPerPkt[CaseISPmux]; s == nil || s.N != 1 {
		t.Fatalf("setup: %+v", s)
	}
	if r.Targets[0].Met {
		t.Errorf("target %q met (got %v) on 1 of %d runs at 64K sources", r.Targets[0].Name, r.Targets[0].Got, r.Runs)
	}
}

// TestForwardPartialCases: a run of some cases only (--cases
// ispmux-xdp,kernel) has no target, ratio line or ratio column for the
// cases it did not run; before, it rendered ratio_vs_kernel = 0.00 and a
// missed ispmux target.
func TestForwardPartialCases(t *testing.T) {
	r := testForwardResult()
	keep := map[string]bool{CaseISPmuxXDP: true, CaseKernel: true, CaseCalibration: true}
	var cases []CaseInfo
	for _, c := range r.Cases {
		if keep[c.Name] {
			cases = append(cases, c)
		}
	}
	if len(cases) != 3 {
		t.Fatalf("setup: cases %v", r.Cases)
	}
	var trials []Trial
	for _, tr := range r.Trials {
		if keep[tr.Case] {
			trials = append(trials, tr)
		}
	}
	var ndr []NDRRun
	for _, n := range r.NDRRuns {
		if keep[n.Case] {
			ndr = append(ndr, n)
		}
	}
	r.Cases, r.Trials, r.NDRRuns = cases, trials, ndr
	r.finish()
	if len(r.Targets) != 1 || !strings.Contains(r.Targets[0].Name, "XDP fast path") || !strings.Contains(r.Targets[0].Name, "kernel") {
		t.Errorf("targets %+v, want the fast path's against the kernel only", r.Targets)
	}
	s := r.section("###", "")
	for _, bad := range []string{"ratio_vs_kernel =", "bare ÷", "kernel ÷ ispmux |"} {
		if strings.Contains(s, bad) {
			t.Errorf("section has %q:\n%s", bad, s)
		}
	}
	if !strings.Contains(s, "kernel ÷ ispmux-xdp |") {
		t.Errorf("section lacks the column kernel ÷ ispmux-xdp:\n%s", s)
	}
	var tb strings.Builder
	if err := r.WriteTable(&tb); err != nil {
		t.Fatal(err)
	}
	if tab := tb.String(); strings.Contains(tab, "ratio_vs_kernel ") || strings.Contains(tab, "bare÷") || !strings.Contains(tab, "kernel÷ispmux-xdp") {
		t.Errorf("table:\n%s", tab)
	}
}

// TestMergeRefusesOtherPlacement: --merge of a result whose kernel case
// ran without RPS (--kernel-rps=false) into a run with RPS would mix two
// systems under one name; it is refused. The same placement merges.
func TestMergeRefusesOtherPlacement(t *testing.T) {
	withOpt := func(opt string) *ForwardResult {
		r := testForwardResult()
		for i := range r.Cases {
			if r.Cases[i].Name == CaseKernel && opt != "" {
				r.Cases[i].Description += "; " + opt + ": …"
			}
		}
		return r
	}
	if err := withOpt("").merge(withOpt("--kernel-rps=false")); err == nil || !strings.Contains(err.Error(), "--kernel-rps=false") {
		t.Errorf("merge across placements: %v, want refused", err)
	}
	if err := withOpt("--kernel-rps=false").merge(withOpt("--kernel-rps=false")); err != nil {
		t.Errorf("merge of the same placement: %v", err)
	}
}
