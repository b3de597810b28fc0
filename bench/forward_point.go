package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/lab"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// A sweep point of bench forward: its sources seeded into every case, the
// same-run calibration, and each case brought up (ispmux, the nftables
// kernel, the per-subscriber-rule kernel, the bare forwarder) and taken down.

// fwdBench runs the sweep of one bench forward.
type fwdBench struct {
	o     *forwardOptions
	t     *lab.Topology
	p     *heartbeat
	r     *ForwardResult
	tmp   string
	stats string // the generator's counters file
	*bencher
	// isp reads the ISP routers' eth0 counters over netlink sockets
	// opened in their namespaces: a reading takes microseconds, so the
	// forwarded count is taken at the same instant as the generator's.
	isp []ispCounter
	// noStart names the cases that could not start at a sweep point
	// (case + sources): their other runs there are skipped.
	noStart map[string]string
}

type ispCounter struct {
	h   *netlink.Handle
	if_ string
}

// openCounters opens a netlink handle in every ISP router's namespace.
func (b *fwdBench) openCounters() error {
	for _, isp := range b.t.ISPs {
		ns, err := netns.GetFromName(isp.NS)
		if err != nil {
			return fmt.Errorf("bench forward: namespace %s: %w", isp.NS, err)
		}
		h, err := netlink.NewHandleAt(ns)
		ns.Close()
		if err != nil {
			return fmt.Errorf("bench forward: netlink in %s: %w", isp.NS, err)
		}
		b.isp = append(b.isp, ispCounter{h: h, if_: isp.RouterIf})
	}
	return nil
}

func (b *fwdBench) closeCounters() {
	for _, c := range b.isp {
		c.h.Close()
	}
	b.isp = nil
}

