// Command ispmux is the open-access broadband gateway: it forwards every
// subscriber's traffic to the ISP that subscriber chose.
//
//	ispmux run   -c FILE           run the appliance (headless; SIGINT/SIGTERM stop it cleanly,
//	                               SIGHUP re-reads the file's subscriber entries)
//	ispmux check -c FILE           validate a configuration and exit
//	ispmux ctl   -c FILE status    print a running appliance's counters and bindings
//	ispmux ctl   -c FILE events    print the newest subscriber events (bound, rejected, expired, ...)
//	ispmux ctl   -c FILE backup OUT write a consistent copy of a running appliance's store to OUT
//	ispmux lab   up|down ...       build or remove the network-namespace lab
//	ispmux bench forward|dhcp ...  measure forwarding / DHCP against the kernel, dhcrelay, bare AF_XDP, Kea
//	ispmux demo  [--exit] [--keep] the lab demo (what `make demo` runs)
//
// main only wires the process to run; the logic lives in the packages.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"syscall"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/bench"
	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/demo"
	"github.com/ispmux/ispmux/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var u usageError
		if !errors.As(err, &u) || u.msg != "" {
			fmt.Fprintln(os.Stderr, "ispmux:", err)
		}
		os.Exit(exitCode(err))
	}
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

const usage = `usage: ispmux <command> [flags]

commands:
  run   -c FILE              run the appliance
  check -c FILE              validate a configuration
  ctl   -c FILE status       show a running appliance's counters and bindings
  ctl   -c FILE events [N]   show the newest 100 events (bound, rejected, ...), or up to
                             1000 after sequence N (N=0: from the oldest)
  ctl   -c FILE backup OUT   write a consistent copy of the running appliance's store
                             (state_dir/ispmux.db) to OUT
  lab   up|down [flags]      build or remove the netns lab (see ispmux lab -h)
  bench forward|dhcp [flags] benchmarks in the lab (see ispmux bench -h)
  demo  [--exit] [--keep]    the lab demo: DHCP subscribers get leases from their ISPs through ispmux
                             (--keep keeps its directory: ispmux's config, log and state)
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command"}
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "ctl":
		return cmdCtl(ctx, args[1:], stdout, stderr)
	case "lab":
		return lab.Main(ctx, args[1:], stdout)
	case "bench":
		return bench.Main(ctx, args[1:], stdout, stderr)
	case "demo":
		return demo.Main(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

// configFlag parses args for command name: the -c flag, anywhere among
// them, and the positional arguments, returned in order.
func configFlag(name string, args []string, stderr io.Writer) (string, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "/etc/ispmux/ispmux.toml", "configuration file")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return "", nil, usageError{}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return *path, pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			// Everything after "--" is positional.
			return *path, append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// noArgs is the usage error for positional arguments a command does not take.
func noArgs(name string, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return usageError{fmt.Sprintf("%s: unexpected argument(s) %q (usage: ispmux %s -c FILE)", name, args, name)}
}

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	path, rest, err := configFlag("check", args, stderr)
	if err != nil {
		return err
	}
	if err := noArgs("check", rest); err != nil {
		return err
	}
	cfg, err := configs.Load(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok\n%s", path, cfg.Summary())
	return nil
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	path, rest, err := configFlag("run", args, stderr)
	if err != nil {
		return err
	}
	if err := noArgs("run", rest); err != nil {
		return err
	}
	// Validation runs before any interface is touched.
	cfg, err := configs.Load(path)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel(cfg.Appliance.LogLevel)}))
	// ISPMUX_CPUPROFILE=FILE profiles the whole run (for performance work
	// in the lab; the benchmarks pass their environment to ispmux).
	if path := os.Getenv("ISPMUX_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	a, err := appliance.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	// SIGHUP re-reads the file and applies its subscriber entries; a file
	// with errors is refused and the running configuration stays.
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
			next, err := configs.Load(path)
			if err != nil {
				log.Error("reload refused: the configuration has errors; the running one stays", "err", err)
				continue
			}
			if err := a.Reload(next); err != nil {
				log.Error("reload", "err", err)
			}
		}
	}()
	return a.Run(ctx)
}

// ctlUsage is the ctl command's synopsis.
const ctlUsage = "usage: ispmux ctl -c FILE status | events [AFTER-SEQ] | backup OUT"

// newestEvents is how many events `ctl events` shows without AFTER-SEQ.
const newestEvents = 100

func cmdCtl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	path, rest, err := configFlag("ctl", args, stderr)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return usageError{"ctl: missing status or events (or backup OUT)\n" + ctlUsage}
	}
	maxArgs := 0
	switch rest[0] {
	case "status":
	case "events":
		maxArgs = 1 // AFTER-SEQ
	case "backup":
		maxArgs = 1 // OUT
		if len(rest) < 2 {
			return usageError{"ctl backup: missing the output file\n" + ctlUsage}
		}
	default:
		return usageError{fmt.Sprintf("ctl: unknown command %q\n%s", rest[0], ctlUsage)}
	}
	if extra := rest[1:]; len(extra) > maxArgs {
		return usageError{fmt.Sprintf("ctl %s: unexpected argument(s) %q\n%s", rest[0], extra[maxArgs:], ctlUsage)}
	}
	var after uint64
	if rest[0] == "events" && len(rest) == 2 {
		if after, err = strconv.ParseUint(rest[1], 10, 64); err != nil {
			return usageError{fmt.Sprintf("ctl events: bad sequence number %q\n%s", rest[1], ctlUsage)}
		}
	}
	cfg, err := configs.Load(path)
	if err != nil {
		return err
	}
	sock := filepath.Join(cfg.Appliance.StateDir, appliance.SocketName)
	var v any
	switch {
	case rest[0] == "status":
		v, err = appliance.FetchStatus(ctx, sock)
	case rest[0] == "backup":
		v, err = appliance.Backup(ctx, sock, rest[1])
	case len(rest) == 1:
		var p *appliance.EventPage
		if p, err = appliance.FetchNewestEvents(ctx, sock, newestEvents); err == nil {
			v = p.Events
			if first, last, ok := seqRange(p.Events); ok && first > p.Oldest {
				fmt.Fprintf(stderr, "ispmux: the newest %d events (seq %d..%d); the log holds seq %d..%d: `ispmux ctl -c %s events N` shows those after seq N (0: from the oldest)\n",
					len(p.Events), first, last, p.Oldest, p.Newest, path)
			}
		}
	default:
		var p *appliance.EventPage
		if p, err = appliance.FetchEventPage(ctx, sock, after, 0); err == nil {
			v = p.Events
			if first, last, ok := seqRange(p.Events); ok && last < p.Newest {
				fmt.Fprintf(stderr, "ispmux: events seq %d..%d; the log holds up to seq %d: `ispmux ctl -c %s events %d` shows the next ones\n",
					first, last, p.Newest, path, last)
			}
		}
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// seqRange returns the first and last Seq of evs (ok false when empty).
func seqRange(evs []appliance.EventStatus) (first, last uint64, ok bool) {
	if len(evs) == 0 {
		return 0, 0, false
	}
	return evs[0].Seq, evs[len(evs)-1].Seq, true
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
