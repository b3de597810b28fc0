// Command ispmux is the open-access broadband gateway: it forwards every
// subscriber's traffic to the ISP that subscriber chose.
//
//	ispmux run   -c FILE           run the appliance (headless; SIGINT/SIGTERM stop it cleanly,
//	                               SIGHUP re-reads the subscriber entries, token files, TLS
//	                               certificates, webhook settings, log_level and [dhcp])
//	ispmux check -c FILE           validate a configuration and the files it names, and exit
//	ispmux ctl   COMMAND ...       talk to a running appliance: over the API (--api URL, a token)
//	                               or, as root on the box, its control socket (-c FILE or --socket PATH):
//	                               status, events, backup, isps, customers, devices, bindings,
//	                               subscriber, claim, block, move, stats, ... (ispmux ctl -h)
//	ispmux version                 the build's version, VCS revision and Go version
//	ispmux lab   up|down ...       build or remove the network-namespace lab
//	ispmux bench forward|dhcp ...  measure forwarding / DHCP against the kernel, dhcrelay, bare AF_XDP, Kea
//	ispmux demo  [--exit] [--keep] [--lease 1m]
//	                               the lab demo (what `make demo` runs)
//
// main only wires the process to run; the logic lives in the packages.
package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/bench"
	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/demo"
	"github.com/ispmux/ispmux/internal/asynclog"
	"github.com/ispmux/ispmux/internal/sdnotify"
	"github.com/ispmux/ispmux/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		report(os.Stderr, err)
		os.Exit(exitCode(err))
	}
}

// defaultConfig is the configuration file -c names when it is not given.
const defaultConfig = "/etc/ispmux/ispmux.toml"

