package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/ispmux/ispmux/api/client"
	"github.com/ispmux/ispmux/ctlsock"
)

func TestExtraArgumentsAreUsageErrors(t *testing.T) {
	cfg, _ := testConfig(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"check", "-c", cfg, "extra", "args"}, `check: unexpected argument(s) ["extra" "args"]`},
		{[]string{"check", "extra", "-c", cfg}, `check: unexpected argument(s) ["extra"]`},
		{[]string{"run", "-c", cfg, "now"}, `run: unexpected argument(s) ["now"]`},
		{[]string{"ctl", "-c", cfg, "status", "extra"}, `ctl status: unexpected argument(s) ["extra"]`},
		{[]string{"ctl", "-c", cfg, "events", "5", "6"}, `ctl events: unexpected argument(s) ["6"]`},
		{[]string{"ctl", "-c", cfg, "events", "five"}, `ctl events: bad sequence number "five"`},
		{[]string{"ctl", "-c", cfg, "statz"}, `ctl: unknown command "statz"`},
		{[]string{"ctl", "-c", cfg}, "ctl: missing the command"},
	} {
		_, _, err := runCmd(t, "", tt.args...)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v (exit %d), want a usage error (exit 2) containing %q", tt.args, err, exitCode(err), tt.want)
		}
	}
	// Without extra arguments check succeeds.
	if out, _, err := runCmd(t, "", "check", "-c", cfg); err != nil || !strings.Contains(out, cfg+": ok") {
		t.Errorf("check -c %s: %v %q", cfg, err, out)
	}
}

// TestCtlConfigAfterCommand: -c is read wherever it is, not only before
// the ctl command word.
func TestCtlConfigAfterCommand(t *testing.T) {
	r := newRig(t, nil)
	for _, args := range [][]string{
		{"ctl", "-c", r.cfg, "status", "--json"},
		{"ctl", "--json", "status", "-c", r.cfg},
	} {
		out, _ := r.ok("", args...)
		if !strings.Contains(out, `"uptime": "42s"`) {
			t.Errorf("%q:\n%s", args, out)
		}
	}
	for _, args := range [][]string{
		{"ctl", "events", "-c", r.cfg, "0", "--json"},
		{"ctl", "events", "0", "--json", "-c", r.cfg},
	} {
		out, _ := r.ok("", args...)
		var l client.EventList
		if err := json.Unmarshal([]byte(out), &l); err != nil || l.Items == nil {
			t.Errorf("%q: %v\n%s", args, err, out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	r := newRig(t, nil)
	api := []string{"--api", r.apiURL, "--token", r.tokens["operator"]}
	for _, tt := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"nope"}, "", `unknown command "nope"`},
		{nil, "", "no command"},
		{[]string{"ctl", "--nope", "isps"}, "", "ctl: flag provided but not defined: -nope"},
		{[]string{"ctl", "isps", "--nope"}, "", "ctl isps: flag provided but not defined: -nope"},
		{[]string{"ctl", "customers"}, "", "ctl customers: missing ISP"},
		{[]string{"ctl", "customer", "alpha"}, "", "ctl customer: missing ID"},
		{[]string{"ctl", "device-add", "alpha"}, "", "ctl device-add: missing MAC CUSTOMER"},
		{[]string{"ctl", "customers", "alpha", "beta"}, "", `ctl customers: unexpected argument(s) ["beta"]`},
		{[]string{"ctl", "customers", "alpha", "--limit", "x"}, "", `invalid value "x" for flag -limit`},
		{append([]string{"ctl", "customers", "alpha", "--limit", "5000"}, api...), "", "--limit must be 1..1000"},
		{append([]string{"ctl", "customers", "alpha", "--limit", "0"}, api...), "", "--limit must be 1..1000, got 0"},
		{append([]string{"ctl", "events", "--limit", "0"}, api...), "", "--limit must be 1..1000, got 0"},
		{[]string{"ctl", "isps", "--api", r.apiURL, "--socket", r.sock}, "", "--api and --socket (or -c) are alternatives"},
		{[]string{"ctl", "isps", "-c", r.cfg, "--socket", r.sock}, "", "--socket and -c are alternatives"},
		{[]string{"ctl", "isps", "--socket", r.sock, "--token", "x"}, "", "--token goes with --api"},
		{[]string{"ctl", "isps", "--insecure"}, "", "--insecure goes with --api"},
		{[]string{"ctl", "isps", "--api", r.apiURL}, "", "--api needs a token"},
		{[]string{"ctl", "isps", "--api", r.apiURL, "--token", "x", "--token-file", "f"}, "", "--token and --token-file are alternatives"},
		{[]string{"ctl", "isps", "--api", r.apiURL, "--token", "two words"}, "", "the token given by --token has a blank in it"},
		{[]string{"ctl", "isps", "--api", "https://192.0.2.9:8443", "--token", "x", "--insecure"}, "", "loopback only"},
		{[]string{"ctl", "isps", "--api", "http://192.0.2.9:8443", "--token", "x"}, "", "use https"},
		{append([]string{"ctl", "status"}, api...), "", "ctl status: only on the box"},
		{append([]string{"ctl", "backup", "out.db"}, api...), "", "ctl backup: only on the box"},
		{[]string{"ctl", "backup"}, "", "ctl backup: missing OUT"},
		{append([]string{"ctl", "block", "not-a-mac"}, api...), "", `ctl block: MAC: "not-a-mac" is not a MAC address`},
		{append([]string{"ctl", "claim", "alpha", "c-1", "02:00:00:00:00:01", "--replace", "x"}, api...), "", `--replace: "x" is not a MAC`},
		{append([]string{"ctl", "claim", "alpha", "c-1", "02:00:00:00:00:01"}, api...), "", "pipe it with --password-stdin"},
		{append([]string{"ctl", "customer-set", "alpha", "c-1"}, api...), "", "nothing to change"},
		{append([]string{"ctl", "customer-set", "alpha", "c-1", "--status", "gone"}, api...), "", "--status must be active or suspended"},
		{append([]string{"ctl", "customer-add", "alpha", "c-1", "--password-stdin", "--password-hash", "h"}, api...), "pw\n", "are alternatives"},
		{append([]string{"ctl", "customer-add", "alpha", "c-1", "--device-limit", "0"}, api...), "", "--device-limit must be at least 1"},
		{append([]string{"ctl", "events", "--follow", "--limit", "5"}, api...), "", "a stream has no limit"},
		{[]string{"ctl", "token", "--api", r.apiURL}, "", "this command talks to no appliance"},
		{[]string{"version", "extra"}, "", `version: unexpected argument(s) ["extra"]`},
	} {
		out, _, err := runCmd(t, tt.stdin, tt.args...)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v (exit %d), want a usage error (exit 2) containing %q", tt.args, err, exitCode(err), tt.want)
		}
		if out != "" {
			t.Errorf("%q: printed %q on stdout", tt.args, out)
		}
	}
}

