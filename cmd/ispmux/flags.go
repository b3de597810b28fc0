package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ispmux/ispmux/api/client"
)

// usageError is a command line the command cannot run: exit status 2,
// its message on one line and then the command's short usage.
type usageError struct {
	msg   string
	usage string // printed after msg ("" = none)
}

func (u usageError) Error() string { return u.msg }

// errHelped: -h printed the help (to stdout); the command succeeded.
var errHelped = errors.New("help shown")

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// hinted is an error with what to do about it, a line report prints
// after the error.
type hinted struct {
	error
	hint string
}

func (h hinted) Unwrap() error { return h.error }

// report prints err for a person: a usage error with the usage after
// it, an API problem with its title and detail, then a hint (hinted).
func report(w io.Writer, err error) {
	reportError(w, err)
	var h hinted
	if errors.As(err, &h) {
		fmt.Fprintln(w, "  "+h.hint)
	}
}

// reportError prints err (report), without its hint.
func reportError(w io.Writer, err error) {
	var u usageError
	if errors.As(err, &u) {
		if u.msg != "" {
			fmt.Fprintln(w, "ispmux:", u.msg)
		}
		if u.usage != "" {
			fmt.Fprint(w, strings.TrimRight(u.usage, "\n")+"\n")
		}
		return
	}
	var p *client.Error
	if errors.As(err, &p) {
		fmt.Fprintln(w, "ispmux:", problemLine(p))
		switch {
		case len(p.Devices) > 0:
			fmt.Fprintf(w, "  the customer's devices: %s; detach one first (device-del), or raise the customer's limit (customer-set --device-limit N)\n", strings.Join(p.Devices, ", "))
		case p.RetryAfter > 0:
			fmt.Fprintf(w, "  retry after %s\n", p.RetryAfter)
		}
		return
	}
	fmt.Fprintln(w, "ispmux:", err)
}

// problemLine is one line for an API problem: title, detail, status and
// request id.
func problemLine(p *client.Error) string {
	var b strings.Builder
	b.WriteString(p.Title)
	if p.Title == "" {
		b.WriteString(p.Slug())
	}
	if d := problemDetail(p); d != "" {
		b.WriteString(": " + d)
	}
	fmt.Fprintf(&b, " (HTTP %d", p.Status)
	if p.RequestID != "" {
		b.WriteString(", request " + p.RequestID)
	}
	b.WriteString(")")
	return b.String()
}

// problemDetail is a problem's detail without what repeats its title: a
// detail is the service's error, whose sentinels come first ("not found:
// customer c-1" under "Not found"; "conflict: device registered with
// another provider: device ..." under "Device registered with another
// provider"), so its leading "WORDS: " are dropped while they are the
// title, the status's words or the problem type's. "" when nothing else
// is left.
func problemDetail(p *client.Error) string {
	echoes := []string{p.Title, http.StatusText(p.Status), strings.ReplaceAll(p.Slug(), "-", " ")}
	d := strings.TrimSpace(p.Detail)
	for {
		head, rest, ok := strings.Cut(d, ":")
		if !ok {
			break
		}
		if !slices.ContainsFunc(echoes, func(e string) bool { return e != "" && strings.EqualFold(head, e) }) {
			break
		}
		d = strings.TrimSpace(rest)
	}
	if slices.ContainsFunc(echoes, func(e string) bool { return strings.EqualFold(d, e) }) {
		return ""
	}
	return d
}

// newFlagSet returns a flag set whose errors are returned, never printed
// (help and usage errors are printed by help and report).
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseArgs parses fs's flags wherever they are among args (before,
// between or after the positional arguments; everything after "--" is
// positional) and returns the positional arguments in order.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// help is a command's help text: its synopsis, what it does, its flags
// and (ctl) the flags every ctl command takes and its subcommands.
type help struct {
	name     string // "ispmux ctl customers"
	args     string // "ISP [--after C] [--limit N]"
	summary  string
	commands string        // a list of subcommands ("" = none)
	flags    *flag.FlagSet // the command's own flags (nil = none)
	global   *flag.FlagSet // shared flags, listed after (nil = none)
	footer   string
}

