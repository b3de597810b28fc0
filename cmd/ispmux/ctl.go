package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/ispmux/ispmux/api/client"
	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/internal/shellquote"
)

// tokenEnv is the environment variable ctl reads the API token from.
const tokenEnv = "ISPMUX_TOKEN"

// ctlGlobal are the flags every ctl command takes: where the appliance
// is (the API, or its control socket) and how to print.
type ctlGlobal struct {
	config    string
	socket    string
	apiURL    string
	token     string
	tokenFile string
	ca        string
	insecure  bool
	json      bool
}

func (g *ctlGlobal) register(fs *flag.FlagSet) {
	fs.StringVar(&g.config, "c", defaultConfig, "configuration `FILE`: the control socket is its state_dir/"+appliance.SocketName)
	fs.StringVar(&g.socket, "socket", "", "the control socket's `PATH` (root on the box; needs no config, acts as the operator)")
	fs.StringVar(&g.apiURL, "api", "", "the API's base `URL` (https://host:port) instead of the control socket")
	fs.StringVar(&g.tokenFile, "token-file", "", "`FILE` holding the API token (else $"+tokenEnv+")")
	fs.StringVar(&g.token, "token", "", "the API `TOKEN` (other local users see it in ps: prefer $"+tokenEnv+" or --token-file)")
	fs.StringVar(&g.ca, "ca", "", "PEM `FILE` of the CA (or self-signed certificate) of the API's certificate")
	fs.BoolVar(&g.insecure, "insecure", false, "skip the API's certificate checks (loopback addresses only)")
	fs.BoolVar(&g.json, "json", false, "print the API's JSON (one object; NDJSON when streaming) instead of a table")
}

// ctlOpts are the commands' own flags (each command registers its own).
type ctlOpts struct {
	after         string
	limit         int
	passwordStdin bool
	immediate     bool
	passwordHash  string
	deviceLimit   int
	suspended     bool
	status        string
	customer      string
	access        string
	anyAccess     bool
	pinBound      bool
	replace       string
	isp           string
	requestID     string
	mac           string // ctl events --mac
	errorsOnly    bool   // ctl import, device-import --errors
	follow        bool
	file          string
	force         bool
}

// ctlCommand is one ctl subcommand.
type ctlCommand struct {
	name    string
	args    string // positional arguments and own flags, for the synopsis
	short   string // one line, for ctl's list
	summary string
	// min and max positional arguments.
	min, max int
	flags    func(fs *flag.FlagSet, o *ctlOpts)
	run      func(e *ctlEnv, args []string) error
	// where: what the command talks to.
	where ctlWhere
	// operator: the command is the operator's alone (authHint).
	operator bool
}

type ctlWhere int

const (
	whereAny    ctlWhere = iota // the API or the control socket
	whereSocket                 // the control socket only (status, reload, backup)
	whereNone                   // nothing (token)
)

// listArgs is the synopsis of listFlags, the paged lists' flags.
const listArgs = "[--after CURSOR] [--limit N]"

func listFlags(fs *flag.FlagSet, o *ctlOpts) {
	fs.StringVar(&o.after, "after", "", "start after `CURSOR` (the next page's cursor a list prints)")
	fs.IntVar(&o.limit, "limit", 0, "at most `N` items (1..1000; default 100)")
}

// importFlags are the flags of import and device-import.
func importFlags(fs *flag.FlagSet, o *ctlOpts) {
	fs.BoolVar(&o.errorsOnly, "errors", false, "print the lines that failed only (the counts come at the end either way)")
}