// TestReport: a usage error is one line and the usage; an API problem its
// title, detail, status and request id.
func TestReport(t *testing.T) {
	_, _, err := runCmd(t, "", "ctl", "customers")
	var b bytes.Buffer
	report(&b, err)
	want := "ispmux: ctl customers: missing ISP\n" +
		"usage: ispmux ctl customers ISP [--after CURSOR] [--limit N]\n" +
		"(ispmux ctl customers -h for help)\n"
	if b.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	report(&b, &client.Error{Status: 409, Type: "urn:ispmux:problem:device-limit", Title: "Customer's device limit reached",
		Detail: "limit (1) reached", RequestID: "r-1", Limit: 1, Devices: []string{"02:00:00:00:00:01"}})
	want = "ispmux: Customer's device limit reached: limit (1) reached (HTTP 409, request r-1)\n" +
		"  the customer's devices: 02:00:00:00:00:01; detach one first (device-del), or raise the customer's limit (customer-set --device-limit N)\n"
	if b.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", b.String(), want)
	}
	if exitCode(&client.Error{Status: 404}) != 1 {
		t.Error("an API error must exit 1")
	}
}

// TestHelp: -h and --help on every command and subcommand exit 0 and
// print the usage with every flag, without a valid configuration.
func TestHelp(t *testing.T) {
	t.Chdir(t.TempDir())
	global := []string{"--api", "--token", "--token-file", "--ca", "--insecure", "--socket", "-c FILE", "--json"}
	for _, h := range []string{"-h", "--help"} {
		for _, c := range ctlCommands {
			out, errOut, err := runCmd(t, "", "ctl", c.name, h)
			if err != nil || errOut != "" {
				t.Errorf("ctl %s %s: %v %q", c.name, h, err, errOut)
				continue
			}
			if !strings.HasPrefix(out, "usage: ispmux ctl "+c.name) || !strings.Contains(out, "\nflags:\n") {
				t.Errorf("ctl %s %s:\n%s", c.name, h, out)
			}
			if c.flags != nil {
				fs := newFlagSet(c.name)
				c.flags(fs, &ctlOpts{})
				fs.VisitAll(func(f *flag.Flag) {
					if !strings.Contains(out, "  --"+f.Name) {
						t.Errorf("ctl %s %s does not list --%s:\n%s", c.name, h, f.Name, out)
					}
					if !strings.Contains(c.args, "--"+f.Name) {
						t.Errorf("ctl %s: synopsis %q lacks --%s", c.name, c.args, f.Name)
					}
				})
			}
			for _, g := range global {
				if !strings.Contains(out, "  "+g) {
					t.Errorf("ctl %s %s does not list %s", c.name, h, g)
				}
			}
			// -h wins wherever it is.
			if _, _, err := runCmd(t, "", "ctl", h, c.name); err != nil {
				t.Errorf("ctl %s %s: %v", h, c.name, err)
			}
		}
		out, _, err := runCmd(t, "", "ctl", h)
		if err != nil || !strings.HasPrefix(out, "usage: ispmux ctl COMMAND") {
			t.Errorf("ctl %s: %v\n%s", h, err, out)
		}
		for _, c := range ctlCommands {
			if !strings.Contains(out, "\n  "+c.name+" ") {
				t.Errorf("ctl %s does not list %s", h, c.name)
			}
		}
		// The lab's subcommands too: `lab up -h` must not fail with
		// "flag: help requested", nor isp-config take -h for a server.
		for _, args := range [][]string{{"lab", "up", h}, {"lab", "down", h}, {"lab", "isp-config", h}} {
			out, _, err := runCmd(t, "", args...)
			if err != nil || !strings.HasPrefix(out, "usage:") || !strings.Contains(out, "lab up") {
				t.Errorf("%q: %v\n%s", args, err, out)
			}
		}
		for _, args := range [][]string{{h}, {"run", h}, {"check", h}, {"version", h}} {
			out, _, err := runCmd(t, "", args...)
			if err != nil || !strings.HasPrefix(out, "usage: ispmux") || !strings.Contains(out, h[len(h)-1:]) {
				t.Errorf("%q: %v\n%s", args, err, out)
			}
		}
		if out, _, _ := runCmd(t, "", "run", h); !strings.Contains(out, "-c FILE") {
			t.Errorf("run %s does not list -c:\n%s", h, out)
		}
	}
	for _, args := range [][]string{{"help"}, {"ctl", "help"}} {
		if out, _, err := runCmd(t, "", args...); err != nil || !strings.HasPrefix(out, "usage: ispmux") {
			t.Errorf("%q: %v\n%s", args, err, out)
		}
	}
	// The top-level usage names every command.
	out, _, _ := runCmd(t, "", "-h")
	for _, c := range []string{"run", "check", "ctl", "version", "lab", "bench", "demo"} {
		if !strings.Contains(out, "\n  "+c+" ") {
			t.Errorf("usage lacks %s:\n%s", c, out)
		}
	}
}

