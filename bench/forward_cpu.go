package bench

import (
	"math"
	"sort"
	"time"
)

// CPU accounting of bench forward.
//
// The figure is CPU time per forwarded packet over the whole machine, every
// CPU and every kind of work (user, system, softirq, the generator, the
// forwarder, the ISP routers' receive), from /proc/stat, minus what the
// generator costs by itself at the same offered rate (the calibration: the
// same generator sending to a sink that drops the frames on arrival, with
// nothing forwarding).
//
// Busy time is derived from idle time: per CPU, elapsed − (idle + iowait).
// On this kernel (NO_HZ idle, tick-based CPU accounting) the idle and
// iowait columns come from the exact nohz idle clock, while user, system
// and softirq are samples taken at each scheduler tick, so the sum of the
// busy columns is noisier than elapsed − idle over short windows. Both are
// recorded; the headline uses elapsed − idle.

// busySeconds is the whole machine's busy CPU time between readings a and
// b taken elapsed apart: the sum over CPUs of elapsed − Δ(idle + iowait),
// each clamped to [0, elapsed]. With no per-CPU lines it falls back to the
// aggregate line.
func busySeconds(a, b ProcStat, elapsed time.Duration) float64 {
	el := elapsed.Seconds()
	if el <= 0 {
		return 0
	}
	idle := func(x, y CPUTimes) float64 {
		return float64(sub(y.Idle+y.IOWait, x.Idle+x.IOWait)) / clockTicks
	}
	n := min(len(a.CPU), len(b.CPU))
	if n == 0 {
		return 0
	}
	total := 0.0
	for i := range n {
		total += math.Min(el, math.Max(0, el-idle(a.CPU[i], b.CPU[i])))
	}
	return total
}

// sampledBusySeconds is the sum of the tick-sampled busy columns (user,
// nice, system, irq, softirq, steal) between a and b.
func sampledBusySeconds(a, b ProcStat) float64 {
	return float64(sub(b.Total.Busy(), a.Total.Busy())) / clockTicks
}

// nsPerPacket is the CPU nanoseconds one forwarded packet costs beyond the
// generator: (busy − calibration busy) per second of window, divided by the
// forwarded packets per second. ok is false when nothing was forwarded or
// a window is empty.
func nsPerPacket(busyS, windowS, calBusyS, calWindowS, forwardedPPS float64) (float64, bool) {
	if windowS <= 0 || calWindowS <= 0 || forwardedPPS <= 0 {
		return 0, false
	}
	return (busyS/windowS - calBusyS/calWindowS) / forwardedPPS * 1e9, true
}

// Stat is a median with its range over the runs.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// stat summarises xs (nil when xs is empty).
func stat(xs []float64) *Stat {
	if len(xs) == 0 {
		return nil
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &Stat{Median: m, Min: s[0], Max: s[len(s)-1], N: len(s)}
}

func (s *Stat) median() float64 {
	if s == nil {
		return 0
	}
	return s.Median
}