// point measures sweep point n: its set-up, then o.runs interleaved runs
// of the calibration and every case.
func (b *fwdBench) point(ctx context.Context, n int) (err error) {
	t, o := b.t, b.o
	stateDir := filepath.Join(b.tmp, "state-"+strconv.Itoa(n))
	cfg := filepath.Join(b.tmp, "ispmux-"+strconv.Itoa(n)+".toml")
	mode := bindingsFor(o.bindings, n)
	pi := PointInfo{Sources: n, Bindings: mode}
	defer func() { b.r.Points = append(b.r.Points, pi) }()
	if containsStr(o.cases, CaseISPmux) || containsStr(o.cases, CaseISPmuxXDP) {
		if err := os.WriteFile(cfg, forwardConfig(t, stateDir, n, mode == BindingsStatic), 0o644); err != nil {
			return err
		}
		if !o.keep {
			defer os.Remove(cfg)
		}
		xdp := xdpConfigPath(cfg)
		if err := os.WriteFile(xdp, withFastPath(forwardConfig(t, stateDir, n, mode == BindingsStatic)), 0o644); err != nil {
			return err
		}
		if !o.keep {
			defer os.Remove(xdp) // --keep: left with the lab, to run a case by hand
		}
		if mode == BindingsStore {
			if err := os.MkdirAll(stateDir, 0o750); err != nil {
				return err
			}
			b.p.set("%s sources: seeding ispmux's store", sizeLabel(n))
			start := time.Now()
			var isps []string
			for _, isp := range t.ISPs {
				isps = append(isps, isp.Name)
			}
			last := map[string]int{}
			if err := seedForwardStore(ctx, filepath.Join(stateDir, appliance.StoreName), n, isps, t.Generator.Access, func(what string, done int) {
				if tenth := done * 10 / n; tenth > last[what] || done == n {
					last[what] = tenth
					b.p.logf("%s sources: store seeded with %d of %d %s", sizeLabel(n), done, n, what)
				}
			}); err != nil {
				return fmt.Errorf("bench forward: seeding the store: %w", err)
			}
			pi.SeedS = round(time.Since(start).Seconds(), 1)
		}
	}
	loadMap := func() error {
		if !containsStr(o.cases, CaseKernel) {
			return nil
		}
		b.p.set("%s sources: loading the nftables map", sizeLabel(n))
		start := time.Now()
		if err := b.t.NFTLoadMap(ctx, n, nftSource(len(b.t.ISPs)), func(done int) {
			b.p.logf("%s sources: nftables map %d of %d elements", sizeLabel(n), done, n)
		}); err != nil {
			return fmt.Errorf("bench forward: %w", err)
		}
		pi.NFTLoadS = round(time.Since(start).Seconds(), 1)
		b.p.logf("%s sources: nftables map loaded in %.1fs", sizeLabel(n), pi.NFTLoadS)
		return nil
	}
	if err := loadMap(); err != nil {
		return err
	}
	if containsStr(o.cases, CaseKernel) {
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if exists("/var/run/netns/" + b.t.Appliance.NS) {
				err = errors.Join(err, b.t.NFTDelete(cctx))
			}
		}()
	}
	rebuilt := 0
	for run := 1; run <= o.runs; run++ {
		err := b.run(ctx, n, run, cfg, stateDir, &pi)
		if errors.Is(err, errLabGone) && rebuilt < 3 && ctx.Err() == nil {
			rebuilt++
			b.p.logf("warning: %v; rebuilding the lab and measuring %s sources, run %d again", err, sizeLabel(n), run)
			b.r.Notes = append(b.r.Notes, fmt.Sprintf("Warning: the lab's namespaces were removed by someone else during run %d at %s sources; the lab was rebuilt and the run measured again.", run, sizeLabel(n)))
			b.dropRun(n, run)
			b.noStart = nil
			if err := b.labUp(ctx); err != nil {
				return err
			}
			if err := loadMap(); err != nil {
				return err
			}
			run--
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// run is one interleaved run of sweep point n: the calibration, then
// every case, starting with another case each run.
func (b *fwdBench) run(ctx context.Context, n, run int, cfg, stateDir string, pi *PointInfo) error {
	o := b.o
	if err := b.calibrate(ctx, n, run); err != nil {
		return b.labGone(err)
	}
	for i := range o.cases {
		c := o.cases[(i+run-1)%len(o.cases)]
		if c == CaseKernelRules && n > o.rulesMax {
			continue
		}
		if why, ok := b.noStart[c+"/"+strconv.Itoa(n)]; ok {
			b.p.logf("%s, %s sources, run %d: skipped (it did not start in run 1: %s)", c, sizeLabel(n), run, why)
			continue
		}
		if err := b.runCase(ctx, c, n, run, cfg, stateDir, pi); err != nil {
			if ctx.Err() != nil {
				return err
			}
			if err := b.labGone(err); errors.Is(err, errLabGone) {
				return err
			}
			msg := fmt.Sprintf("%s, %s sources, run %d: %v", c, sizeLabel(n), run, err)
			b.p.logf("case failed: %s", msg)
			b.r.Errors = append(b.r.Errors, msg)
		}
	}
	return nil
}

// nftSource is the benchmark's sources as the lab's nftables map wants them.
func nftSource(isps int) lab.NFTSource {
	return func(i int) ([6]byte, [4]byte, int) {
		mac, ip := forwardSource(i)
		return mac, ip, i % isps
	}
}

// forwardConfig is ispmux's configuration for sweep point n: the lab's
// (its own three subscribers included) with a MAC table that holds the n
// benchmark sources and, with static, the sources as static subscribers on
// the generator's access port (else they come from the store).
func forwardConfig(t *lab.Topology, stateDir string, n int, static bool) []byte {
	base := string(t.ConfigTOML(stateDir))
	table := fmt.Sprintf("mac_table_size = %d\n", max(1<<20, n+4096))
	// The lab's [datapath] table ends with completion_ring; the key joins it.
	base = strings.Replace(base, "completion_ring = ", table+"completion_ring = ", 1)
	if !static {
		return []byte(base)
	}
	var sb strings.Builder
	sb.Grow(len(base) + n*100)
	sb.WriteString(base)
	for k := range n {
		mac, ip := forwardSource(k)
		fmt.Fprintf(&sb, "\n[[subscriber]]\nmac = \"%02x:%02x:%02x:%02x:%02x:%02x\"\nisp = %q\nip = \"%d.%d.%d.%d\"\naccess = %q\n",
			mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], t.ISPs[k%len(t.ISPs)].Name, ip[0], ip[1], ip[2], ip[3], t.Generator.Access)
	}
	return []byte(sb.String())
}

// xdpConfigPath is where case ispmux-xdp's configuration is, beside
// case ispmux's at cfg.
func xdpConfigPath(cfg string) string { return strings.TrimSuffix(cfg, ".toml") + "-xdp.toml" }

// withFastPath turns the fast path on in a configuration made by
// forwardConfig.
func withFastPath(cfg []byte) []byte {
	return []byte(strings.Replace(string(cfg), "completion_ring = ", "fastpath = \"xdp\"\ncompletion_ring = ", 1))
}

// sizeLabel is n as in the tables: 256, 64K, 1M.
func sizeLabel(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "M"
	case n >= 1024 && n%1024 == 0:
		return strconv.Itoa(n>>10) + "K"
	}
	return strconv.Itoa(n)
}

