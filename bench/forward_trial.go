package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/ctlsock"
)

// One fixed-rate trial of bench forward: the generator at a rate, CPU
// time over the whole machine from /proc/stat (softirq included), what
// other processes used meanwhile, and the forwarded and dropped counts.

// fwdSample is one reading of every counter a trial uses.
type fwdSample struct {
	at        time.Time // when /proc/stat was read
	gen       genCounters
	forwarded uint64 // sum of rx_packets of every ISP router's eth0
	cpu       ProcStat
	hasProc   bool
	procTicks uint64
}

func (b *fwdBench) read(proc *child) (fwdSample, error) {
	var s fwdSample
	var err error
	if proc != nil {
		if proc.exited() {
			return s, fmt.Errorf("%s exited during the measurement%s", proc.name, proc.tail())
		}
		if _, s.procTicks, err = readPIDStat(proc.pid()); err != nil {
			return s, fmt.Errorf("%s: %w", proc.name, err)
		}
		s.hasProc = true
	}
	// The three counters a trial divides by one another, back to back.
	s.at = time.Now()
	if s.cpu, err = readProcStat(); err != nil {
		return s, err
	}
	if s.gen, _, err = readGenStats(b.stats); err != nil {
		return s, err
	}
	for _, c := range b.isp {
		l, err := c.h.LinkByName(c.if_)
		if err != nil {
			return s, fmt.Errorf("ISP router %s: %w", c.if_, err)
		}
		if st := l.Attrs().Statistics; st != nil {
			s.forwarded += st.RxPackets
		}
	}
	return s, nil
}

// trial offers rate (0: flat out) from n sources for a window of d after
// warm-up w and records the outcome.
func (b *fwdBench) trial(ctx context.Context, c string, n, run int, rate float64, kind string, d, w time.Duration, proc *child) (Trial, error) {
	rl := "flat out"
	if rate > 0 {
		rl = humanPPS(rate) + " pps"
	}
	what := fmt.Sprintf("%s, %s sources, run %d/%d: %s trial at %s", c, sizeLabel(n), run, b.o.runs, kind, rl)
	var tr Trial
	for attempt := 1; ; attempt++ {
		bg, quiet, err := b.waitQuiet(ctx, what)
		if err != nil {
			return Trial{}, err
		}
		b.p.set("%s", what)
		t, err := b.trialOnce(ctx, c, n, run, rate, kind, d, w, proc)
		if err != nil {
			return Trial{}, err
		}
		t.BackgroundBusy, t.Attempts = round(bg, 3), attempt
		t.Noisy = !quiet || t.OthersCPU > b.o.quietMax
		if attempt == 1 || t.OthersCPU < tr.OthersCPU {
			tr = t
		}
		if !t.Noisy || attempt > b.o.retries {
			break
		}
		b.p.logf("%s: other processes used %.2f CPU during the window; again (attempt %d of %d)", what, t.OthersCPU, attempt+1, b.o.retries+1)
	}
	if c != CaseCalibration && kind == "fixed" {
		if cal := b.r.calibration(n, run, rate); cal != nil {
			if v, ok := nsPerPacket(tr.BusyS, tr.WindowS, cal.BusyS, cal.WindowS, tr.ForwardedPPS); ok {
				tr.NsPerPkt = ptr(round(v, 1))
			}
		}
	}
	b.r.Trials = append(b.r.Trials, tr)
	msg := fmt.Sprintf("%s, %s sources, run %d, %s %s: offered %s pps, forwarded %s pps, loss %.2f %%, CPU busy %.2f s/s %v (others %.2f)",
		c, sizeLabel(n), run, kind, rl, humanPPS(tr.OfferedPPS), humanPPS(tr.ForwardedPPS), tr.LossPct, tr.BusyS/tr.WindowS, tr.CPUBusyPct, tr.OthersCPU)
	if tr.NsPerPkt != nil {
		msg += fmt.Sprintf(", %.0f ns/pkt", *tr.NsPerPkt)
	}
	if tr.Noisy {
		msg += " [noisy]"
	}
	b.p.logf("%s", msg)
	return tr, nil
}

// trialOnce is one attempt of a trial: the generator's warm-up, the window,
// the figures.
func (b *fwdBench) trialOnce(ctx context.Context, c string, n, run int, rate float64, kind string, d, w time.Duration, proc *child) (Trial, error) {
	_ = os.Remove(b.stats)
	gen, err := startChild("generator", b.genArgv(n, rate, w+d+5*time.Second), nil, syscall.SIGINT)
	if err != nil {
		return Trial{}, err
	}
	defer func() { _ = gen.stop(syscall.SIGINT, 5*time.Second) }()
	// The generator creates its counters file at once; the warm-up runs
	// from then.
	deadline := time.Now().Add(10 * time.Second)
	for !exists(b.stats) {
		if gen.exited() || time.Now().After(deadline) {
			return Trial{}, fmt.Errorf("generator did not start: %v%s", gen.err, gen.tail())
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return Trial{}, err
		}
	}
	if err := sleep(ctx, w); err != nil {
		return Trial{}, err
	}
	ours := map[int]bool{gen.pid(): true}
	if proc != nil {
		ours[proc.pid()] = true
	}
	o0 := othersTicks(ours)
	s0, err := b.read(proc)
	if err != nil {
		return Trial{}, err
	}
	if err := sleep(ctx, d); err != nil {
		return Trial{}, err
	}
	s1, err := b.read(proc)
	if err != nil {
		return Trial{}, err
	}
	o1 := othersTicks(ours)
	if gen.exited() {
		return Trial{}, fmt.Errorf("generator exited during the window: %v%s", gen.err, gen.tail())
	}
	tr := computeTrial(c, n, run, rate, kind, s0, s1)
	if tr.WindowS > 0 {
		tr.OthersCPU = round(float64(othersDelta(o0, o1))/clockTicks/tr.WindowS, 3)
	}
	return tr, nil
}