func TestVersion(t *testing.T) {
	out, _, err := runCmd(t, "", "version")
	if err != nil || !strings.HasPrefix(out, "ispmux ") || !strings.Contains(out, " go1.") {
		t.Errorf("version: %v %q", err, out)
	}
	bi := &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Path: "github.com/ispmux/ispmux", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0fe61d0abc"}, {Key: "vcs.time", Value: "2026-05-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	if got, want := versionLine(bi), "ispmux v1.2.3 (revision 0fe61d0abc, 2026-05-01T10:00:00Z, modified) go1.26.1"; got != want {
		t.Errorf("versionLine = %q, want %q", got, want)
	}
	bi = &debug.BuildInfo{GoVersion: "go1.26.1"}
	if got, want := versionLine(bi), "ispmux (devel) go1.26.1"; got != want {
		t.Errorf("versionLine = %q, want %q", got, want)
	}
}

func TestToken(t *testing.T) {
	out, _, err := runCmd(t, "", "ctl", "token")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 2 || len(lines[0]) != 43 || !strings.HasPrefix(lines[1], "sha256:") {
		t.Fatalf("token: %v %q", err, out)
	}
	file := filepath.Join(t.TempDir(), "beta-2.token")
	out, errOut, err := runCmd(t, "", "ctl", "token", "--file", file)
	if err != nil || !strings.Contains(errOut, `name "beta-2"`) {
		t.Fatalf("token --file: %v %q", err, errOut)
	}
	tok := strings.TrimSpace(out)
	b, _ := os.ReadFile(file)
	fi, _ := os.Stat(file)
	if len(tok) != 43 || !strings.HasPrefix(string(b), "sha256:") || strings.Contains(string(b), tok) || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file %q (%v) for token %q", b, fi.Mode(), tok)
	}
	// An existing file is refused (a live token file replaced ends its
	// token at the next SIGHUP), untouched; --force replaces it.
	_, _, err = runCmd(t, "", "ctl", "token", "--file", file)
	if b2, _ := os.ReadFile(file); err == nil || !strings.Contains(err.Error(), "exists") || !strings.Contains(err.Error(), "--force") || string(b2) != string(b) {
		t.Errorf("token --file over an existing file: %v, file %q was %q", err, b2, b)
	}
	if _, _, err := runCmd(t, "", "ctl", "token", "--file", file, "--force"); err != nil {
		t.Errorf("token --file --force: %v", err)
	} else if b2, _ := os.ReadFile(file); string(b2) == string(b) || !strings.HasPrefix(string(b2), "sha256:") {
		t.Errorf("token --file --force left %q (was %q)", b2, b)
	}
	// A directory, or a directory not there: said as such, not through a
	// temporary file's name.
	d := t.TempDir()
	if _, _, err := runCmd(t, "", "ctl", "token", "--file", d, "--force"); err == nil || !strings.Contains(err.Error(), d+" is a directory") {
		t.Errorf("token --file DIR: %v", err)
	}
	if _, _, err := runCmd(t, "", "ctl", "token", "--file", d+"/none/x.token"); err == nil || strings.Contains(err.Error(), ".tmp-") ||
		!strings.Contains(err.Error(), "cannot write "+d+"/none/x.token: its directory") {
		t.Errorf("token --file in a missing directory: %v", err)
	}
	if _, _, err := runCmd(t, "", "ctl", "token", "--force"); err == nil || !strings.Contains(err.Error(), "--force needs --file") {
		t.Errorf("token --force without --file: %v", err)
	}
	// The box's file is no client token file.
	_, _, err = runCmd(t, "", "ctl", "isps", "--api", "http://127.0.0.1:1", "--token-file", file)
	if err == nil || !strings.Contains(err.Error(), "--token-file wants the token itself") {
		t.Errorf("sha256 token file as --token-file: %v", err)
	}
	out, _, err = runCmd(t, "", "ctl", "token", "--json")
	var v struct{ Token, SHA256 string }
	if err != nil || json.Unmarshal([]byte(out), &v) != nil || len(v.Token) != 43 || !strings.HasPrefix(v.SHA256, "sha256:") {
		t.Errorf("token --json: %v %q", err, out)
	}
}