// ctlCommands is the ctl command table: dispatch, help and tests read it.
var ctlCommands = []*ctlCommand{
	{name: "status", short: "counters, next hops, bindings, DHCP counters (control socket)", summary: "The appliance's counters per port (drops by reason), next hops, bindings, DHCP counters\n" +
		"and messages to ISPs recorded and not yet sent (pending intents). Control socket only.",
		run: ctlStatus, where: whereSocket},
	{name: "events", short: "the newest events, those after AFTER-SEQ, or --follow them live", args: "[--isp ISP] [--request-id ID] [--mac MAC] [--follow] [--limit N] [AFTER-SEQ]", max: 1,
		summary: "Subscriber and tenant events (bound, rejected, expired, customer-created, claimed, moved, ...).\n" +
			"Without AFTER-SEQ the newest 100; with it, up to 1000 after that sequence (0: from the oldest).\n" +
			"--follow streams them live (from after AFTER-SEQ if given), resuming without gap after a cut,\n" +
			"until interrupted. --request-id ID: the events of the API request ID only (the request id an\n" +
			"API error quotes, e.g. an ISP's refused attach: its attach-refused event), looked for in the\n" +
			"whole log; --mac MAC: one device's events, read by MAC however far back in the log they are\n" +
			"(the other devices' are not read; `ctl subscriber` shows its newest 20). --mac with --request-id\n" +
			"reads every event of the device the log holds to keep the request's; --mac with --follow reads\n" +
			"the stream of every event to keep the device's. With --isp, SEQ and AFTER-SEQ are that ISP's\n" +
			"own numbers (1, 2, 3, ... for its events alone: what its API reads, stream and webhooks show);\n" +
			"without, the box's (the operator's --json has both: seq and isp_seq).",
		flags: func(fs *flag.FlagSet, o *ctlOpts) {
			fs.StringVar(&o.isp, "isp", "", "one `ISP`'s events only, in its own numbering (needed with an ISP's token)")
			fs.StringVar(&o.requestID, "request-id", "", "the events of the API request `ID` only (REQUEST in the table)")
			fs.StringVar(&o.mac, "mac", "", "the events of the device `MAC` only, read by MAC (--follow: the stream, filtered)")
			fs.BoolVar(&o.follow, "follow", false, "stream events live (Server-Sent Events) until interrupted")
			fs.IntVar(&o.limit, "limit", 0, "at most `N` events (1..1000)")
		},
		run: withISPHint(ctlEvents)},
	{name: "reload", short: "re-read the configuration file, as SIGHUP does, and say what it did (control socket)",
		summary: "Have the running appliance re-read its configuration file, as SIGHUP does, and wait for it:\n" +
			"prints the outcome (applied, APPLIED IN PART or REFUSED with the errors at FILE:LINE: KEY) and what\n" +
			"only a restart applies; exits 1 unless the file was applied whole (systemctl reload runs it, so a\n" +
			"refused reload fails there too). Control socket only.",
		run: ctlReload, where: whereSocket},
	{name: "backup", short: "a consistent copy of the running store (control socket)", args: "OUT [--force]", min: 1, max: 1,
		summary: "Write a consistent copy of the running appliance's store (state_dir/ispmux.db) to OUT,\n" +
			"checked against the size and SHA-256 the appliance sent. An existing OUT is refused unless\n" +
			"--force (an older copy is not replaced by mistake). Control socket only.",
		flags: func(fs *flag.FlagSet, o *ctlOpts) {
			fs.BoolVar(&o.force, "force", false, "replace OUT if it exists (else refused)")
		},
		run: ctlBackup, where: whereSocket},
	{name: "isps", short: "the ISPs with their counts", summary: "The ISPs with their customer, device and binding counts (an ISP's token: its own).",
		run: ctlISPs},
	{name: "customers", short: "one page of an ISP's customers", args: "ISP " + listArgs, min: 1, max: 1,
		summary: "One page of an ISP's customers, in customer ID order.",
		flags:   listFlags, run: ctlCustomers},
	{name: "customer", short: "one customer", args: "ISP ID", min: 2, max: 2, summary: "One customer.", run: ctlCustomer},
	{name: "customer-add", short: "create a customer (password from stdin)", args: "ISP ID [--password-stdin | --password-hash HASH] [--device-limit N] [--suspended]", min: 2, max: 2,
		summary: "Create a customer. Its password is read from stdin (--password-stdin: the first line; never an\n" +
			"argument), or given as an argon2id/bcrypt PHC hash; with neither it cannot claim (its devices\n" +
			"are attached with device-add).",
		flags: func(fs *flag.FlagSet, o *ctlOpts) {
			fs.BoolVar(&o.passwordStdin, "password-stdin", false, "read the password from stdin (prompted, not echoed, on a terminal)")
			fs.StringVar(&o.passwordHash, "password-hash", "", "the password as an argon2id or bcrypt PHC `HASH`")
			fs.IntVar(&o.deviceLimit, "device-limit", 0, "at most `N` devices (default 1)")
			fs.BoolVar(&o.suspended, "suspended", false, "create it suspended")
		},
		run: ctlCustomerAdd},
	{name: "customer-set", short: "suspend/activate a customer, change its device limit or password", args: "ISP ID [--status active|suspended] [--device-limit N] [--password-stdin]", min: 2, max: 2,
		summary: "Change a customer. Suspending ends its live bindings (RELEASE to the ISP); its devices then\n" +
			"get a NAK.",
		flags: func(fs *flag.FlagSet, o *ctlOpts) {
			fs.StringVar(&o.status, "status", "", "`STATUS`: active or suspended")
			fs.IntVar(&o.deviceLimit, "device-limit", 0, "at most `N` devices")
			fs.BoolVar(&o.passwordStdin, "password-stdin", false, "set a new password, read from stdin (prompted, not echoed, on a terminal)")
		},
		run: ctlCustomerSet},
	{name: "customer-del", short: "delete a customer (its devices are detached)", args: "ISP ID", min: 2, max: 2,
		summary: "Delete a customer: its devices' bindings end and they are detached.", run: ctlCustomerDel},
	{name: "import", short: "bulk import NDJSON customers, one result per line", args: "ISP FILE.ndjson [--errors]", min: 2, max: 2,
		summary: "Bulk import (upsert) of NDJSON customers, one {\"customer_id\",\"password\"|\"password_hash\",\n" +
			"\"status\",\"device_limit\"} per line (FILE \"-\": stdin). Prints each line's result; exits 1 if\n" +
			"any line failed. Reruns are safe: an identical line is unchanged. --errors: the failed lines only.",
		flags: importFlags,
		run:   ctlImport},
	{name: "devices", short: "one page of devices (of one ISP, or all; --customer: that customer ID's, at every ISP without ISP)", args: "[ISP] [--customer ID] " + listArgs, max: 1,
		summary: "One page of devices (subscriber MACs attached to customers): of one ISP, or of every ISP\n" +
			"(operator).",
		flags: func(fs *flag.FlagSet, o *ctlOpts) {
			fs.StringVar(&o.customer, "customer", "", "one customer's devices (`ID`; without ISP: that customer ID at every ISP)")
			listFlags(fs, o)
		},
		run: withISPArgHint(ctlDevices)},
	{name: "device-add", short: "attach a MAC to one of the ISP's customers", args: "ISP MAC CUSTOMER [--access NAME]", min: 3, max: 3,
		summary: "Attach a MAC to one of the ISP's customers (it must be unattached or already this ISP's).",
		flags: func(fs *flag.FlagSet, o *ctlOpts) {
			fs.StringVar(&o.access, "access", "", "pin it to the access entry `NAME`")
		},
		run: ctlDeviceAdd},
	{name: "device-import", short: "bulk attach NDJSON devices, one result per line", args: "ISP FILE.ndjson [--errors]", min: 2, max: 2,
		summary: "Bulk attach of NDJSON devices, one {\"mac\",\"customer_id\",\"access\"} per line (FILE \"-\": stdin),\n" +
			"each as device-add takes it, many to a store transaction. Prints each line's result (attached,\n" +
			"moved from another customer of the ISP, unchanged, error); exits 1 if any line failed. Reruns\n" +
			"are safe. --errors: the failed lines only.",
		flags: importFlags,
		run:   ctlDeviceImport},
	{name: "device-set", short: "pin a device to an access, or clear its pin", args: "ISP MAC (--access NAME | --bound | --any-access)", min: 2, max: 2,
		summary: "Pin a device to an access entry (its DHCP on any other is refused: the full protection against\n" +
			"its MAC forged elsewhere; a binding it holds on another access ends, RELEASE to the ISP), to the\n" +
			"access it is bound on now (--bound), or clear its pin (--any-access). Devices of the\n" +
			"configuration are read-only.",
		flags: func(fs *flag.FlagSet, o *ctlOpts) {
			fs.StringVar(&o.access, "access", "", "pin it to the access entry `NAME`")
			fs.BoolVar(&o.pinBound, "bound", false, "pin it to the access it holds its DHCP binding on now")
			fs.BoolVar(&o.anyAccess, "any-access", false, "clear its pin: served on any access")
		},
		run: ctlDeviceSet},
	{name: "device-del", short: "detach a device", args: "ISP MAC", min: 2, max: 2,
		summary: "Detach a device: its binding ends (RELEASE to the ISP).", run: ctlDeviceDel},
	{name: "claim", short: "attach a MAC with the customer's password", args: "ISP CUSTOMER MAC [--replace MAC] [--password-stdin] [--access NAME]", min: 3, max: 3,
		summary: "Attach MAC to a customer with the customer's password (a claim or operator token): read\n" +
			"from stdin with --password-stdin, else prompted on the terminal, never echoed. At the device\n" +
			"limit, the answer names the customer's devices: claim again with --replace one of them.",
		flags: func(fs *flag.FlagSet, o *ctlOpts) {
			fs.StringVar(&o.replace, "replace", "", "detach the customer's device `MAC` in the same step")
			fs.BoolVar(&o.passwordStdin, "password-stdin", false, "read the password from stdin (its first line)")
			fs.StringVar(&o.access, "access", "", "pin the device to the access entry `NAME`")
		},
		run: ctlClaim},
	{name: "block", short: "block a MAC (operator)", args: "MAC", min: 1, max: 1,
		summary: "Block a MAC (operator): its binding ends and it gets no DHCP answer. A MAC no ISP has attached\n" +
			"is blocked too: a device of no ISP (listed by devices), out of the walled garden, that no ISP or\n" +
			"claim may attach; unblock removes it.", run: ctlBlock, operator: true},
	{name: "purge-isp", short: "remove every customer and device of an ISP no longer configured (operator)", args: "ISP", min: 1, max: 1,
		summary: "Remove every customer and device of ISP, which the configuration no longer has (removed, or\n" +
			"renamed; the start's log names it): until then its devices' MACs stay taken. A configured ISP is\n" +
			"refused. A device the operator blocked stays blocked. 512 customers a transaction, each with one\n" +
			"customer-deleted event counting them (the other ISPs' events stay in the log): a purge cut short\n" +
			"(the connection closed) stops there, and a second one finishes it.",
		run: ctlPurgeISP, operator: true},
	{name: "unblock", short: "unblock a MAC (operator)", args: "MAC", min: 1, max: 1, summary: "Unblock a MAC (operator).", run: ctlUnblock, operator: true},
	{name: "move", short: "move a device to another customer or ISP (operator)", args: "MAC ISP CUSTOMER [--immediate]", min: 3, max: 3,
		summary: "Move a device to another customer, of any ISP (operator). Make-before-break: the old ISP keeps\n" +
			"serving it until its next renewal (at most half [dhcp] client_lease_max away), which ispmux NAKs so\n" +
			"it starts over with the new one; the old ISP then gets a RELEASE. --immediate cuts the old service at once:\n" +
			"the device is then without service until its next DHCP message (its renewal, NAKed, within half\n" +
			"client_lease_max; no FORCERENEW): for an old ISP that must stop now, not to switch faster.",
		flags: func(fs *flag.FlagSet, o *ctlOpts) {
			fs.BoolVar(&o.immediate, "immediate", false, "end the old ISP's binding now (RELEASE at once) instead of at the next renewal; the device is without service until its next DHCP message")
		},
		run: ctlMove, operator: true},
	{name: "bindings", short: "one page of DHCP bindings (of one ISP, or all)", args: "[ISP] " + listArgs, max: 1,
		summary: "One page of DHCP bindings: of one ISP, or of every ISP (operator).",
		flags:   listFlags, run: withISPArgHint(ctlBindings)},
	{name: "subscriber", short: "a MAC in one view: device, binding, recent events", args: "MAC [--isp ISP]", min: 1, max: 1,
		summary: "One subscriber in one view: its device (customer, ISP, access, source, blocked), its DHCP\n" +
			"binding and its recent events: its newest 20 of all those the log keeps (found by MAC, however\n" +
			"far back in the log).",
		flags: func(fs *flag.FlagSet, o *ctlOpts) {
			fs.StringVar(&o.isp, "isp", "", "look in this `ISP` only (needed with an ISP's token)")
		},
		run: withISPHint(ctlSubscriber)},
	{name: "webhook", short: "an ISP's webhook delivery: cursor, lag, attempts, last error", args: "ISP", min: 1, max: 1,
		summary: "An ISP's webhook delivery state: the last acknowledged event, how many are behind (lag), the\n" +
			"failing attempts, the last error and success, totals since start. An ISP sees its own only.",
		run: ctlWebhook},
	{name: "stats", short: "the box's counts (operator)", summary: "The box's counts: ISPs, customers, devices, bindings (operator).", run: ctlStats, operator: true},
	{name: "token", short: "make a new API token and its sha256: line for a token file", args: "[--file FILE [--force]]",
		summary: "Make a new API token (256 bits). Prints the token (line 1: give it to the client, once) and\n" +
			"its sha256: line (line 2: the content of a token file on the box, which then never holds the\n" +
			"token itself). With --file the sha256: line is written to FILE (mode 0600) and only the token\n" +
			"is printed. An existing FILE is refused unless --force: replacing a live token file ends its\n" +
			"token at the next SIGHUP or restart (it keeps its mode, owner and group).",
		flags: func(fs *flag.FlagSet, o *ctlOpts) {
			fs.StringVar(&o.file, "file", "", "write the sha256: line to the token `FILE` (a new file unless --force)")
			fs.BoolVar(&o.force, "force", false, "replace --file's FILE if it exists (its old token ends at the next SIGHUP)")
		},
		run: ctlToken, where: whereNone},
}

