package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Measuring a bench dhcp case: the generator's run, the CPU time of the
// system under test and of the machine, and the figures taken from the
// generator's result.

// cpuMeter samples the machine's and some processes' CPU time.
type cpuMeter struct {
	at    time.Time
	cpu   ProcStat
	ticks map[int]uint64
}

func readCPU(pids ...int) cpuMeter {
	m := cpuMeter{at: time.Now(), ticks: map[int]uint64{}}
	m.cpu, _ = readProcStat()
	for _, p := range pids {
		if p > 0 {
			if _, t, err := readPIDStat(p); err == nil {
				m.ticks[p] = t
			}
		}
	}
	return m
}

// procS is pid's CPU seconds between a and b, nil when unknown.
func procS(a, b cpuMeter, pid int) *float64 {
	x, ok1 := a.ticks[pid]
	y, ok2 := b.ticks[pid]
	if !ok1 || !ok2 {
		return nil
	}
	return ptr(dhcpTicksS(sub(y, x)))
}

func dhcpTicksS(t uint64) float64 { return round(float64(t)/clockTicks, 2) }

// usPerDORA is cpuS seconds of CPU per completed exchange, in µs; nil
// without a figure or an exchange.
func usPerDORA(cpuS *float64, completed int) *float64 {
	if cpuS == nil || completed <= 0 {
		return nil
	}
	return ptr(round(*cpuS*1e6/float64(completed), 1))
}

// dhcpUtilPct is cpuS seconds of CPU over wallS seconds, in percent of one
// CPU.
func dhcpUtilPct(cpuS *float64, wallS float64) (float64, bool) {
	if cpuS == nil || wallS <= 0 {
		return 0, false
	}
	return round(100**cpuS/wallS, 1), true
}

// saturationPct: a process this busy (percent of one CPU) is saturated.
const saturationPct = 85

// saturatedProc names the busiest process of util (percent of one CPU) and
// whether it reached saturationPct: "kea 97%" or "none (ispmux 40%)".
func saturatedProc(util map[string]float64) string {
	best, bv := largest(util, -1)
	if best == "" {
		return ""
	}
	if bv >= saturationPct {
		return fmt.Sprintf("%s %.0f%%", best, bv)
	}
	return fmt.Sprintf("none (%s %.0f%%)", best, bv)
}

// runGen runs the client generator to its end and fills c from its result;
// sutp is the system under test (CPU accounting; if it exits, the
// generator is stopped and the case fails).
func (d *dhcpBencher) runGen(ctx context.Context, c *DHCPCase, sutp *child, gr genRun) (*GenResult, error) {
	sut := sutp.pid()
	var out bytes.Buffer
	drops0, dropsErr := udpRcvbufErrors(d.kea)
	before := readCPU(sut, d.kea)
	progress := &dhcpProgressLines{prefix: "progress: ", logf: func(s string) { d.logf("  %s %s %g/s: %s", c.Name, c.Phase, gr.rate, s) }}
	var legs *legCaptures
	if gr.legs {
		var err error
		if legs, err = d.startLegs(); err != nil {
			return nil, err
		}
		defer func() {
			if legs != nil {
				legs.finish()
			}
		}()
	}
	g, err := startChildErr("dhcp-client-gen", d.genArgv(gr), &out, progress, syscall.SIGINT)
	if err != nil {
		return nil, err
	}
	genPid := g.pid()
	var genTicks uint64
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
wait:
	for {
		select {
		case <-g.done:
			break wait
		case <-poll.C:
			// The child is reaped as soon as it exits: keep its last
			// reading.
			if tk, err := treeTicks(genPid); err == nil {
				genTicks = tk
			}
		case <-sutp.done:
			_ = g.stop(syscall.SIGINT, 5*time.Second)
			return nil, fmt.Errorf("%s exited during the case: %v%s", sutp.name, sutp.err, sutp.tail())
		case <-ctx.Done():
			_ = g.stop(syscall.SIGINT, 5*time.Second)
			return nil, ctx.Err()
		}
	}
	after := readCPU(sut, d.kea)
	if legs != nil {
		l, err := legs.finish()
		legs = nil
		if err != nil {
			return nil, fmt.Errorf("timing the legs: %w", err)
		}
		c.Legs = l
	}
	if drops1, err := udpRcvbufErrors(d.kea); err == nil && dropsErr == nil && drops1 >= drops0 {
		n := drops1 - drops0
		c.KeaRcvbufDrops = &n
	}
	if g.err != nil {
		return nil, fmt.Errorf("dhcp-client-gen: %v%s", g.err, g.tail())
	}
	var res GenResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("dhcp-client-gen output: %w%s", err, g.tail())
	}
	fillFromGen(c, &res)
	if c.Legs != nil {
		c.Legs.Unmatched = max(0, c.Completed-c.Legs.Acks)
	}
	c.Stopped = res.Stopped
	c.CPUBusyPct = busyPct(before.cpu, after.cpu)
	c.ProcCPUS, c.KeaCPUS = procS(before, after, sut), procS(before, after, d.kea)
	c.GenCPUS = ptr(dhcpTicksS(genTicks))
	c.CPUUsPerDORA = usPerDORA(c.ProcCPUS, c.Completed)
	wall := after.at.Sub(before.at).Seconds()
	c.UtilPct = map[string]float64{}
	for name, v := range map[string]*float64{c.Name: c.ProcCPUS, "kea": c.KeaCPUS, "generator": c.GenCPUS} {
		if u, ok := dhcpUtilPct(v, wall); ok {
			c.UtilPct[strings.TrimSuffix(name, "_defaults")] = u
		}
	}
	c.Saturated = saturatedProc(c.UtilPct)
	if strings.HasPrefix(c.Saturated, "none") && len(c.CPUBusyPct) > 0 && slices.Min(c.CPUBusyPct) >= saturationPct {
		// No process of the case saturated, but every CPU was busy:
		// the machine (other load included) is the bound.
		c.Saturated = "machine (" + pcts(c.CPUBusyPct) + "; busiest process " + strings.TrimSuffix(strings.TrimPrefix(c.Saturated, "none ("), ")") + ")"
	}
	if c.KeaRcvbufDrops != nil && *c.KeaRcvbufDrops > 0 {
		d.logf("%s %s %g/s: Kea's namespace dropped %d datagrams for a full receive buffer", c.Name, c.Phase, gr.rate, *c.KeaRcvbufDrops)
	}
	if c.Completed == 0 {
		d.logf("no exchange completed: generator sent %d frames (%d errors), received %d (%d ignored)", res.TxFrames, res.TxErrors, res.RxFrames, res.RxIgnore)
	}
	return &res, nil
}

