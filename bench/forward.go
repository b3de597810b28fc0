package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/lab"
)

// Benchmark traffic: 60-byte UDP frames to an address in 198.18.0.0/15
// (RFC 2544's benchmarking range), which every ISP router blackholes.
const (
	benchDstIP  = "198.18.0.1"
	benchDstNet = "198.18.0.0/15"
	frameBytes  = 64 // on the wire with FCS; 60 written by trafgen
	genCPU      = "0"
	fwdCPU      = "1"
)

// forwardOptions are the flags of `bench forward`.
type forwardOptions struct {
	duration    time.Duration
	warmup      time.Duration
	subscribers int
	asJSON      bool
	id          string
	out         string
	keep        bool
	exe         string // the ispmux binary run for cases ispmux and bare
}

func parseForward(args []string, stderr io.Writer) (*forwardOptions, error) {
	fs := flag.NewFlagSet("bench forward", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &forwardOptions{}
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "steady measurement window per case")
	fs.IntVar(&o.subscribers, "subscribers", 256, "synthetic traffic subscribers (static bindings, round-robin over the ISPs)")
	fs.BoolVar(&o.asJSON, "json", false, "print one JSON object instead of the table")
	fs.StringVar(&o.id, "id", "benchfw", "lab ID (namespace prefix)")
	fs.StringVar(&o.out, "out", "bench-out", "directory for forward.json, forward.md and forward.svg")
	fs.BoolVar(&o.keep, "keep", false, "leave the lab up afterwards")
	// Hidden: tests run a freshly built ispmux binary instead of themselves.
	fs.StringVar(&o.exe, "exe", "", "")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ispmux bench forward [--duration 10s] [--subscribers 256] [--json] [--id benchfw] [--out DIR] [--keep]")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Usage != "" {
				fmt.Fprintf(stderr, "  --%s (default %q)\n    \t%s\n", f.Name, f.DefValue, f.Usage)
			}
		})
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("bench forward: unexpected arguments %q", fs.Args())
	}
	if o.duration < time.Second || o.duration > time.Hour {
		return nil, fmt.Errorf("bench forward: --duration %v: want 1s..1h", o.duration)
	}
	if o.warmup < 0 || o.warmup > time.Minute {
		return nil, fmt.Errorf("bench forward: --warmup %v: want 0..1m", o.warmup)
	}
	// trafgen keeps one packet block per subscriber in memory.
	if o.subscribers < 1 || o.subscribers > 4096 {
		return nil, fmt.Errorf("bench forward: --subscribers %d: want 1..4096", o.subscribers)
	}
	return o, nil
}