// calibrate measures the generator alone at every fixed rate and flat
// out: the appliance's access port drops the frames at ingress, nothing
// forwards, no XDP program is attached.
func (b *fwdBench) calibrate(ctx context.Context, n, run int) (err error) {
	app, acc := b.t.Appliance.NS, b.t.Generator.Access
	if err := b.detachLeftovers(ctx); err != nil {
		return err
	}
	if err := b.t.KernelRouter(ctx, false); err != nil {
		return err
	}
	if err := lab.NetdevDrop(ctx, app, acc, benchDstNet, true); err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err = errors.Join(err, lab.NetdevDrop(cctx, app, acc, benchDstNet, false))
	}()
	for _, rate := range b.o.rates {
		if _, err := b.trial(ctx, CaseCalibration, n, run, rate, "fixed", b.o.duration, b.o.warmup, nil); err != nil {
			return fmt.Errorf("bench forward: calibration: %w", err)
		}
	}
	if _, err := b.trial(ctx, CaseCalibration, n, run, 0, "ceiling", b.o.ndrDuration, b.o.warmup/2, nil); err != nil {
		return fmt.Errorf("bench forward: calibration: %w", err)
	}
	return nil
}

// runCase brings case c up, runs its fixed-rate trials and its no-drop
// rate search, and brings it down.
func (b *fwdBench) runCase(ctx context.Context, c string, n, run int, cfg, stateDir string, pi *PointInfo) (err error) {
	start := time.Now()
	proc, down, err := b.up(ctx, c, n, cfg, stateDir)
	if err != nil {
		if b.noStart == nil {
			b.noStart = map[string]string{}
		}
		b.noStart[c+"/"+strconv.Itoa(n)] = err.Error()
		return err
	}
	if c == CaseISPmux || c == CaseISPmuxXDP {
		pi.ISPmuxReadyS = append(pi.ISPmuxReadyS, round(time.Since(start).Seconds(), 1))
	}
	defer func() {
		b.p.set("%s, %s sources: stopping", c, sizeLabel(n))
		err = errors.Join(err, down())
	}()
	var lo, hi float64
	for _, rate := range b.o.rates {
		tr, err := b.trial(ctx, c, n, run, rate, "fixed", b.o.duration, b.o.warmup, proc)
		if err != nil {
			return err
		}
		switch {
		case tr.LossPct > b.o.ndrLoss:
			if hi == 0 || rate < hi {
				hi = rate
			}
		case tr.OfferedPPS >= 0.97*rate:
			lo = max(lo, rate)
		}
	}
	if !b.o.ndr {
		return nil
	}
	trial := func(ctx context.Context, rate float64) (float64, float64, error) {
		tr, err := b.trial(ctx, c, n, run, rate, "ndr", b.o.ndrDuration, b.o.warmup/2, proc)
		if err != nil {
			return 0, 0, err
		}
		return tr.OfferedPPS, tr.LossPct, nil
	}
	res, err := searchNDR(ctx, trial, b.o.ndrLoss, lo, hi, 0.03, b.o.ndrSteps)
	if err != nil {
		return err
	}
	b.r.NDRRuns = append(b.r.NDRRuns, NDRRun{Case: c, Sources: n, Run: run, Result: res})
	b.p.logf("%s, %s sources, run %d: no-drop rate %s (generator ceiling %s)", c, sizeLabel(n), run, res, humanPPS(res.Ceiling))
	if proc != nil && c == CaseISPmux {
		b.ispmuxDiagnostics(ctx, c, n, run, stateDir)
	}
	return nil
}

