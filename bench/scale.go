package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ispmux/ispmux/internal/shellquote"
	"github.com/ispmux/ispmux/lab"
)

// bench scale's options and run: a lab, a base run without subscribers,
// then every point of every kind (measured in scale_point.go, its store
// seeded in scale_seed.go), the result and its files (scale_report.go),
// and the progress lines the run prints.

// scaleOptions are the flags of `bench scale`.
type scaleOptions struct {
	subscribers int
	points      []int
	kinds       []string
	runs        int
	asJSON      bool
	id          string
	out         string
	keep        bool
	exe         string
	timeout     time.Duration
	idleWindow  time.Duration
	staticMax   int
	fromJSON    string // re-render a result: verdicts and files from its JSON
}

// scalePoints are the sizes measured, capped by --subscribers (which is
// itself a point when it is not one of them).
var scalePoints = []int{10000, 100000, 1000000}

func parseScale(args []string, stderr io.Writer) (*scaleOptions, error) {
	fs := flag.NewFlagSet("bench scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &scaleOptions{}
	var points, kinds string
	fs.IntVar(&o.subscribers, "subscribers", 1000000, "largest point: 10k, 100k, 1M up to this many subscribers")
	fs.BoolVar(&o.asJSON, "json", false, "print one JSON object instead of the table")
	fs.StringVar(&o.out, "out", "bench-out", "directory for scale.json, scale.md and scale.svg")
	fs.StringVar(&o.id, "id", "benchsc", "lab ID (namespace prefix)")
	fs.IntVar(&o.runs, "runs", 3, "starts per point (the first start, then restarts: at least 2): medians with min and max")
	fs.StringVar(&kinds, "kinds", KindStatic+","+KindDHCP, "point kinds: static ([[subscriber]] entries with an address), dhcp (store devices with a binding each), lapsed (the same with every lease run out: a start after an outage), import (store customers, their devices attached by the bulk device import at the first start)")
	fs.BoolVar(&o.keep, "keep", false, "leave the lab and the state up afterwards")
	fs.IntVar(&o.staticMax, "static-max", 200000, "largest static point: a file of more [[subscriber]] entries is beyond what the configuration file supports (README)")
	// Hidden: the tests' own points, binary and patience.
	fs.StringVar(&points, "points", "", "")
	fs.StringVar(&o.fromJSON, "from-json", "", "")
	fs.StringVar(&o.exe, "exe", "", "")
	fs.DurationVar(&o.timeout, "start-timeout", 5*time.Minute, "")
	fs.DurationVar(&o.idleWindow, "idle-window", 10*time.Second, "after each start, ispmux's CPU time is measured over this long with nothing happening (0: not measured)")
	setUsage(fs, stderr, "usage: ispmux bench scale [--subscribers N] [--kinds static,dhcp,lapsed,import] [--runs 3] [--json] [--id benchsc] [--out DIR] [--keep]")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("bench scale: unexpected arguments %q", fs.Args())
	}
	if o.subscribers < 1 || o.subscribers > 1<<24 {
		return nil, fmt.Errorf("bench scale: --subscribers %d: want 1..16777216", o.subscribers)
	}
	if o.runs < 2 || o.runs > 20 {
		return nil, fmt.Errorf("bench scale: --runs %d: want 2..20 (the first start, then at least one restart)", o.runs)
	}
	for _, k := range strings.Split(kinds, ",") {
		if k != KindStatic && k != KindDHCP && k != KindLapsed && k != KindImport {
			return nil, fmt.Errorf("bench scale: --kinds: unknown kind %q (static, dhcp, lapsed, import)", k)
		}
		o.kinds = append(o.kinds, k)
	}
	if points != "" {
		for _, p := range strings.Split(points, ",") {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > o.subscribers {
				return nil, fmt.Errorf("bench scale: --points: %q: want 1..%d", p, o.subscribers)
			}
			o.points = append(o.points, n)
		}
	} else {
		for _, p := range scalePoints {
			if p <= o.subscribers {
				o.points = append(o.points, p)
			}
		}
		if len(o.points) == 0 || o.points[len(o.points)-1] != o.subscribers {
			o.points = append(o.points, o.subscribers)
		}
	}
	return o, nil
}