// othersTicks reads utime + stime of every user-space process that is not
// the benchmark itself nor in one of the process groups ours (the
// generator's, the forwarder's): other load on a shared machine, by pid.
// Kernel threads are left out (ksoftirqd may do the cases' own work).
func othersTicks(ours map[int]bool) map[int]uint64 {
	out := map[int]uint64{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		pgrp, flags, ticks, ok := parseStatGroup(data)
		const pfKthread = 0x00200000
		if !ok || flags&pfKthread != 0 || ours[pgrp] {
			continue
		}
		out[pid] = ticks
	}
	return out
}

// parseStatGroup returns the process group, the flags and utime + stime of
// a /proc/PID/stat text.
func parseStatGroup(data []byte) (pgrp int, flags, ticks uint64, ok bool) {
	end := strings.LastIndexByte(string(data), ')')
	if end < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(string(data[end+1:]))
	if len(f) < 13 {
		return 0, 0, 0, false
	}
	// f[0] is field 3 (state): pgrp is field 5, flags 9, utime 14, stime 15.
	pg, e1 := strconv.Atoi(f[2])
	fl, e2 := strconv.ParseUint(f[6], 10, 64)
	ut, e3 := strconv.ParseUint(f[11], 10, 64)
	st, e4 := strconv.ParseUint(f[12], 10, 64)
	if e1 != nil || e2 != nil || e3 != nil || e4 != nil {
		return 0, 0, 0, false
	}
	return pg, fl, ut + st, true
}

// othersDelta is the CPU ticks other processes used between two readings:
// processes present in both count their increase, new ones all of theirs
// (those that came and went in between are missed).
func othersDelta(a, b map[int]uint64) uint64 {
	var d uint64
	for pid, t := range b {
		if t0, ok := a[pid]; ok {
			d += sub(t, t0)
		} else {
			d += t
		}
	}
	return d
}

// waitQuiet samples the machine for half a second with no traffic (the
// case's forwarder idle) until it is quiet — at most quietMax busy
// CPU-seconds per second — or quietWait has passed. It returns the last
// sample and whether it was quiet. Other users of a shared machine would
// otherwise land in the whole-machine CPU figures.
func (b *fwdBench) waitQuiet(ctx context.Context, what string) (float64, bool, error) {
	start := time.Now()
	for {
		a, err := readProcStat()
		if err != nil {
			return 0, false, err
		}
		t0 := time.Now()
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return 0, false, err
		}
		z, err := readProcStat()
		if err != nil {
			return 0, false, err
		}
		el := time.Since(t0)
		bg := busySeconds(a, z, el) / el.Seconds()
		if bg <= b.o.quietMax {
			return bg, true, nil
		}
		if time.Since(start) >= b.o.quietWait {
			b.p.logf("warning: the machine stayed busy (%.2f CPU) for %v; %s runs anyway, marked noisy", bg, b.o.quietWait, what)
			return bg, false, nil
		}
		b.p.set("waiting for a quiet machine (%.2f CPU busy without traffic) before %s", bg, what)
		if err := sleep(ctx, time.Second); err != nil {
			return 0, false, err
		}
	}
}

// computeTrial derives a trial's figures from the readings at the start
// (a) and end (b) of its window.
func computeTrial(c string, n, run int, rate float64, kind string, a, b fwdSample) Trial {
	t := Trial{Case: c, Sources: n, Run: run, Rate: rate, Kind: kind}
	el := b.at.Sub(a.at)
	dt := el.Seconds()
	t.WindowS = round(dt, 3)
	att := sub(b.gen.attempted, a.gen.attempted)
	t.Offered = att
	t.Refused = sub(b.gen.refused, a.gen.refused)
	t.Forwarded = sub(b.forwarded, a.forwarded)
	if dt > 0 {
		t.OfferedPPS = round(float64(att)/dt, 0)
		t.ForwardedPPS = round(float64(t.Forwarded)/dt, 0)
	}
	if att > 0 && c != CaseCalibration {
		t.LossPct = round(100*(1-float64(t.Forwarded)/float64(att)), 3)
	}
	t.BusyS = round(busySeconds(a.cpu, b.cpu, el), 3)
	t.SampledBusyS = round(sampledBusySeconds(a.cpu, b.cpu), 2)
	t.CPUBusyPct = busyPct(a.cpu, b.cpu)
	if a.hasProc && b.hasProc {
		t.ProcCPUS = ptr(round(float64(sub(b.procTicks, a.procTicks))/clockTicks, 2))
	}
	return t
}

// ispmuxDiagnostics keeps ispmux's drop counters of the run (a source
// that is not a binding would show as unknown_mac or spoofed_source).
func (b *fwdBench) ispmuxDiagnostics(ctx context.Context, c string, n, run int, stateDir string) {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := ctlsock.FetchStatus(sctx, filepath.Join(stateDir, appliance.SocketName))
	if err != nil {
		b.p.logf("ispmux status after the run: %v", err)
		return
	}
	js, err := json.Marshal(st.Ports)
	if err != nil {
		return
	}
	b.r.Diagnostics = append(b.r.Diagnostics, Diagnostic{Case: c, Sources: n, Run: run, Ports: js})
}