// TestSocketWithoutConfig: --socket needs no configuration; without it,
// an invalid configuration is the error, with the hint.
func TestSocketWithoutConfig(t *testing.T) {
	r := newRig(t, nil)
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("version = 99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := r.ok("", "ctl", "isps", "--socket", r.sock)
	if !strings.Contains(out, "alpha") || !strings.Contains(out, "beta") {
		t.Errorf("isps over the socket:\n%s", out)
	}
	out, _ = r.ok("", "ctl", "--socket", r.sock, "status")
	if !strings.Contains(out, "uptime:") || !strings.Contains(out, "192.0.2.50") || !strings.Contains(out, "no-binding=3") {
		t.Errorf("status table:\n%s", out)
	}
	_, _, err := runCmd(t, "", "ctl", "-c", bad, "isps")
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "--socket PATH needs none") {
		t.Errorf("invalid config: %v", err)
	}
	// The default configuration (absent here) is no excuse for --socket.
	t.Chdir(t.TempDir())
	r.ok("", "ctl", "stats", "--socket", r.sock)
	// Nothing listening: a clear error, exit 1.
	_, _, err = runCmd(t, "", "ctl", "isps", "--socket", filepath.Join(t.TempDir(), "none.sock"))
	if err == nil || exitCode(err) != 1 {
		t.Errorf("no socket: %v", err)
	}
}