func findCtlCommand(name string) *ctlCommand {
	for _, c := range ctlCommands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// ctlHelp is ctl's own help.
func ctlHelp(global *flag.FlagSet) *help {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, c := range ctlCommands {
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace(c.name+" "+positionals(c.args)), c.short)
	}
	tw.Flush()
	return &help{
		name: "ispmux ctl", args: "COMMAND [ARGS] [flags]",
		summary: "Talk to a running appliance: over its API (--api URL and a token: --token-file FILE,\n" +
			"$" + tokenEnv + " or --token) or, as root on the box, over its control socket (--socket PATH,\n" +
			"or the state_dir of the configuration -c names), where every command acts as the operator.\n" +
			"Tables by default; --json prints the API's JSON for scripts.",
		commands: b.String(),
		global:   global,
		footer:   "Run 'ispmux ctl COMMAND -h' for a command's arguments and flags. Passwords are never\narguments: --password-stdin (or a prompt without echo).",
	}
}

// cmdCtl runs `ispmux ctl`: the connection flags, the command word
// (wherever among the flags), then the command's arguments and flags.
func cmdCtl(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	// The command word is the first positional argument; the flags
	// before it are the connection flags.
	var scratch ctlGlobal
	gfs := newFlagSet("ctl")
	scratch.register(gfs)
	ch := ctlHelp(gfs)
	if err := gfs.Parse(args); err != nil {
		return ch.parseError(err, stdout)
	}
	if gfs.NArg() == 0 {
		return ch.usage("missing the command (status, events, customers, ...)")
	}
	word := gfs.Arg(0)
	if word == "help" {
		ch.print(stdout)
		return nil
	}
	cmd := findCtlCommand(word)
	if cmd == nil {
		return ch.usage("unknown command %q", word)
	}
	i := len(args) - gfs.NArg()
	rest := append(append([]string{}, args[:i]...), args[i+1:]...)

	e := &ctlEnv{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, cmd: cmd}
	fs := newFlagSet("ctl " + cmd.name)
	if cmd.flags != nil {
		cmd.flags(fs, &e.o)
	}
	gfs2 := newFlagSet("ctl")
	e.g.register(gfs2)
	gfs2.VisitAll(func(f *flag.Flag) { fs.Var(f.Value, f.Name, f.Usage) })
	own := newFlagSet("ctl " + cmd.name)
	if cmd.flags != nil {
		var o ctlOpts
		cmd.flags(own, &o)
	}
	e.h = &help{name: "ispmux ctl " + cmd.name, args: cmd.args, summary: cmd.summary, flags: own, global: gfs2}
	pos, err := parseArgs(fs, rest)
	if err != nil {
		return e.h.parseError(err, stdout)
	}
	e.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { e.set[f.Name] = true })
	if len(pos) < cmd.min {
		return e.h.usage("missing %s", strings.Join(missingArgs(cmd.args, len(pos), cmd.min), " "))
	}
	if len(pos) > cmd.max {
		return e.h.usage("unexpected argument(s) %q", pos[cmd.max:])
	}
	if err := e.checkConnectionFlags(); err != nil {
		return err
	}
	return e.connHint(e.authHint(cmd.run(e, pos), pos))
}