// forward runs `ispmux bench forward`.
func forward(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseForward(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	tmp, err := prepare("forward", "generator", []string{"ip", "taskset", "timeout", "trafgen"},
		"install the lab's packages: lab/deps.sh", &o.exe, &o.out, o.id)
	if err != nil {
		return err
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }

	r := &Result{
		Benchmark: "forward", Subscribers: o.subscribers, DurationS: o.duration.Seconds(), WarmupS: o.warmup.Seconds(),
		FrameBytes: frameBytes, CPUs: runtime.NumCPU(), Kernel: kernelRelease(), Started: time.Now().UTC().Format(time.RFC3339),
		Command: shellQuote(append([]string{"ispmux", "bench", "forward"}, args...)),
		Notes: []string{
			"Kernel forwarding runs in the sender's softirq: trafgen's sendto() on CPU " + genCPU + " carries each frame through the veth, the policy router and into the ISP router's receive path on the same CPU, with the other CPU idle. ispmux and the bare forwarder run on CPU " + fwdCPU + " and the generator's CPU also pays for XDP receive and the copy into the AF_XDP ring. Packets per second alone therefore flatter neither side; compare the CPU seconds per million packets too (whole machine, and the forwarder process's own).",
			"veth supports AF_XDP in copy mode only: every frame is copied into the ingress UMEM, into the egress UMEM and into an skb, so these figures say nothing about a NIC with zero-copy AF_XDP.",
			"cpu_busy_pct shows which CPU saturated. An AF_XDP worker keeps polling while frames keep arriving, so the forwarder's process CPU is close to all of CPU " + fwdCPU + " under load: an upper bound on its cost per packet, not its marginal cost.",
			"forwarded = packets received by the ISP routers' eth0 (sum over ISPs); offered = generator eth0 tx_packets; the routers blackhole " + benchDstNet + ".",
		},
	}

	// The lab and everything else is removed whatever happens, unless --keep.
	var t *lab.Topology
	defer func() { err = errors.Join(err, teardown(ctx, "forward", o.id, tmp, o.keep, t != nil, logf)) }()

	logf("lab %s up with %d traffic subscribers", o.id, o.subscribers)
	t, err = lab.Up(ctx, lab.Options{ID: o.id, Generator: true, TrafficSubscribers: o.subscribers})
	if err != nil {
		return fmt.Errorf("bench forward: %w", err)
	}
	for _, isp := range t.ISPs {
		if _, err := t.Run(ctx, isp.NS, "ip", "route", "add", "blackhole", benchDstNet); err != nil {
			return fmt.Errorf("bench forward: %w", err)
		}
	}
	if err := backgroundLoad(ctx, r, logf); err != nil {
		return err
	}
	stateDir := filepath.Join(tmp, "state")
	cfgPath := filepath.Join(o.out, "forward-ispmux.toml")
	genPath := filepath.Join(o.out, "forward-trafgen.cfg")
	if err := os.WriteFile(cfgPath, t.ConfigTOML(stateDir), 0o644); err != nil {
		return err
	}
	g := t.Generator
	if err := os.WriteFile(genPath, []byte(lab.TrafgenConfig(t.TrafficSubscribers(o.subscribers), g.AccessMAC, benchDstIP)), 0o644); err != nil {
		return err
	}
	b := &bencher{o: o, t: t, logf: logf, genPath: genPath}
	r.Generator = shellQuote(b.genArgv())

	appNS := t.Appliance.NS
	cases := []struct {
		name, desc string
		argv       []string
		run        func(c *Case) error
	}{
		{CaseISPmux, "ispmux with the lab configuration (every traffic subscriber a static binding), pinned to CPU " + fwdCPU,
			[]string{"taskset", "-c", fwdCPU, "ip", "netns", "exec", appNS, o.exe, "run", "-c", cfgPath}, nil},
		{CaseKernel, "the Linux policy router in the appliance namespace (one ip rule per subscriber source, a table per ISP); forwarding happens in the generator's softirq",
			nil, nil},
		{CaseBare, "a bare AF_XDP forwarder on the same datapath package (one worker, acc1 → upa, MAC rewrite only, no classification), pinned to CPU " + fwdCPU + ": the ceiling of this path",
			[]string{"taskset", "-c", fwdCPU, "ip", "netns", "exec", appNS, o.exe, "bench", "bare-forwarder",
				"--in", g.Access, "--out", t.Appliance.Uplinks[0].Name, "--dst-mac", t.ISPs[0].RouterMAC, "--attach", "native"}, nil},
	}
	cases[0].run = func(c *Case) error { return b.runISPmux(ctx, cases[0].argv, stateDir, c) }
	cases[1].run = func(c *Case) error { return b.runKernel(ctx, c) }
	cases[2].run = func(c *Case) error { return b.runBare(ctx, cases[2].argv, c) }

	var failed []string
	for _, cs := range cases {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := Case{Name: cs.name, Description: cs.desc}
		if cs.argv != nil {
			c.Command = shellQuote(cs.argv)
		} else {
			c.Command = "lab.Topology.KernelRouter(on)"
		}
		logf("case %s", cs.name)
		if err := cs.run(&c); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("bench forward: interrupted: %w", ctx.Err())
			}
			c.Error = err.Error()
			failed = append(failed, cs.name)
			logf("case %s failed: %v", cs.name, err)
		} else {
			logf("case %s: offered %.0f pps, forwarded %.0f pps, loss %.2f %%, CPUs busy %v %%", c.Name, c.OfferedPPS, c.ForwardedPPS, c.LossPct, c.CPUBusyPct)
		}
		r.Cases = append(r.Cases, c)
	}
	r.finish()

	if err := writeOutputs(o.out, r); err != nil {
		return err
	}
	if err := emit(stdout, r, o.asJSON, o.out, "forward"); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench forward: case(s) %s failed (details in %s/forward.json)", strings.Join(failed, ", "), o.out)
	}
	return nil
}

// backgroundLoad measures for a second how busy the CPUs are before any
// case runs and warns when the machine is not idle: whatever else runs is
// included in the whole-machine CPU figures and competes with the cases.
func backgroundLoad(ctx context.Context, r *Result, logf func(string, ...any)) error {
	a, err := readProcStat()
	if err != nil {
		return err
	}
	if err := sleep(ctx, time.Second); err != nil {
		return err
	}
	b, err := readProcStat()
	if err != nil {
		return err
	}
	r.BackgroundCPUPct = busyPct(a, b)
	for i, p := range r.BackgroundCPUPct {
		if p > 5 {
			msg := fmt.Sprintf("the machine was not idle before the run (CPU %d %.0f %% busy): other load competes with the cases and is counted in the whole-machine CPU figures", i, p)
			logf("warning: %s", msg)
			r.Notes = append(r.Notes, "Warning: "+msg+".")
			break
		}
	}
	return nil
}