// up starts case c: the forwarder process (nil for the kernel's cases) and
// how to stop it.
func (b *fwdBench) up(ctx context.Context, c string, n int, cfg, stateDir string) (*child, func() error, error) {
	t := b.t
	app := t.Appliance.NS
	if err := b.detachLeftovers(ctx); err != nil {
		return nil, nil, err
	}
	b.p.set("%s, %s sources: starting", c, sizeLabel(n))
	switch c {
	case CaseISPmux, CaseISPmuxXDP:
		var gro []string // ISP routers' ends with GRO turned on
		groOff := func() error {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			var errs []error
			for i, isp := range t.ISPs {
				if i < len(gro) {
					errs = append(errs, lab.SetGRO(cctx, isp.NS, isp.RouterIf, false))
				}
			}
			return errors.Join(errs...)
		}
		if c == CaseISPmuxXDP {
			cfg = xdpConfigPath(cfg)
			// The fast path redirects into the uplinks in the XDP hook:
			// a veth delivers that to its peer only with the peer's
			// NAPI receive on, which GRO turns on.
			for _, isp := range t.ISPs {
				if err := lab.SetGRO(ctx, isp.NS, isp.RouterIf, true); err != nil {
					return nil, nil, errors.Join(err, groOff())
				}
				gro = append(gro, isp.RouterIf)
			}
		}
		argv := b.caseArgv(c, cfg)
		p, err := startChild("ispmux", argv, nil, syscall.SIGTERM)
		if err != nil {
			return nil, nil, errors.Join(err, groOff())
		}
		stop := func() error {
			// SIGTERM: ispmux stops its workers and detaches XDP.
			return errors.Join(p.stop(syscall.SIGTERM, 60*time.Second), groOff())
		}
		start := time.Now()
		b.readyTimeout = min(b.o.readyMax, 20*time.Second+time.Duration(n)*time.Millisecond)
		b.maxRSS = memTotal() / 2
		if err := b.waitReady(ctx, p, filepath.Join(stateDir, appliance.SocketName)); err != nil {
			b.p.set("ispmux, %s sources: stopping after %v", sizeLabel(n), err)
			return nil, nil, errors.Join(err, stop())
		}
		b.p.logf("ispmux ready with %s bound sources after %.1fs", sizeLabel(n), time.Since(start).Seconds())
		if c == CaseISPmuxXDP && b.o.napiThread {
			stopApp := stop
			var offs []func(context.Context) error
			stop = func() error {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				defer cancel()
				var errs []error
				for _, off := range offs {
					errs = append(errs, off(cctx))
				}
				return errors.Join(append(errs, stopApp())...)
			}
			for _, a := range t.Appliance.Access {
				off, err := lab.ThreadedNAPI(ctx, app, a.Name, fwdCPU)
				if err != nil {
					return nil, nil, errors.Join(err, stop())
				}
				offs = append(offs, off)
			}
		}
		return p, stop, nil
	case CaseBare:
		ready := newLineWaiter("ready", nil)
		p, err := startChild("bare-forwarder", b.caseArgv(c, ""), ready, syscall.SIGTERM)
		if err != nil {
			return nil, nil, err
		}
		stop := func() error {
			err := p.stop(syscall.SIGTERM, 15*time.Second)
			if s := strings.TrimSpace(p.out.String()); s != "" {
				b.p.logf("%s", s)
			}
			return err
		}
		select {
		case <-ready.seen:
		case <-p.done:
			return nil, nil, fmt.Errorf("bare-forwarder exited before it was ready: %v%s", p.err, p.tail())
		case <-time.After(20 * time.Second):
			return nil, nil, errors.Join(fmt.Errorf("bare-forwarder not ready after 20s%s", p.tail()), stop())
		case <-ctx.Done():
			return nil, nil, errors.Join(ctx.Err(), stop())
		}
		return p, stop, nil
	case CaseKernel, CaseKernelRules:
		on := func(ctx context.Context, on bool) error {
			if c == CaseKernel {
				return t.NFTRouter(ctx, on)
			}
			return t.RuleRouter(ctx, on, n, nftSource(len(t.ISPs)))
		}
		stop := func() error {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			var errs []error
			for _, a := range t.Appliance.Access {
				errs = append(errs, lab.SetRPS(cctx, app, a.Name, "0"))
			}
			return errors.Join(append(errs, on(cctx, false))...)
		}
		if err := on(ctx, true); err != nil {
			return nil, nil, errors.Join(err, stop())
		}
		for _, a := range t.Appliance.Access {
			if !b.o.kernelRPS {
				break
			}
			if err := lab.SetRPS(ctx, app, a.Name, fwdCPUMask); err != nil {
				return nil, nil, errors.Join(err, stop())
			}
		}
		// Resolve the ISP routers before the clock starts.
		for i, isp := range t.ISPs {
			_, _ = t.Run(ctx, app, "ping", "-c", "1", "-W", "1", "-I", t.Appliance.Uplinks[i].Name, isp.RouterAddr)
		}
		return nil, stop, nil
	}
	return nil, nil, fmt.Errorf("bench forward: unknown case %q", c)
}