func (h *help) synopsis() string { return strings.TrimSpace(h.name + " " + h.args) }

// print writes the whole help.
func (h *help) print(w io.Writer) {
	fmt.Fprintf(w, "usage: %s\n", h.synopsis())
	if h.summary != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(h.summary, "\n"))
	}
	if h.commands != "" {
		fmt.Fprintf(w, "\ncommands:\n%s", h.commands)
	}
	fmt.Fprint(w, "\nflags:\n")
	printFlags(w, h.flags, true)
	if h.global != nil {
		fmt.Fprint(w, "\nconnection and output flags (every ctl command):\n")
		printFlags(w, h.global, false)
	}
	if h.footer != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(h.footer, "\n"))
	}
}

// short is the usage printed after a usage error.
func (h *help) short() string {
	return fmt.Sprintf("usage: %s\n(%s -h for help)", h.synopsis(), h.name)
}

// usage is a usage error of this command: msg, then the short usage.
func (h *help) usage(format string, args ...any) error {
	return usageError{msg: strings.TrimPrefix(h.name, "ispmux ") + ": " + fmt.Sprintf(format, args...), usage: h.short()}
}

// parseError turns a flag parse error into errHelped (after printing the
// help to stdout, for -h) or a usage error.
func (h *help) parseError(err error, stdout io.Writer) error {
	if errors.Is(err, flag.ErrHelp) {
		h.print(stdout)
		return errHelped
	}
	return h.usage("%v", err)
}

// flagName is how help spells a flag: -c, --limit.
func flagName(f *flag.Flag) string {
	if len(f.Name) == 1 {
		return "-" + f.Name
	}
	return "--" + f.Name
}

// printFlags lists fs's flags, aligned: "--name VALUE  usage (default
// D)"; withHelp adds -h.
func printFlags(w io.Writer, fs *flag.FlagSet, withHelp bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	n := 0
	if fs != nil {
		fs.VisitAll(func(f *flag.Flag) {
			arg, use := flag.UnquoteUsage(f)
			if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); isBool {
				arg = ""
			}
			name := flagName(f)
			if arg != "" {
				name += " " + arg
			}
			if d := f.DefValue; d != "" && d != "0" && d != "false" && d != "0s" {
				use += fmt.Sprintf(" (default %s)", d)
			}
			fmt.Fprintf(tw, "  %s\t%s\n", name, use)
			n++
		})
	}
	if withHelp {
		fmt.Fprintf(tw, "  %s\t%s\n", "-h, --help", "show this help and exit")
		n++
	}
	if n == 0 {
		fmt.Fprintln(tw, "  (none)")
	}
	tw.Flush()
}

// timeString formats a time for tables: UTC, to the second, marked Z
// ("-" when zero). UTC as ctl status, the API and the JSON logs give it:
// one clock in every view (local time without a zone read as another
// hour beside status's).
func timeString(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// orDash is s, or "-" when s is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runCommand parses run's flags: -c FILE (as configCommand) and
// --log-format text|json (the log on stderr: slog's key=value lines, or
// one JSON object a line for a collector).
func runCommand(summary string, args []string, stdout io.Writer) (path, logFormat string, err error) {
	fs := newFlagSet("run")
	p := fs.String("c", defaultConfig, "configuration `FILE`")
	f := fs.String("log-format", "text", "log `FORMAT` on stderr: text (key=value lines) or json (one object a line)")
	h := &help{name: "ispmux run", args: "[-c FILE] [--log-format text|json]", summary: summary, flags: fs}
	rest, err := parseArgs(fs, args)
	if err != nil {
		return "", "", h.parseError(err, stdout)
	}
	if len(rest) > 0 {
		return "", "", h.usage("unexpected argument(s) %q (usage: ispmux run -c FILE)", rest)
	}
	if *f != "text" && *f != "json" {
		return "", "", h.usage("--log-format %q: want text or json", *f)
	}
	return *p, *f, nil
}

// logHandler is the log's handler for --log-format.
func logHandler(format string, w io.Writer, level slog.Leveler) slog.Handler {
	o := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.NewJSONHandler(w, o)
	}
	return slog.NewTextHandler(w, o)
}