// writeOutputs writes forward.json, forward.md and forward.svg into dir.
func writeOutputs(dir string, r *Result) error {
	return writeFiles(dir, "forward", r, func(w io.Writer) error {
		bars := []Bar{{"ispmux", r.ISPmuxPPS}, {"kernel", r.KernelPPS}, {"bare AF_XDP", r.BarePPS}}
		return writeBarSVG(w, fmt.Sprintf("Forwarded pps, 64-byte frames, %d subscribers", r.Subscribers), bars)
	})
}

// bencher runs the cases of one benchmark in one lab.
type bencher struct {
	o       *forwardOptions
	t       *lab.Topology
	logf    func(string, ...any)
	genPath string
}

// genArgv is the generator command, identical for every case: one trafgen
// process in sendto mode pinned to CPU 0 (LAB.md: ring mode aborts when
// the peer runs native XDP), bounded by timeout(1) in case the benchmark
// dies without stopping it.
func (b *bencher) genArgv() []string {
	limit := b.o.warmup + b.o.duration + 30*time.Second
	return []string{"timeout", "-s", "INT", "-k", "5", strconv.Itoa(int(limit.Seconds())),
		"taskset", "-c", genCPU, "ip", "netns", "exec", b.t.Generator.NS,
		"trafgen", "--dev", b.t.Generator.If, "--conf", b.genPath, "--cpus", "1", "-t", "0", "-q"}
}

// read takes one sample of every counter; proc is the forwarder process or
// nil.
func (b *bencher) read(proc *child) (sample, error) {
	var s sample
	var err error
	t0 := time.Now()
	if _, s.offered, _, err = lab.LinkStats(b.t.Generator.NS, b.t.Generator.If); err != nil {
		return s, err
	}
	for _, isp := range b.t.ISPs {
		rx, _, _, err := lab.LinkStats(isp.NS, isp.RouterIf)
		if err != nil {
			return s, err
		}
		s.forwarded += rx
	}
	t1 := time.Now()
	s.at = t0.Add(t1.Sub(t0) / 2)
	if s.cpu, err = readProcStat(); err != nil {
		return s, err
	}
	if proc != nil {
		if proc.exited() {
			return s, fmt.Errorf("%s exited during the measurement%s", proc.name, proc.tail())
		}
		if _, s.procTicks, err = readPIDStat(proc.pid()); err != nil {
			return s, fmt.Errorf("%s: %w", proc.name, err)
		}
		s.hasProc = true
	}
	return s, nil
}

// measure runs the generator, skips the warm-up, measures the steady window
// and stops the generator.
func (b *bencher) measure(ctx context.Context, proc *child, c *Case) (err error) {
	gen, err := startChild("trafgen", b.genArgv(), nil, syscall.SIGINT)
	if err != nil {
		return err
	}
	defer func() {
		if gerr := gen.stop(syscall.SIGINT, 5*time.Second); gerr != nil && err == nil {
			err = gerr
		}
	}()
	if err := sleep(ctx, b.o.warmup); err != nil {
		return err
	}
	if gen.exited() {
		return fmt.Errorf("trafgen exited early: %v%s", gen.err, gen.tail())
	}
	s0, err := b.read(proc)
	if err != nil {
		return err
	}
	if err := sleep(ctx, b.o.duration); err != nil {
		return err
	}
	s1, err := b.read(proc)
	if err != nil {
		return err
	}
	if gen.exited() {
		return fmt.Errorf("trafgen exited during the measurement: %v%s", gen.err, gen.tail())
	}
	m := computeCase(c.Name, s0, s1)
	m.Name, m.Description, m.Command = c.Name, c.Description, c.Command
	*c = m
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// runISPmux measures case (a): ispmux in the appliance namespace.
func (b *bencher) runISPmux(ctx context.Context, argv []string, stateDir string, c *Case) (err error) {
	if err := b.detachLeftovers(ctx); err != nil {
		return err
	}
	p, err := startChild("ispmux", argv, nil, syscall.SIGTERM)
	if err != nil {
		return err
	}
	defer func() {
		// SIGTERM: ispmux stops its workers and detaches XDP before exiting.
		if serr := p.stop(syscall.SIGTERM, 15*time.Second); serr != nil && err == nil {
			err = serr
		}
	}()
	sock := filepath.Join(stateDir, appliance.SocketName)
	if err := b.waitReady(ctx, p, sock); err != nil {
		return err
	}
	if err := b.measure(ctx, p, c); err != nil {
		return err
	}
	// Diagnostics: ispmux's own counters, with drop reasons per port.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if st, err := ctlsock.FetchStatus(sctx, sock); err == nil {
		c.Diagnostics = map[string]any{"ports": st.Ports, "isps": st.ISPs}
		if c.ForwardedPackets == 0 {
			js, _ := json.Marshal(st.Ports)
			b.logf("ispmux forwarded nothing; its port counters: %s", js)
		}
	} else {
		b.logf("ispmux status after the run: %v", err)
	}
	return nil
}