const usage = `usage: ispmux <command> [flags]

commands:
  run   -c FILE              run the appliance (--log-format text|json)
  check -c FILE              validate a configuration and the files it names (tokens, TLS, webhooks)
  compact -c FILE            rewrite the store without its free pages (ispmux stopped)
  ctl   COMMAND [flags]      talk to a running appliance: over the API (--api URL and a token) or,
                             as root on the box, over its control socket (-c FILE or --socket PATH);
                             status, events, backup, isps, customers, devices, bindings, subscriber,
                             claim, block, move, stats, token, ... (see ispmux ctl -h)
  version                    the build's version, VCS revision and Go version
  lab   up|down [flags]      build or remove the netns lab (see ispmux lab -h)
  bench forward|dhcp [flags] benchmarks in the lab (see ispmux bench -h)
  demo  [--exit] [--keep] [--lease 1m]
                             the lab demo: DHCP subscribers get leases from their ISPs through ispmux
                             (--keep keeps its directory: ispmux's config, log and state; --lease:
                             the lease time the ISPs grant, default 1m)

Every command takes -h (or --help).
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, stdin, stdout, stderr)
	// -h printed the help: no failure (lab, bench and demo print their
	// own and return flag.ErrHelp).
	if errors.Is(err, errHelped) || errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{msg: "no command", usage: usage}
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "compact":
		return cmdCompact(args[1:], stdout)
	case "ctl":
		return cmdCtl(ctx, args[1:], stdin, stdout, stderr)
	case "version":
		return cmdVersion(args[1:], stdout)
	case "lab":
		return lab.Main(ctx, args[1:], stdout)
	case "bench":
		return bench.Main(ctx, args[1:], stdout, stderr)
	case "demo":
		return demo.Main(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError{msg: fmt.Sprintf("unknown command %q", args[0]), usage: usage}
}

// configCommand parses the flags of run and check (-c, anywhere among
// args), printing their help on -h (errHelped).
func configCommand(name, summary string, args []string, stdout io.Writer) (string, error) {
	fs := newFlagSet(name)
	path := fs.String("c", defaultConfig, "configuration `FILE`")
	h := &help{name: "ispmux " + name, args: "[-c FILE]", summary: summary, flags: fs}
	rest, err := parseArgs(fs, args)
	if err != nil {
		return "", h.parseError(err, stdout)
	}
	if len(rest) > 0 {
		return "", h.usage("unexpected argument(s) %q (usage: ispmux %s -c FILE)", rest, name)
	}
	return *path, nil
}

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	path, err := configCommand("check", "Validate a configuration file and the files it names (token files, TLS certificates\n"+
		"and keys, webhook secrets and CAs) as run reads them, and that run can write in (or create)\n"+
		"its state directory, and print a summary of it; errors name\n"+
		"file:line: key. A file check may not read is a warning: run check as the user ispmux runs as;\n"+
		"so is an interface this host does not have, or a listen address that is not its own (the file\n"+
		"may be for another host).", args, stdout)
	if err != nil {
		return err
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	cfg, err := configs.Parse(path, src)
	if err != nil {
		return err
	}
	var errs configs.Errors
	unchecked := 0
	for _, p := range appliance.CheckFiles(cfg) {
		if p.Unchecked {
			unchecked++
			fmt.Fprintln(stderr, configs.ErrorAt(path, src, p.Key, fmt.Sprintf("warning: could not be checked: %v (run check as the user ispmux runs as)", p.Err)))
			continue
		}
		errs = append(errs, configs.ErrorAt(path, src, p.Key, p.Err.Error()))
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *configs.Error) int { return cmp.Compare(a.Line, b.Line) })
		return errs
	}
	// A warning, not an error: a file may be checked on another box
	// than the one it is for. run refuses to start without them.
	missing := appliance.MissingInterfaces(cfg)
	for _, p := range missing {
		fmt.Fprintln(stderr, configs.ErrorAt(path, src, p.Key, fmt.Sprintf("warning: %v (run needs it; ignore this if the file is for another host)", p.Err)))
	}
	// So is a listen address this host does not have: looked up, not
	// bound (a running ispmux holds the port).
	notLocal := appliance.ListenNotLocal(cfg)
	for _, p := range notLocal {
		fmt.Fprintln(stderr, configs.ErrorAt(path, src, p.Key, fmt.Sprintf("warning: %v (run refuses it; ignore this if the file is for another host)", p.Err)))
	}
	if w := appliance.StateDirSpace(cfg); w != "" {
		fmt.Fprintln(stderr, configs.ErrorAt(path, src, "appliance.state_dir", "warning: "+w))
	}
	var but []string
	if unchecked > 0 {
		but = append(but, fmt.Sprintf("%d file(s) it names could not be checked", unchecked))
	}
	if len(missing) > 0 {
		but = append(but, fmt.Sprintf("%d interface(s) it names are not on this host", len(missing)))
	}
	if len(notLocal) > 0 {
		but = append(but, fmt.Sprintf("%d listen address(es) are not this host's", len(notLocal)))
	}
	if len(but) > 0 {
		fmt.Fprintf(stdout, "%s: ok, but %s (see the warnings)\n%s", path, strings.Join(but, " and "), cfg.Summary())
		return nil
	}
	fmt.Fprintf(stdout, "%s: ok\n%s", path, cfg.Summary())
	return nil
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	path, logFormat, err := runCommand("Run the appliance in the foreground. SIGINT/SIGTERM stop it cleanly; SIGHUP re-reads\n"+
		"the [[subscriber]] entries, the API's token files, the TLS certificates (API, metrics,\n"+
		"portal), the webhook settings, log_level and [dhcp]; other sections need a restart.", args, stdout)
	if err != nil {
		return err
	}
	// Validation runs before any interface is touched.
	cfg, err := configs.Load(path)
	if err != nil {
		return err
	}
	// An interface the file names that this host lacks (Start would only
	// say "Link not found"), a listen address it does not have (Start:
	// "bind: cannot assign requested address"), and the files it names as check reads them
	// (a certificate that does not load stopped ispmux only once its
	// ports were open, XDP attached: a review), by their keys.
	problems := append(appliance.MissingInterfaces(cfg), appliance.ListenNotLocal(cfg)...)
	for _, p := range appliance.CheckFiles(cfg) {
		if !p.Unchecked { // a permission error is left to Start, which reads them as this user too
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		src, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		var errs configs.Errors
		for _, p := range problems {
			errs = append(errs, configs.ErrorAt(path, src, p.Key, p.Err.Error()))
		}
		slices.SortStableFunc(errs, func(a, b *configs.Error) int { return cmp.Compare(a.Line, b.Line) })
		return errs
	}
	if err := checkCapabilities(cfg); err != nil {
		return err
	}
	// The log is queued and written by a goroutine of its own
	// (internal/asynclog): a reader that falls behind (journald) costs
	// dropped lines, counted and reported, never a stalled DHCP path.
	lw := asynclog.New(stderr, asynclog.DefaultSize, func(n uint64) []byte {
		var b bytes.Buffer
		slog.New(logHandler(logFormat, &b, slog.LevelWarn)).Warn("log lines dropped: the log's reader fell behind", "lines", n)
		return b.Bytes()
	})
	defer lw.Close(2 * time.Second)
	// The level is a SIGHUP's to change (turning debug on while a
	// subscriber is on the phone, a trial's operator asked).
	var level slog.LevelVar
	level.Set(logLevel(cfg.Appliance.LogLevel))
	log := slog.New(logHandler(logFormat, lw, &level))
	// GOMAXPROCS is Go's own: one P per CPU ispmux may run on (see
	// docs/DEPLOY.md, "IRQs, CPUs and GOMAXPROCS"). The DHCP path's waits
	// hold no P: the workers' idle wait and the binding journal's
	// fdatasync (through io_uring) are waited for in the netpoller. The
	// long CPU work it meets most yields the P: a worker under load every
	// 2048 frames, a background checkpoint every 64 records. Ps beyond
	// the CPUs cost ~25 % more CPU per DHCP exchange on one CPU (the
	// scheduler wakes an idle P's thread at every goroutine hand-off);
	// what they buy is the kernel time-slicing work that does not yield
	// (an argon2id hash, a reload at 1M subscribers, bbolt's commits), and
	// a thread to read the netpoller while a worker is saturated.
	// The build first: which ispmux a log is of (a trial found the
	// version in ispmux version and the metrics only).
	bi, _ := debug.ReadBuildInfo()
	log.Info("starting", "version", versionLine(bi), "config", path)
	log.Info("scheduler", "gomaxprocs", runtime.GOMAXPROCS(0), "queues", cfg.Datapath.Queues)
	// For performance work in the lab (the benchmarks pass their
	// environment to ispmux): ISPMUX_CPUPROFILE=FILE profiles the whole
	// run; ISPMUX_TRACE=FILE writes a runtime/trace of it (where goroutines
	// waited, and for what: go tool trace -pprof=sched FILE).
	for _, p := range []struct {
		env, what string
		start     func(io.Writer) error
		stop      func()
	}{
		{"ISPMUX_CPUPROFILE", "cpu profile", pprof.StartCPUProfile, pprof.StopCPUProfile},
		{"ISPMUX_TRACE", "trace", trace.Start, trace.Stop},
	} {
		path := os.Getenv(p.env)
		if path == "" {
			continue
		}
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("%s: %w", p.what, err)
		}
		defer f.Close()
		if err := p.start(f); err != nil {
			return fmt.Errorf("%s: %w", p.what, err)
		}
		defer p.stop()
	}
	// Under systemd (Type=notify): READY=1 once forwarding, the
	// watchdog, reloads and the stop (appliance/watchdog.go). A start
	// that takes long (a store migrated at a million subscribers) asks
	// the manager for more time while it runs.
	notify, err := sdnotify.FromEnv()
	if err != nil {
		// NOTIFY_SOCKET unusable: nothing is sent; WATCHDOG_USEC
		// unusable: all but the watchdog's pings are.
		log.Error("service manager notifications: the environment systemd gave is not usable", "err", err,
			"notifications", notify.Enabled(), "watchdog", notify.Watchdog() > 0)
	}
	a, err := startNotifying(ctx, cfg, log, notify)
	if err != nil {
		_ = notify.Send("STATUS=start failed: " + err.Error())
		return err
	}
	a.SetNotifier(notify)
	// SIGHUP, and `ispmux ctl reload` (the control socket's POST /reload,
	// answered once it is done), re-read the file and apply its
	// subscriber entries; a file with errors is refused and the running
	// configuration stays. One at a time.
	var reloadMu sync.Mutex
	reload := func() {
		reloadMu.Lock()
		defer reloadMu.Unlock()
		a.NotifyReloading()
		defer a.NotifyReloaded()
		next, err := configs.Load(path)
		if err != nil {
			log.Error("reload refused: the configuration has errors; the running one stays", "err", err)
			a.NoteReloadRefused(err)
			return
		}
		if err := a.Reload(next); err != nil {
			// As ctl status and the alerts say: a reload applied
			// in part is not a refused one.
			msg := "reload refused: the running configuration stays"
			if appliance.AppliedInPart(err) {
				msg = "reload applied in part: what the error names stays as it was, the rest of the file applied"
			}
			log.Error(msg, "err", err)
			a.NoteReloadWhere(logFileProblems(log, path, next))
		}
		if l := logLevel(next.Appliance.LogLevel); l != level.Level() {
			level.Set(l)
			log.Warn("log level changed", "log_level", next.Appliance.LogLevel)
		}
	}
	a.SetReloader(reload)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			reload()
		}
	}()
	return a.Run(ctx)
}

// startExtend is how often a start under systemd asks for more time,
// and how much: a start lives while it asks. startExtendMax is when it
// stops asking: a start that long is taken for hung (the longest
// measured, a store migrated at 2M events, took 17 s), and systemd's
// TimeoutStartSec= ends it; the next start resumes an interrupted
// migration where it stopped.
const (
	startExtend    = 10 * time.Second
	startExtendMax = 15 * time.Minute
)

// startNotifying is appliance.Start, telling the service manager n that
// ispmux is starting and asking it for more time every startExtend while
// the start runs (EXTEND_TIMEOUT_USEC): a start that is long (a store
// migrated at a million subscribers) is not killed by TimeoutStartSec=;
// one that hangs is, startExtendMax after it began (Type=simple had no
// start timeout at all). The watchdog begins once forwarding.
func startNotifying(ctx context.Context, cfg *configs.Config, log *slog.Logger, n *sdnotify.Notifier) (*appliance.Appliance, error) {
	if !n.Enabled() {
		return appliance.Start(ctx, cfg, log)
	}
	extend := func() {
		_ = n.Send("EXTEND_TIMEOUT_USEC="+strconv.FormatInt((3*startExtend).Microseconds(), 10), "STATUS=starting")
	}
	extend()
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(startExtend)
		defer t.Stop()
		until := time.Now().Add(startExtendMax)
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if now.After(until) {
					_ = n.Send("STATUS=starting for over " + startExtendMax.String() + ": no more time asked")
					return
				}
				extend()
			}
		}
	}()
	return appliance.Start(ctx, cfg, log)
}

// logFileProblems logs, after a reload that failed, the problems of the
// files cfg names (token files, TLS, webhook secrets and CAs) at their
// file:line: key, as check names them: the reload's own error says what
// was not applied, this says where to fix it. It returns each one's
// "file:line: key", which ctl status shows after the reload's error.
func logFileProblems(log *slog.Logger, path string, cfg *configs.Config) []string {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var where []string
	for _, p := range appliance.CheckFiles(cfg) {
		e := configs.ErrorAt(path, src, p.Key, p.Err.Error())
		log.Error("reload: a file the configuration names", "at", e.Error())
		where = append(where, e.Where())
	}
	return where
}

func logLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