// positionals is a synopsis without its flags: "ISP [--after C] ID" →
// "ISP ID".
func positionals(synopsis string) string {
	var out []string
	depth := 0 // inside a bracket or parenthesis that holds flags
	for _, w := range strings.Fields(synopsis) {
		switch {
		case depth > 0:
		case strings.HasPrefix(w, "[-"), strings.HasPrefix(w, "(-"):
		case strings.HasPrefix(w, "-"):
			continue
		default:
			out = append(out, w)
			continue
		}
		depth += strings.Count(w, "[") + strings.Count(w, "(") - strings.Count(w, "]") - strings.Count(w, ")")
	}
	return strings.Join(out, " ")
}

// missingArgs names the positional arguments from have to want of a
// synopsis ("ISP ID [--flag X]").
func missingArgs(synopsis string, have, want int) []string {
	var names []string
	for _, w := range strings.Fields(synopsis) {
		if strings.HasPrefix(w, "[") || strings.HasPrefix(w, "-") || strings.HasSuffix(w, "]") || strings.Contains(w, "|") {
			continue
		}
		names = append(names, w)
	}
	if want > len(names) {
		want = len(names)
	}
	if have > want {
		return nil
	}
	return names[have:want]
}

// ctlEnv is one ctl command's run: its flags, where it talks to, its
// output.
type ctlEnv struct {
	ctx            context.Context
	stdin          io.Reader
	stdout, stderr io.Writer
	cmd            *ctlCommand
	h              *help
	g              ctlGlobal
	o              ctlOpts
	set            map[string]bool // the flags given
	token          string          // resolved by checkConnectionFlags
}

