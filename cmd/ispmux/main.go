// Command ispmux is the open-access broadband gateway: it forwards every
// subscriber's traffic to the ISP that subscriber chose.
//
//	ispmux run   -c FILE           run the appliance (headless; SIGINT/SIGTERM stop it cleanly)
//	ispmux check -c FILE           validate a configuration and exit
//	ispmux ctl   -c FILE status    print a running appliance's counters and bindings
//	ispmux ctl   -c FILE events    print the subscriber events (bound, rejected, expired, ...)
//	ispmux lab   up|down ...       build or remove the network-namespace lab
//	ispmux bench forward|dhcp ...  measure forwarding / DHCP against the kernel, dhcrelay, bare AF_XDP, Kea
//	ispmux demo                    the lab demo (what `make demo` runs)
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
  ctl   -c FILE events [N]   show the events (bound, rejected, ...) after sequence N
  lab   up|down [flags]      build or remove the netns lab (see ispmux lab -h)
  bench forward|dhcp [flags] benchmarks in the lab (see ispmux bench -h)
  demo  [--exit]             the lab demo: DHCP subscribers get leases from their ISPs through ispmux
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

func configFlag(name string, args []string, stderr io.Writer) (string, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "/etc/ispmux/ispmux.toml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return "", nil, usageError{}
	}
	return *path, fs.Args(), nil
}

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	path, _, err := configFlag("check", args, stderr)
	if err != nil {
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
	path, _, err := configFlag("run", args, stderr)
	if err != nil {
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
	return a.Run(ctx)
}

func cmdCtl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	path, rest, err := configFlag("ctl", args, stderr)
	if err != nil {
		return err
	}
	if len(rest) < 1 || (rest[0] != "status" && rest[0] != "events") {
		fmt.Fprint(stderr, "usage: ispmux ctl -c FILE status | events [AFTER-SEQ]\n")
		return usageError{}
	}
	cfg, err := configs.Load(path)
	if err != nil {
		return err
	}
	sock := filepath.Join(cfg.Appliance.StateDir, appliance.SocketName)
	var v any
	switch rest[0] {
	case "status":
		v, err = appliance.FetchStatus(ctx, sock)
	case "events":
		var after uint64
		if len(rest) > 1 {
			if after, err = strconv.ParseUint(rest[1], 10, 64); err != nil {
				return usageError{fmt.Sprintf("events: bad sequence number %q", rest[1])}
			}
		}
		v, err = appliance.FetchEvents(ctx, sock, after)
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
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