func TestBackup(t *testing.T) {
	r := newRig(t, nil)
	out := filepath.Join(t.TempDir(), "copy.db")
	stdout, _ := r.ok("", "ctl", "-c", r.cfg, "backup", out)
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, r.backup) || !strings.Contains(stdout, out+": 13000 bytes, sha256 ") {
		t.Errorf("backup: %v, %d bytes, %q", err, len(got), stdout)
	}
	// An existing OUT is refused without --force, named, and kept (it
	// was replaced without a word).
	if err := os.WriteFile(out, []byte("an older copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = runCmd(t, "", "ctl", "--socket", r.sock, "backup", out)
	if want := "backup: " + out + " exists: not replaced: give a new OUT, or --force to replace it"; err == nil || exitCode(err) != 1 || err.Error() != want {
		t.Errorf("backup over an existing file: %v, want %q", err, want)
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != "an older copy" {
		t.Errorf("the existing file after the refused backup: %d bytes, %v; want %q kept", len(got), err, "an older copy")
	}
	stdout, _ = r.ok("", "ctl", "--socket", r.sock, "backup", out, "--force", "--json")
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, r.backup) {
		t.Errorf("backup --force: %v, %d bytes", err, len(got))
	}
	var res ctlsock.BackupResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.Bytes != 13000 || res.File != out {
		t.Errorf("backup --json: %v %q", err, stdout)
	}
	// Into a missing directory: the error named the temporary file the
	// copy goes through (".dir.db.tmp-123"), which the operator never
	// asked for, not the directory missing. It names OUT and its
	// directory.
	missing := filepath.Join(t.TempDir(), "no")
	_, _, err = runCmd(t, "", "ctl", "--socket", r.sock, "backup", filepath.Join(missing, "dir.db"))
	if want := "backup: cannot write " + filepath.Join(missing, "dir.db") + ": its directory " + missing + ": no such file or directory"; err == nil || exitCode(err) != 1 ||
		err.Error() != want {
		t.Errorf("backup into a missing directory: %v, want %q", err, want)
	}
}

// TestPositionals: the help's command column keeps a synopsis's
// positional arguments and drops its flags, in brackets or in
// parentheses (device-set's choice of flags printed "(--access NAME | |").
func TestPositionals(t *testing.T) {
	for in, want := range map[string]string{
		"ISP MAC (--access NAME | --bound | --any-access)":      "ISP MAC",
		"ISP ID [--status active|suspended] [--device-limit N]": "ISP ID",
		"ISP CUSTOMER MAC [--replace MAC]":                      "ISP CUSTOMER MAC",
		"[N] [--follow]":                                        "[N]",
	} {
		if got := positionals(in); got != want {
			t.Errorf("positionals(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCtlDaemonDown: a tenant command, status or backup with no appliance
// behind the socket says so, naming the socket, not the client's internal
// URL ("Get \"http://ispmux/v1/isps\": dial unix …"); an import of a
// directory is refused before anything is sent.
func TestCtlDaemonDown(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ispmux.sock")
	backup := filepath.Join(t.TempDir(), "x.db")
	for _, args := range [][]string{{"isps"}, {"customers", "alpha"}, {"events", "0"}, {"status"}, {"backup", backup}} {
		_, _, err := runCmd(t, "", append([]string{"ctl", "--socket", sock}, args...)...)
		if err == nil || !strings.Contains(err.Error(), "control socket "+sock) || !strings.Contains(err.Error(), "is ispmux running?") ||
			strings.Contains(err.Error(), "http://ispmux") {
			t.Errorf("ctl %v with no appliance: %v", args, err)
		}
	}
	dir := t.TempDir()
	if _, _, err := runCmd(t, "", "ctl", "--socket", sock, "import", "alpha", dir); err == nil || !strings.Contains(err.Error(), dir+" is a directory") {
		t.Errorf("import of a directory: %v", err)
	}
}