// checkConnectionFlags checks the connection flags' combination (a
// usage error before anything is read or dialled) and resolves the token.
func (e *ctlEnv) checkConnectionFlags() error {
	g := &e.g
	if e.cmd.where == whereNone {
		for _, f := range []string{"api", "socket", "token", "token-file", "ca", "insecure"} {
			if e.set[f] {
				return e.h.usage("--%s: this command talks to no appliance", f)
			}
		}
		return nil
	}
	if e.set["api"] {
		if e.set["socket"] || e.set["c"] {
			return e.h.usage("--api and --socket (or -c) are alternatives: give one")
		}
		if e.cmd.where == whereSocket {
			return e.h.usage("only on the box, over the control socket (--socket PATH or -c FILE), not the API")
		}
		if e.set["token"] && e.set["token-file"] {
			return e.h.usage("--token and --token-file are alternatives: give one")
		}
		switch {
		case e.set["token"]:
			e.token = g.token
		case e.set["token-file"]:
			t, err := readTokenFile(g.tokenFile)
			if err != nil {
				return err
			}
			e.token = t
		default:
			e.token = strings.TrimSpace(os.Getenv(tokenEnv))
		}
		if e.token == "" {
			return e.h.usage("--api needs a token: --token-file FILE, $%s or --token", tokenEnv)
		}
		if strings.ContainsAny(e.token, " \t\r\n") {
			// The server would answer 400 malformed-authorization: say
			// where the token came from, here, without sending it.
			from := "--token"
			if !e.set["token"] {
				from = "$" + tokenEnv
			}
			return e.h.usage("the token given by %s has a blank in it: give the token alone, as ispmux ctl token printed it", from)
		}
		return nil
	}
	for _, f := range []string{"token", "token-file", "ca", "insecure"} {
		if e.set[f] {
			return e.h.usage("--%s goes with --api (the control socket needs no token)", f)
		}
	}
	if e.set["socket"] && e.set["c"] {
		return e.h.usage("--socket and -c are alternatives: give one")
	}
	return nil
}

