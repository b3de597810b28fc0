package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/internal/shellquote"
	"github.com/ispmux/ispmux/lab"
	"github.com/ispmux/ispmux/subscribers"
)

// `ispmux bench kill9`: ispmux holding N seeded DHCP subscribers (1M by
// default) is SIGKILLed again and again while DHCP clients churn (DORA of
// new MACs, renewals, RELEASEs) and the API revokes bindings (device
// deletes, blocks); after each crash it is restarted, timed to
// "forwarding", and every binding it holds is listed over the control
// socket and compared with what the clients and the API were told
// (kill9model.go): no acknowledged binding lost, no released or revoked
// one back. Some crashes hit the start itself (the restore).

type kill9Options struct {
	subscribers int
	crashes     int
	clients     int
	rate        float64
	grace       time.Duration
	id, out     string
	exe         string
	keep        bool
	asJSON      bool
	timeout     time.Duration
	seed        uint64
	cleanEvery  int
}

func parseKill9(args []string, stderr io.Writer) (*kill9Options, error) {
	fs := flag.NewFlagSet("bench kill9", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &kill9Options{}
	fs.IntVar(&o.subscribers, "subscribers", 1000000, "seeded DHCP-bound subscribers in the store")
	fs.IntVar(&o.crashes, "crashes", 12, "SIGKILLs of a running ispmux (besides those during a start)")
	fs.IntVar(&o.clients, "clients", 2000, "generator MACs (configured subscribers) that DORA, renew and release")
	fs.Float64Var(&o.rate, "rate", 100, "DHCP operations per second while ispmux runs")
	fs.DurationVar(&o.grace, "grace", time.Second, "a RELEASE sent less than this before a kill may not have reached ispmux: its outcome is taken as found")
	fs.StringVar(&o.id, "id", "benchk9", "lab ID (namespace prefix)")
	fs.StringVar(&o.out, "out", "bench-out", "directory for kill9.json")
	fs.BoolVar(&o.keep, "keep", false, "leave the lab and the state up afterwards")
	fs.BoolVar(&o.asJSON, "json", false, "print one JSON object instead of the table")
	fs.IntVar(&o.cleanEvery, "clean-every", 3, "after every this many crashes, a clean restart (SIGTERM) too, timed the same way (0: none)")
	fs.Uint64Var(&o.seed, "seed", 0, "random seed (0: from the clock)")
	fs.StringVar(&o.exe, "exe", "", "")
	fs.DurationVar(&o.timeout, "start-timeout", 5*time.Minute, "")
	setUsage(fs, stderr, "usage: ispmux bench kill9 [--subscribers N] [--crashes 12] [--clients 2000] [--rate 100] [--id benchk9] [--out DIR] [--json] [--keep]")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("bench kill9: unexpected arguments %q", fs.Args())
	}
	if o.subscribers < 1 || o.subscribers > 1<<24 {
		return nil, fmt.Errorf("bench kill9: --subscribers %d: want 1..16777216", o.subscribers)
	}
	if o.crashes < 1 || o.clients < 1 || o.clients > maxGenClients || o.rate <= 0 {
		return nil, fmt.Errorf("bench kill9: want --crashes ≥ 1, --clients 1..%d, --rate > 0", maxGenClients)
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	return o, nil
}

// Kill9Result is bench kill9's result.
type Kill9Result struct {
	Benchmark   string         `json:"benchmark"`
	Command     string         `json:"command"`
	Started     string         `json:"started"`
	Subscribers int            `json:"subscribers"`
	Seed        uint64         `json:"seed"`
	SeedS       float64        `json:"seed_s"`
	FirstStartS float64        `json:"first_start_s"`
	Crashes     []Kill9Crash   `json:"crashes"`
	Counts      map[string]int `json:"counts"`
	Violations  int            `json:"violations"`
}

// Kill9Crash is one SIGKILL and the restart after it.
type Kill9Crash struct {
	N      int     `json:"n"`
	Kind   string  `json:"kind"`    // what the kill followed: random, ack, release, revoke, start
	AfterS float64 `json:"after_s"` // since the process's exec (kind start) or its "forwarding"
	// InStart (kind start) is whether the kill came before that start's
	// "forwarding": its instant is drawn below the last restart's time,
	// and a quicker start can be done by then.
	InStart  bool    `json:"in_start,omitempty"`
	Ops      int     `json:"ops"` // DHCP and API operations since the last check
	RestartS float64 `json:"restart_s"`
	// RestartCPUS is ispmux's CPU time (user + system, every thread) at
	// the restart's "forwarding": the machine is shared, and wall time
	// follows its load.
	RestartCPUS float64 `json:"restart_cpu_s"`
	// RestartWaitS is the time ispmux's live threads waited for a CPU
	// (runnable, not running: /proc/PID/task/*/schedstat) by then,
	// summed over the threads (it can pass the wall time): what the
	// machine's other work took from the restart.
	RestartWaitS float64 `json:"restart_wait_s"`
	// A clean restart (SIGTERM, then a start) after the check, every
	// --clean-every crashes: the same state's restart without a crash.
	CleanRestartS    float64 `json:"clean_restart_s,omitempty"`
	CleanRestartCPUS float64 `json:"clean_restart_cpu_s,omitempty"`
	// RSS at "forwarding" of the restart (bytes): VmRSS, RssAnon, VmHWM.
	RSSBytes     int64   `json:"rss_bytes"`
	RSSAnonBytes int64   `json:"rss_anon_bytes"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
	Check        K9Check `json:"check"`
	LoadAvg      string  `json:"load_avg"` // /proc/loadavg at the restart's "forwarding" (the machine is shared)
}

type kill9 struct {
	o        *kill9Options
	t        *lab.Topology
	pr       *progress
	stateDir string
	cfg      string
	sock     string
	m        *k9Model
	w        *k9Wire
	rng      *rand.Rand
	isp      string
	cue      chan string   // the churn's events ("ack", "release", "revoke") while a kill waits for one
	revoke   chan struct{} // holds a token while no API revocation is in flight
	ops      int
	runs     int // ispmux starts so far
}

// waitRevoke waits for the API revocation in flight, if any.
func (k *kill9) waitRevoke() {
	<-k.revoke
	k.revoke <- struct{}{}
}

func kill9Bench(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseKill9(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	tmp, err := prepare("kill9", "the DHCP clients", []string{"ip", "kea-dhcp4"}, "install the lab's packages: lab/deps.sh", &o.exe, &o.out, o.id)
	if err != nil {
		return err
	}
	pr := newProgress(stderr)
	defer pr.stop()
	r := &Kill9Result{Benchmark: "kill9", Command: shellquote.Join(append([]string{"ispmux", "bench", "kill9"}, args...)),
		Started: time.Now().UTC().Format(time.RFC3339), Subscribers: o.subscribers, Seed: o.seed}
	var t *lab.Topology
	defer func() { err = errors.Join(err, teardown(ctx, "kill9", o.id, tmp, o.keep, t != nil, pr.logf)) }()
	pr.set("lab %s: building", o.id)
	t, err = lab.Up(ctx, lab.Options{ID: o.id, ISPs: 1, Subscribers: 1, Generator: true, DHCP: true, KeaOpen: true, LeaseTime: time.Hour})
	if err != nil {
		return fmt.Errorf("bench kill9: %w", err)
	}
	k := &kill9{o: o, t: t, pr: pr, stateDir: filepath.Join(tmp, "state"), m: newK9Model(o.subscribers),
		rng: rand.New(rand.NewPCG(o.seed, 9)), isp: t.ISPs[0].Name}
	k.sock = filepath.Join(k.stateDir, appliance.SocketName)
	k.cfg = filepath.Join(tmp, "ispmux.toml")
	if err := os.MkdirAll(k.stateDir, 0o750); err != nil {
		return err
	}
	for i := range o.subscribers {
		k.m.seeded[scaleMAC(i)] = i
	}
	if err := os.WriteFile(k.cfg, k.config(), 0o644); err != nil {
		return err
	}
	t0 := time.Now()
	err = seedScaleStore(ctx, filepath.Join(k.stateDir, appliance.StoreName), o.subscribers, []string{k.isp}, t.Generator.Access, true, false,
		func(what string, done int) { pr.set("seeding %s: %d of %d", what, done, o.subscribers) })
	if err != nil {
		return fmt.Errorf("bench kill9: seed: %w", err)
	}
	r.SeedS = round(time.Since(t0).Seconds(), 1)
	pr.logf("seeded %d subscribers in %.1f s", o.subscribers, r.SeedS)
	if k.w, err = openK9Wire(t.Generator.NS, t.Generator.If, k.m); err != nil {
		return fmt.Errorf("bench kill9: DHCP socket: %w", err)
	}
	defer k.w.close()
	k.cue = make(chan string, 1)
	k.revoke = make(chan struct{}, 1)
	k.revoke <- struct{}{}
	k.w.onAck = func() { k.cued("ack") }
	stopRecv := make(chan struct{})
	defer close(stopRecv)
	go k.w.receive(stopRecv)

	p, err := k.start()
	if err != nil {
		return err
	}
	defer func() {
		if p != nil {
			err = errors.Join(err, p.stop())
		}
	}()
	if err := p.waitForwarding(ctx, o.timeout); err != nil {
		return err
	}
	r.FirstStartS = round(p.sinceExec(), 3)
	pr.logf("first start: forwarding after %.2f s", r.FirstStartS)
	kinds := []string{"random", "ack", "release", "revoke", "start"}
	for n := 1; n <= o.crashes; n++ {
		kind := kinds[(n-1)%len(kinds)]
		c := Kill9Crash{N: n, Kind: kind}
		var kill time.Time
		churned := p // the process killed while the clients churned
		if kind == "start" {
			// The churn runs a while, ispmux is stopped by a kill, then
			// killed again during the restart (its restore), at a random
			// instant before the last restart's "forwarding".
			k.ops = 0
			if err := k.churn(ctx, p, time.Duration(1+k.rng.IntN(3))*time.Second, ""); err != nil {
				return err
			}
			c.Ops = k.ops
			kill = time.Now()
			p.kill()
			k.w.abandon()
			k.waitRevoke()
			last := 3.0
			if len(r.Crashes) > 0 {
				last = r.Crashes[len(r.Crashes)-1].RestartS
			}
			if p, err = k.start(); err != nil {
				return err
			}
			at := time.Duration(k.rng.Float64() * last * float64(time.Second))
			select {
			case <-time.After(at):
			case <-p.forwarding:
			}
			select {
			case <-p.forwarding:
			default:
				c.InStart = true
			}
			c.AfterS = round(p.sinceExec(), 3)
			p.kill()
		} else {
			k.ops = 0
			d := time.Duration(1000+k.rng.IntN(4000)) * time.Millisecond
			if err := k.churn(ctx, p, d, kind); err != nil {
				return err
			}
			c.Ops = k.ops
			c.AfterS = round(time.Since(p.fwdAt).Seconds(), 3)
			kill = time.Now()
			p.kill()
		}
		k.w.abandon()
		k.waitRevoke()
		pr.set("crash %d (%s): restarting", n, kind)
		if p, err = k.start(); err != nil {
			return err
		}
		if err := p.waitForwarding(ctx, o.timeout); err != nil {
			return err
		}
		c.RestartS = round(p.sinceExec(), 3)
		c.RestartCPUS = p.cpu()
		c.RestartWaitS = runDelay(p.pid())
		c.LoadAvg = loadAvg()
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid())); err == nil {
			c.RSSAnonBytes, c.PeakRSSBytes, _ = parseProcMem(string(st))
			c.RSSBytes = procField(string(st), "VmRSS:")
		}
		pr.set("crash %d (%s): checking the bindings", n, kind)
		got, listS, err := k.list(ctx)
		if err != nil {
			return err
		}
		c.Check = k.m.check(got, kill, o.grace)
		c.Check.ListS = round(listS, 2)
		// A RELEASE sent just before the kill and found bound: a
		// violation all the same if the killed ispmux had logged it as
		// released (the log line follows the end's commit), or if the
		// store holds its end (its event, committed with the end).
		logged := releasesLogged(churned.logPath, c.Check.foundInGrace)
		stored, err := k.releasesStored(ctx, c.Check.foundInGrace)
		if err != nil {
			return err
		}
		c.Check.ReleasedNewLogged, c.Check.ReleasedNewStored = len(logged), len(stored)
		for _, r := range c.Check.foundInGrace {
			inLog, inStore := slices.Contains(logged, r), slices.Contains(stored, r)
			if !inLog && !inStore {
				continue
			}
			c.Check.Resurrected++
			how := "logged its release of it"
			switch {
			case inLog && inStore:
				how = "logged and stored its release of it"
			case inStore:
				how = "stored its release of it"
			}
			c.Check.Examples = append(c.Check.Examples, fmt.Sprintf("%s: bound to %s after the restart; the killed ispmux %s", macText(r.mac), r.ip, how))
		}
		// The store's check, checked: ends known to be committed must
		// be found the same way.
		found, err := k.releasesStored(ctx, c.Check.probes)
		if err != nil {
			return err
		}
		c.Check.ProbesFound, c.Check.ProbesMissed = len(found), len(c.Check.probes)-len(found)
		if c.Check.ProbesMissed > 0 {
			return fmt.Errorf("crash %d: %d of %d releases ended before the kill have no released event after the restart: the check of releases found bound cannot see their ends", n, c.Check.ProbesMissed, len(c.Check.probes))
		}
		r.Violations += c.Check.Bad()
		if o.cleanEvery > 0 && n%o.cleanEvery == 0 {
			pr.set("crash %d: a clean restart", n)
			if err := p.stop(); err != nil {
				return err
			}
			if p, err = k.start(); err != nil {
				return err
			}
			if err := p.waitForwarding(ctx, o.timeout); err != nil {
				return err
			}
			c.CleanRestartS, c.CleanRestartCPUS = round(p.sinceExec(), 3), p.cpu()
		}
		pr.logf("crash %2d %-7s at %6.2f s (%4d ops): restart %.2f s (CPU %.2f s, waited for a CPU %.2f s, load %s; clean %.2f s, CPU %.2f s), RSS %d MB; %d bindings, lost %d, wrong %d, resurrected %d, unexpected %d, adopted %d; stored ends probed %d",
			n, kind, c.AfterS, c.Ops, c.RestartS, c.RestartCPUS, c.RestartWaitS, c.LoadAvg, c.CleanRestartS, c.CleanRestartCPUS, c.RSSBytes>>20, c.Check.Bindings, c.Check.Lost, c.Check.WrongIP, c.Check.Resurrected, c.Check.Unexpected, c.Check.Adopted+c.Check.ReleasedNew, c.Check.ProbesFound)
		for _, e := range c.Check.Examples {
			pr.logf("    %s", e)
		}
		r.Crashes = append(r.Crashes, c)
	}
	r.Counts = k.m.counts
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, "kill9.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	if o.asJSON {
		_, _ = stdout.Write(append(data, '\n'))
	} else {
		fmt.Fprintf(stdout, "bench kill9: %d subscribers, %d crashes, %d violations; restarts (s):", o.subscribers, len(r.Crashes), r.Violations)
		for _, c := range r.Crashes {
			fmt.Fprintf(stdout, " %s %.2f", c.Kind, c.RestartS)
		}
		fmt.Fprintln(stdout)
	}
	if r.Violations > 0 {
		return fmt.Errorf("bench kill9: %d violations (see %s)", r.Violations, filepath.Join(o.out, "kill9.json"))
	}
	return nil
}

// cued tells a kill waiting for what that it happened.
func (k *kill9) cued(what string) {
	select {
	case k.cue <- what:
	default:
	}
}

// config is ispmux's configuration: the lab's, a MAC table for every
// subscriber, the generator MACs as DHCP subscribers of the ISP on the
// generator's access port, and limits far above the churn.
func (k *kill9) config() []byte {
	n := k.o.subscribers + k.o.clients
	b := k.t.ConfigTOML(k.stateDir)
	b = bytes.Replace(b, []byte("[datapath]\n"), fmt.Appendf(nil, "[datapath]\nmac_table_size = %d\n", max(1<<20, n+1024)), 1)
	var buf bytes.Buffer
	buf.Write(b)
	q := strconv.Quote
	for i := range k.o.clients {
		fmt.Fprintf(&buf, "\n[[subscriber]]\nmac = %s\nisp = %s\ncustomer_id = %s\naccess = %s\n",
			q(genMAC(i).String()), q(k.isp), q(fmt.Sprintf("k9-%d", i+1)), q(k.t.Generator.Access))
	}
	fmt.Fprintf(&buf, "\n[dhcp]\nmac_rate = 100\nmac_burst = 200\ncircuit_rate = %d\ncircuit_burst = %d\nmax_bindings_per_circuit = %d\n",
		1<<20, 1<<20, n+65536)
	return buf.Bytes()
}

// churn runs the DHCP clients and the API for d (and longer, up to 30 s,
// until the event cue names happens, when not "" or "random").
func (k *kill9) churn(ctx context.Context, p *k9Proc, d time.Duration, cue string) error {
	k.pr.set("churn for %v, then a kill (%s)", d, cue)
	tick := time.NewTicker(time.Duration(float64(time.Second) / k.o.rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	limit := end.Add(30 * time.Second)
	armed := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case werr := <-p.done:
			p.exited = true
			return fmt.Errorf("ispmux exited during the churn: %v%s", werr, p.lw.tail())
		case what := <-k.cue:
			if armed && what == cue {
				// 0–20 ms after it: the commit, the reply or the
				// completion may be under way.
				time.Sleep(time.Duration(k.rng.IntN(20000)) * time.Microsecond)
				return nil
			}
			continue
		case <-tick.C:
		}
		now := time.Now()
		if now.After(end) {
			if cue == "" || cue == "random" || now.After(limit) {
				return nil // a revocation may be in flight
			}
			if !armed {
				armed = true
				for len(k.cue) > 0 {
					<-k.cue
				}
			}
		}
		k.op()
	}
}

// op starts one DHCP or API operation on a random subscriber.
func (k *kill9) op() {
	x := k.rng.IntN(100)
	seeded := func() subscribers.MAC { return scaleMAC(k.rng.IntN(k.o.subscribers)) }
	gen := func() subscribers.MAC { return subscribers.MAC(genMAC(k.rng.IntN(k.o.clients))) }
	switch {
	case x < 30: // DORA of a generator MAC holding nothing
		mac := gen()
		if k.m.idle(mac) && k.w.start(mac, k9Discover, netip.Addr{}) {
			k.ops++
		}
	case x < 55: // renewal: a seeded or generator MAC, bound
		mac := seeded()
		if x%2 == 0 {
			mac = gen()
		}
		if ip, ok := k.m.bound(mac); ok && k.w.start(mac, k9Renew, ip) {
			k.ops++
		}
	case x < 85: // RELEASE
		mac := seeded()
		if x%2 == 0 {
			mac = gen()
		}
		if ip, ok := k.m.bound(mac); ok && k.w.release(mac, ip) {
			k.ops++
			k.cued("release")
		}
	default: // an API revocation of a seeded device: detach or block
		select {
		case <-k.revoke:
		default:
			return // one at a time
		}
		mac := seeded()
		if !k.m.revoking(mac) {
			k.revoke <- struct{}{}
			return
		}
		k.ops++
		argv := []string{k.o.exe, "ctl", "--socket", k.sock, "block", macText(mac)}
		why := "block"
		if x%2 == 0 {
			argv = []string{k.o.exe, "ctl", "--socket", k.sock, "device-del", k.isp, macText(mac)}
			why = "device-del"
		}
		go func() {
			out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
			k.m.revoked(mac, err == nil, why)
			if err != nil {
				k.m.count("revoke failed: " + truncate(string(bytes.TrimSpace(out)), 60))
			} else {
				k.cued("revoke")
			}
			k.revoke <- struct{}{}
		}()
	}
}