// waitReady waits until ispmux answers on its control socket with every
// ISP's next hop reachable, and fails if the process exits first.
func (b *bencher) waitReady(ctx context.Context, p *child, sock string) error {
	deadline := time.Now().Add(20 * time.Second)
	last := "no status yet"
	for {
		if p.exited() {
			return fmt.Errorf("ispmux exited before it was ready: %v%s", p.err, p.tail())
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := ctlsock.FetchStatus(sctx, sock)
		cancel()
		if err == nil {
			ready := len(st.ISPs) == len(b.t.ISPs)
			var states []string
			for _, isp := range st.ISPs {
				states = append(states, isp.Name+"="+isp.State)
				ready = ready && isp.State == "reachable"
			}
			if ready {
				return nil
			}
			last = "next hops " + strings.Join(states, ", ")
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ispmux not ready after 20s (%s)%s", last, p.tail())
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// runKernel measures case (b): the Linux policy router.
func (b *bencher) runKernel(ctx context.Context, c *Case) (err error) {
	if err := b.detachLeftovers(ctx); err != nil {
		return err
	}
	if err := b.t.KernelRouter(ctx, true); err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if oerr := b.t.KernelRouter(cctx, false); oerr != nil && err == nil {
			err = oerr
		}
	}()
	// Resolve the ISP routers before the clock starts (the warm-up would
	// cover it too; this keeps the first second clean).
	for i, isp := range b.t.ISPs {
		_, _ = b.t.Run(ctx, b.t.Appliance.NS, "ping", "-c", "1", "-W", "1", "-I", b.t.Appliance.Uplinks[i].Name, isp.RouterAddr)
	}
	return b.measure(ctx, nil, c)
}

// runBare measures case (c): the bare AF_XDP forwarder.
func (b *bencher) runBare(ctx context.Context, argv []string, c *Case) (err error) {
	if err := b.detachLeftovers(ctx); err != nil {
		return err
	}
	ready := newLineWaiter("ready", nil)
	p, err := startChild("bare-forwarder", argv, ready, syscall.SIGTERM)
	if err != nil {
		return err
	}
	defer func() {
		if serr := p.stop(syscall.SIGTERM, 15*time.Second); serr != nil && err == nil {
			err = serr
		}
		if s := strings.TrimSpace(p.out.String()); s != "" {
			b.logf("%s", s)
		}
	}()
	select {
	case <-ready.seen:
	case <-p.done:
		return fmt.Errorf("bare-forwarder exited before it was ready: %v%s", p.err, p.tail())
	case <-time.After(20 * time.Second):
		return fmt.Errorf("bare-forwarder not ready after 20s%s", p.tail())
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.measure(ctx, p, c)
}

// detachLeftovers removes XDP programs a previous case left on the
// appliance's ports (a forwarder that did not exit cleanly), reporting them.
func (b *bencher) detachLeftovers(ctx context.Context) error {
	out, err := b.t.Run(ctx, b.t.Appliance.NS, "ip", "-j", "link", "show")
	if err != nil {
		return err
	}
	var links []struct {
		Name string          `json:"ifname"`
		XDP  json.RawMessage `json:"xdp"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return fmt.Errorf("ip -j link show: %w", err)
	}
	for _, l := range links {
		if len(l.XDP) == 0 {
			continue
		}
		b.logf("warning: XDP program left on %s by the previous case; detaching it", l.Name)
		for _, mode := range []string{"xdpgeneric", "xdpdrv"} {
			_, _ = b.t.Run(ctx, b.t.Appliance.NS, "ip", "link", "set", "dev", l.Name, mode, "off")
		}
	}
	return nil
}

func kernelRelease() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return ""
	}
	var s []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}