// readTokenFile reads the token a client presents from file (one line).
func readTokenFile(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if strings.HasPrefix(t, "sha256:") {
		return "", fmt.Errorf("token file %s holds a token's SHA-256 (the box's side): --token-file wants the token itself", file)
	}
	if t == "" || strings.ContainsAny(t, " \t\n") {
		return "", fmt.Errorf("token file %s: want one line, the token", file)
	}
	return t, nil
}

// socketPath is the control socket: --socket, or the configuration's
// state_dir/ispmux.sock (the configuration must then be valid).
func (e *ctlEnv) socketPath() (string, error) {
	if e.set["socket"] {
		return e.g.socket, nil
	}
	cfg, err := configs.Load(e.g.config)
	if err != nil {
		// A file with errors still names its state_dir: ctl status is
		// where a refused reload of it shows (a docs trial could not
		// see it through -c).
		dir, derr := configs.StateDirOf(e.g.config)
		if derr != nil {
			return "", fmt.Errorf("%w\n(the control socket is found through the configuration; --socket PATH needs none)", err)
		}
		e.notice("%s has errors (ispmux check -c %s lists them); its state_dir %s is used to find the control socket", e.g.config, e.g.config, dir)
		return filepath.Join(dir, appliance.SocketName), nil
	}
	return filepath.Join(cfg.Appliance.StateDir, appliance.SocketName), nil
}