// dhcpProgressLines passes the lines that start with prefix to logf (without
// it), and everything to also.
type dhcpProgressLines struct {
	prefix string
	logf   func(string)
	also   io.Writer
	buf    []byte
}

func (l *dhcpProgressLines) Write(p []byte) (int, error) {
	if l.also != nil {
		_, _ = l.also.Write(p)
	}
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		line := string(l.buf[:i])
		l.buf = l.buf[i+1:]
		if s, ok := strings.CutPrefix(line, l.prefix); ok {
			l.logf(s)
		}
	}
	if len(l.buf) > 4096 {
		l.buf = l.buf[:0]
	}
	return len(p), nil
}

// fillFromGen computes a case's figures from the generator's results.
func fillFromGen(c *DHCPCase, g *GenResult) {
	var offers, acks []float64
	c.FailReasons = map[string]int{}
	c.Exchanges, c.Completed, c.Failed, c.ClientsStarted, c.ClientsWithoutACK = 0, 0, 0, 0, 0
	for _, cl := range g.Results {
		if len(cl.Exchanges) == 0 {
			continue
		}
		c.ClientsStarted++
		if !cl.Exchanges[len(cl.Exchanges)-1].OK {
			c.ClientsWithoutACK++
		}
		for _, e := range cl.Exchanges {
			c.Exchanges++
			if e.OfferUs > 0 {
				offers = append(offers, float64(e.OfferUs)/1000)
			}
			if e.OK {
				c.Completed++
				acks = append(acks, float64(e.AckUs)/1000)
			} else {
				c.Failed++
				c.FailReasons[e.Fail]++
			}
		}
	}
	c.Skipped = g.Skipped
	c.OfferedRate = g.Rate
	wall := g.WindowS
	if g.LastAckUs > 0 {
		wall = math.Max(wall, float64(g.LastAckUs-g.FirstStartUs)/1e6)
	}
	c.WallS = round(wall, 3)
	c.DORAPerS = doraPerS(c.Completed, wall)
	c.ExchangeFailPct = pct(c.Failed, c.Exchanges)
	c.FailPct = pct(c.ClientsWithoutACK, c.ClientsStarted)
	c.LossPct = pct(c.Failed+c.Skipped, c.Exchanges+c.Skipped)
	c.OfferP50Ms, c.OfferP99Ms = percentile(offers, 50), percentile(offers, 99)
	c.AckP50Ms, c.AckP99Ms = percentile(acks, 50), percentile(acks, 99)
	c.OfferMinMs, c.OfferAvgMs, c.OfferMaxMs = minAvgMax(offers)
	c.AckMinMs, c.AckAvgMs, c.AckMaxMs = minAvgMax(acks)
}

// doraPerS is completed exchanges per second of wall time (0 without time).
func doraPerS(completed int, wallS float64) float64 {
	if wallS <= 0 {
		return 0
	}
	return round(float64(completed)/wallS, 1)
}

func pct(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return round(100*float64(n)/float64(of), 2)
}

// percentile is the nearest-rank p-th percentile of v (rounded to µs), nil
// for no values. v is sorted in place.
func percentile(v []float64, p float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	sort.Float64s(v)
	k := int(math.Ceil(p/100*float64(len(v)))) - 1
	k = max(0, min(k, len(v)-1))
	return ptr(round(v[k], 3))
}

func minAvgMax(v []float64) (lo, avg, hi *float64) {
	if len(v) == 0 {
		return nil, nil, nil
	}
	mn, mx, s := v[0], v[0], 0.0
	for _, x := range v {
		mn, mx, s = math.Min(mn, x), math.Max(mx, x), s+x
	}
	return ptr(round(mn, 3)), ptr(round(s/float64(len(v)), 3)), ptr(round(mx, 3))
}