// caseArgv is the command of case c (nil for the kernel's cases).
func (b *fwdBench) caseArgv(c, cfg string) []string {
	t := b.t
	app := t.Appliance.NS
	switch c {
	case CaseISPmux, CaseISPmuxXDP:
		return []string{"taskset", "-c", fwdCPU, "ip", "netns", "exec", app, b.o.exe, "run", "-c", cfg}
	case CaseBare:
		var in, out, macs []string
		for _, a := range t.Appliance.Access {
			in = append(in, a.Name)
		}
		for i, u := range t.Appliance.Uplinks {
			out = append(out, u.Name)
			macs = append(macs, t.ISPs[i].RouterMAC)
		}
		return []string{"taskset", "-c", fwdCPU, "ip", "netns", "exec", app, b.o.exe, "bench", "bare-forwarder",
			"--in", strings.Join(in, ","), "--out", strings.Join(out, ","), "--dst-mac", strings.Join(macs, ","), "--attach", "native"}
	}
	return nil
}

// genArgv is the generator's command, the same for every case: one
// process pinned to CPU 0, bounded by timeout(1) in case the benchmark
// dies without stopping it.
func (b *fwdBench) genArgv(n int, rate float64, d time.Duration) []string {
	limit := d + 30*time.Second
	g := b.t.Generator
	return []string{"timeout", "-s", "INT", "-k", "5", strconv.Itoa(int(limit.Seconds())),
		"taskset", "-c", genCPU, "ip", "netns", "exec", g.NS, b.o.exe, "bench", "forward-gen",
		"--dev", g.If, "--dst-mac", g.AccessMAC, "--dst-ip", benchDstIP, "--sources", strconv.Itoa(n),
		"--rate", strconv.FormatFloat(rate, 'f', 0, 64), "--duration", d.String(), "--tick", b.o.tick.String(), "--stats", b.stats}
}