// client is the API client: over the network with --api, else over the
// control socket.
func (e *ctlEnv) client() (*client.Client, error) {
	if e.set["api"] {
		c, err := client.New(e.g.apiURL, e.token, client.Options{CAFile: e.g.ca, InsecureSkipVerify: e.g.insecure})
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				return nil, err
			}
			return nil, e.h.usage("%v", err)
		}
		return c, nil
	}
	sock, err := e.socketPath()
	if err != nil {
		return nil, err
	}
	return client.NewSocket(sock, client.Options{})
}

// again is the command line that reaches the same appliance, then words
// (for the hints printed on stderr): "ispmux ctl -c FILE WORDS...", each
// argument quoted for a POSIX shell (shellquote.Join), as it is copied and
// pasted. Over the API it names the certificate and token file given
// (--ca, --insecure, --token-file); never a --token (a secret: the command
// then asks for one, as $ISPMUX_TOKEN would give it).
func (e *ctlEnv) again(words ...string) string {
	args := []string{"ispmux", "ctl"}
	switch {
	case e.set["api"]:
		args = append(args, "--api", e.g.apiURL)
		if e.set["token-file"] {
			args = append(args, "--token-file", e.g.tokenFile)
		}
		if e.set["ca"] {
			args = append(args, "--ca", e.g.ca)
		}
		if e.set["insecure"] && e.g.insecure {
			args = append(args, "--insecure")
		}
	case e.set["socket"]:
		args = append(args, "--socket", e.g.socket)
	case e.set["c"]:
		args = append(args, "-c", e.g.config)
	}
	return shellquote.Join(append(args, words...))
}

// notice prints a hint to stderr.
func (e *ctlEnv) notice(format string, args ...any) {
	fmt.Fprintf(e.stderr, "ispmux: "+format+"\n", args...)
}