// scaleBench runs `ispmux bench scale` (issue 11: a million subscribers).
func scaleBench(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseScale(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if o.fromJSON != "" {
		return rerenderScale(o, stdout)
	}
	tmp, err := prepare("scale", "anything", []string{"ip"}, "install the lab's packages: lab/deps.sh", &o.exe, &o.out, o.id)
	if err != nil {
		return err
	}
	pr := newProgress(stderr)
	defer pr.stop()
	r := &ScaleResult{
		Benchmark: "scale", Command: shellquote.Join(append([]string{"ispmux", "bench", "scale"}, args...)),
		Started: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), Kernel: kernelRelease(), Runs: o.runs, LoadBefore: loadAvg(),
		Seeding: "dhcp points: written straight into the store by package subscribers (ApplyTenant batches of 5000 customers + devices, " +
			"then CommitBinding from 256 writers), no API; static points: [[subscriber]] entries with an address in the configuration file, " +
			"registered by ispmux's own configuration sync at the first start; import points: the customers written into the store as the dhcp points', " +
			"their devices attached through `ispmux ctl device-import` at the first start",
		Notes: []string{
			"first_start_s and restart_s run from exec of `ispmux run` to its \"forwarding\" log line (every table filled, workers started); the first start is the first run on the seeded state (its files synced to disk after the seed), restarts the later runs on it (a lapsed point's on the seeded store copied back and synced before each).",
			"reload_s: SIGHUP after one [[subscriber]] entry was added to the file, to the \"reloaded\" log line. list_s: `ctl devices --limit 1000` and `ctl bindings --limit 1000` over the control socket.",
			"rss_anon_bytes: RssAnon of /proc/PID/status after the process ran runtime.GC and debug.FreeOSMemory (SIGUSR1 with " + gcEnv + "=1) and settled; per subscriber it is net of the base run (no subscribers); peak_rss_bytes is VmHWM.",
			"compact_s: `ispmux compact -c` on the point's state after its last run (ispmux stopped); compact_peak_rss_bytes is its maxrss (the store's mapped pages count). import_s (import points): `ispmux ctl --socket … device-import`, one file per ISP, at the first start.",
			"The machine's 2 CPUs are shared with other work: times are medians of the runs, with min and max.",
		},
	}
	var t *lab.Topology
	defer func() { err = errors.Join(err, teardown(ctx, "scale", o.id, tmp, o.keep, t != nil, pr.logf)) }()
	pr.logf("lab %s up; points %v, kinds %v, %d runs each", o.id, o.points, o.kinds, o.runs)
	pr.set("lab %s: building", o.id)
	t, err = lab.Up(ctx, lab.Options{ID: o.id, Subscribers: 1})
	if err != nil {
		return fmt.Errorf("bench scale: %w", err)
	}
	s := &scaler{o: o, t: t, pr: pr, tmp: tmp}
	base, err := s.point(ctx, 0, KindDHCP, 1)
	if err != nil {
		return fmt.Errorf("bench scale: base run: %w", err)
	}
	r.BaseRSSAnon = base.RSSAnonBytes
	var failed []string
	for _, n := range o.points {
		for _, k := range o.kinds {
			if err := ctx.Err(); err != nil {
				return err
			}
			if k == KindStatic && n > o.staticMax {
				r.Notes = append(r.Notes, fmt.Sprintf("static %s not measured: above --static-max %d (a configuration file that large is not supported; such bases come through the API and the store, the dhcp points).", humanCount(n), o.staticMax))
				continue
			}
			p, err := s.point(ctx, n, k, o.runs)
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("bench scale: interrupted: %w", ctx.Err())
				}
				p.Error = err.Error()
				failed = append(failed, fmt.Sprintf("%s %d", k, n))
				pr.logf("%s %s failed: %v", k, humanCount(n), err)
			} else {
				if n > 0 {
					p.RSSAnonBytesPerSubscriber = round(float64(p.RSSAnonBytes-base.RSSAnonBytes)/float64(n), 1)
				}
				pr.logf("%s %s: first start %.3f s, restart %.3f s, reload %.3f s, ctl pages %.3f s, RssAnon %.0f MB (%.0f B/subscriber), peak RSS %.0f MB, store %.0f B/subscriber",
					k, humanCount(n), p.FirstStartS, p.RestartS, p.ReloadS, p.ListS, float64(p.RSSAnonBytes)/1e6,
					p.RSSAnonBytesPerSubscriber, float64(p.PeakRSSBytes)/1e6, p.StoreBytesPerSubscriber)
			}
			r.Points = append(r.Points, p)
			if !o.keep {
				_ = os.RemoveAll(s.dir(n, k))
			}
		}
	}
	r.LoadAfter = loadAvg()
	r.finish()
	if err := writeFiles(o.out, "scale", r, r.chart); err != nil {
		return err
	}
	pr.stop()
	if err := emit(stdout, r, o.asJSON, o.out, "scale"); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench scale: point(s) %s failed (details in %s/scale.json)", strings.Join(failed, ", "), o.out)
	}
	return nil
}

// rerenderScale reads a result back, recomputes its verdicts and writes
// its files again (the hidden --from-json: a result of an earlier build).
func rerenderScale(o *scaleOptions, stdout io.Writer) error {
	js, err := os.ReadFile(o.fromJSON)
	if err != nil {
		return err
	}
	var r ScaleResult
	if err := json.Unmarshal(js, &r); err != nil {
		return fmt.Errorf("bench scale: %s: %w", o.fromJSON, err)
	}
	if r.Runs == 0 && len(r.Points) > 0 {
		r.Runs = r.Points[0].Runs
	}
	r.finish()
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	if err := writeFiles(o.out, "scale", &r, r.chart); err != nil {
		return err
	}
	return emit(stdout, &r, o.asJSON, o.out, "scale")
}

// progress prints what the benchmark is doing at least every 5 s.
type progress struct {
	w       io.Writer
	mu      sync.Mutex
	phase   string
	since   time.Time
	last    time.Time
	done    chan struct{}
	stopped sync.Once
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, done: make(chan struct{}), since: time.Now(), last: time.Now()}
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-p.done:
				return
			case now := <-tick.C:
				p.mu.Lock()
				if now.Sub(p.last) >= 5*time.Second {
					fmt.Fprintf(p.w, "bench: %s (%.0f s)\n", p.phase, now.Sub(p.since).Seconds())
					p.last = now
				}
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// set names the current phase (printed every 5 s while it lasts).
func (p *progress) set(format string, a ...any) {
	p.mu.Lock()
	p.phase = fmt.Sprintf(format, a...)
	p.since = time.Now()
	p.mu.Unlock()
}

func (p *progress) logf(format string, a ...any) {
	p.mu.Lock()
	fmt.Fprintf(p.w, "bench: "+format+"\n", a...)
	p.last = time.Now()
	p.mu.Unlock()
}

func (p *progress) stop() { p.stopped.Do(func() { close(p.done) }) }
