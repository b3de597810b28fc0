package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/api/client"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
)

// TestImportTableEscapesControlCharacters: the import's table
// prints the customer ID of each line as the ISP's file has it. A line
// whose customer_id holds an escape sequence and a newline reaches the
// operator's terminal as a control sequence and adds a row, which the
// other tables prevent (printable: "text from outside (... a customer
// ID) must not add rows or columns, or reach the operator's terminal as
// a control sequence"). The import's table escapes them now.
func TestImportTableEscapesControlCharacters(t *testing.T) {
	r := newRig(t, nil)
	in := `{"customer_id":"x\u001b[2J\ny"}` + "\n" + `{"customer_id":"ok-1"}` + "\n"
	out, _, err := runCmd(t, in, "ctl", "import", "alpha", "-", "--socket", r.sock)
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("import with a bad line: %v, want exit 1", err)
	}
	if strings.ContainsAny(out, "\x1b") {
		t.Errorf("the import table carries a raw ESC to the terminal:\n%q", out)
	}
	if lines := strings.Split(strings.TrimRight(out, "\n"), "\n"); len(lines) != 3 {
		t.Errorf("2 lines imported: want a header and 2 rows, got %d lines:\n%s", len(lines), out)
	}
}

// TestFollowMissingSocket: every other command against a missing
// control socket fails at once, naming the socket. `events --follow`
// retries in silence for ever (a typo in --socket, a daemon not
// running, a socket the user may not open): nothing on stderr, and exit 0
// when the operator gave up. The first connection is tried once now.
func TestFollowMissingSocket(t *testing.T) {
	sock := "/nonexistent-review/ispmux.sock"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var o, e bytes.Buffer
	err := run(ctx, []string{"ctl", "events", "--follow", "--socket", sock}, strings.NewReader(""), &o, &e)
	if err == nil && !strings.Contains(e.String(), sock) {
		t.Errorf("events --follow on a missing socket: err %v, stderr %q: want an error naming %s", err, e.String(), sock)
	}
}

// TestCustomerDotSegment: `ctl customer alpha ..` (or ".") names
// no customer (the API refuses such an ID: "a dot-segment, which cannot
// be named in a URL path"), yet ctl exits 0 and prints an empty
// customer: the server's mux cleans /v1/isps/alpha/customers/.. and
// redirects to /v1/isps/alpha, the client follows the redirect and
// decodes the ISP's JSON as a customer. The client refuses the segment.
func TestCustomerDotSegment(t *testing.T) {
	r := newRig(t, nil)
	for _, id := range []string{"..", "."} {
		out, _, err := runCmd(t, "", "ctl", "customer", "alpha", id, "--socket", r.sock, "--json")
		if err == nil {
			t.Errorf("customer alpha %q: exit 0, stdout:\n%s", id, out)
		}
	}
}

// TestStatusHungDaemon: every tenant command over the control socket gives
// up after the client's 30 s (api/client: "Timeout bounds each call ...
// default 30 s"); `ctl status` (ctlsock.FetchStatus) had no bound: against
// a daemon that accepts and never answers (wedged, or mid-restart with the
// status blocked) a monitoring script's `ispmux ctl status` hung for ever.
// It gives up after statusTimeout (30 s; shortened here).
func TestStatusHungDaemon(t *testing.T) {
	defer func(d time.Duration) { statusTimeout = d }(statusTimeout)
	statusTimeout = 300 * time.Millisecond
	sock := filepath.Join(t.TempDir(), "ispmux.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // accepted, never answered
			mu.Unlock()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	var o, e bytes.Buffer
	err = run(ctx, []string{"ctl", "status", "--socket", sock}, strings.NewReader(""), &o, &e)
	if took := time.Since(start); err == nil || took > 5*time.Second {
		t.Errorf("ctl status against a daemon that never answers: %v after %s: want its own timeout", err, took.Round(time.Millisecond))
	}
}

// TestImportRefusedPrintsNoTable: an import the API refuses as a
// whole (unknown ISP, another ISP's token, empty file) still prints the
// results table's header on stdout before the error: a script that
// keeps stdout sees an import of 0 lines. The header comes with the first
// result now.
func TestImportRefusedPrintsNoTable(t *testing.T) {
	r := newRig(t, nil)
	for _, args := range [][]string{{"import", "nope", "-"}, {"import", "alpha", "-"}} {
		out, _, err := runCmd(t, "", append(append([]string{"ctl"}, args...), "--socket", r.sock)...)
		if err == nil || out != "" {
			t.Errorf("%q refused: err %v, stdout %q: want an error and nothing on stdout", args, err, out)
		}
	}
}

// TestDeleteJSONPrintsObject: --json is "one object", but customer-del and
// device-del printed nothing (the API answers 204): a script's `jq -e .`
// failed on a success. They print what was deleted now.
func TestDeleteJSONPrintsObject(t *testing.T) {
	r := newRig(t, nil)
	if _, _, err := runCmd(t, "", "ctl", "customer-add", "alpha", "c-del", "--socket", r.sock); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCmd(t, "", "ctl", "customer-del", "alpha", "c-del", "--socket", r.sock, "--json")
	var got map[string]any
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got["deleted"] != true || got["customer_id"] != "c-del" {
		t.Errorf("customer-del --json: %v, stdout %q", err, out)
	}
}

// refusalRig is a rig where alpha's customer a-5 holds mac (attached by
// the operator) and beta has a customer c-77 (password pw).
func refusalRig(t *testing.T, mac, pw string) *rig {
	t.Helper()
	r := newRig(t, nil)
	r.ok("", r.api("operator", "customer-add", "alpha", "a-5")...)
	r.ok(pw+"\n", r.api("operator", "customer-add", "beta", "c-77", "--password-stdin")...)
	r.ok("", r.api("operator", "device-add", "alpha", mac, "a-5")...)
	return r
}

// refused runs args, which must fail with a device-unavailable problem,
// and returns the problem and what ispmux prints for it.
func refused(t *testing.T, stdin string, args ...string) (*client.Error, string) {
	t.Helper()
	out, _, err := runCmd(t, stdin, args...)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Slug() != "device-unavailable" || ce.RequestID == "" {
		t.Fatalf("%q: %v, stdout %q: want a device-unavailable problem with a request id", args, err, out)
	}
	var b bytes.Buffer
	report(&b, err)
	return ce, b.String()
}

// An ISP refused another ISP's device (409 device-unavailable) is told to
// ask the operator quoting the request id, and the refusal is an
// attach-refused event carrying it. `ctl events` showed the request id in
// --json only, with no way to pick the event out: the operator, given the
// id, paged through the whole log. The table has a REQUEST column, and
// --request-id ID shows that request's events only (in the newest, after
// AFTER-SEQ, and followed).
func TestEventsRequestID(t *testing.T) {
	const mac = "02:00:00:00:00:07"
	r := refusalRig(t, mac, "correct horse")
	for i := range 3 { // other events after the refusal, some with request ids
		r.ok("", r.api("operator", "customer-add", "beta", fmt.Sprintf("x-%d", i))...)
	}
	ce, _ := refused(t, "", r.api("beta", "device-add", "beta", mac, "c-77")...)
	r.ok("", r.api("operator", "customer-add", "beta", "after")...)
	id := ce.RequestID

	op := func(args ...string) []string { return r.api("operator", args...) }
	out, _ := r.ok("", op("events")...)
	var seen bool
	for _, row := range column(t, out) {
		if row["REQUEST"] == "" {
			t.Fatalf("events: no REQUEST column:\n%s", out)
		}
		if row["KIND"] == "attach-refused" {
			seen = true
			if row["REQUEST"] != id {
				t.Errorf("attach-refused row: REQUEST %q, want %q:\n%s", row["REQUEST"], id, out)
			}
		}
	}
	if !seen {
		t.Fatalf("events: no attach-refused row:\n%s", out)
	}

	for _, args := range [][]string{
		op("events", "--request-id", id),
		op("events", "--request-id", id, "0"),
		op("events", "--request-id", id, "--limit", "1"),
		{"ctl", "events", "--socket", r.sock, "--request-id", id},
	} {
		out, errOut := r.ok("", args...)
		rows := column(t, out)
		if len(rows) != 1 || rows[0]["KIND"] != "attach-refused" || rows[0]["MAC"] != mac || rows[0]["REQUEST"] != id {
			t.Errorf("%q: want the one attach-refused event of request %s:\n%s%s", args[1:], id, out, errOut)
		}
	}
	out, _ = r.ok("", op("events", "--request-id", id, "--json")...)
	var el client.EventList
	if err := json.Unmarshal([]byte(out), &el); err != nil || len(el.Items) != 1 || el.Items[0].RequestID != id || el.Items[0].Kind != "attach-refused" {
		t.Errorf("events --request-id --json: %v\n%s", err, out)
	}

	// A client's own id, used for 5 requests (the API records it as
	// given): the newest N of them, the first N after AFTER-SEQ, and how
	// to see the others.
	reuse := tenants.Actor{Kind: tenants.ActorISP, Name: "beta-1", ISP: "beta", RequestID: "script-run-1"}
	for i := range 5 {
		if _, err := r.ten.CreateCustomer(context.Background(), reuse, "beta", tenants.CustomerInput{ID: fmt.Sprintf("s-%d", i)}); err != nil {
			t.Fatal(err)
		}
		r.ok("", op("customer-add", "alpha", fmt.Sprintf("between-%d", i))...)
	}
	customers := func(out string) (ids []string) {
		for _, row := range column(t, out) {
			ids = append(ids, row["CUSTOMER"])
		}
		return ids
	}
	out, errOut := r.ok("", op("events", "--request-id", "script-run-1", "--limit", "2")...)
	if got := customers(out); !slices.Equal(got, []string{"s-3", "s-4"}) || !strings.Contains(errOut, "events --request-id script-run-1 --limit 2 N`") {
		t.Errorf("the newest 2 of request script-run-1: %v\n%s%s", got, out, errOut)
	}
	out, errOut = r.ok("", op("events", "0", "--request-id", "script-run-1", "--limit", "2")...)
	if got := customers(out); !slices.Equal(got, []string{"s-0", "s-1"}) || !strings.Contains(errOut, "` shows the next ones") {
		t.Fatalf("the first 2 of request script-run-1: %v\n%s%s", got, out, errOut)
	}
	// The next page, as the hint names it (the token as given).
	out, errOut = r.ok("", append(hintArgs(t, errOut), "--token", r.tokens["operator"])...)
	if got := customers(out); !slices.Equal(got, []string{"s-2", "s-3"}) || !strings.Contains(errOut, "` shows the next ones") {
		t.Errorf("the next 2 of request script-run-1: %v\n%s%s", got, out, errOut)
	}
	out, errOut = r.ok("", append(hintArgs(t, errOut), "--token", r.tokens["operator"])...)
	if got := customers(out); !slices.Equal(got, []string{"s-4"}) || errOut != "" {
		t.Errorf("the rest of request script-run-1: %v\n%s%s", got, out, errOut)
	}

	// No such request: no rows, and a word on why there may be none.
	out, errOut = r.ok("", op("events", "--request-id", "no-such-request")...)
	if rows := column(t, out); len(rows) != 0 || !strings.Contains(errOut, "no-such-request") {
		t.Errorf("events --request-id no-such-request:\n%s%s", out, errOut)
	}
	// Not a request id at all: a usage error.
	if _, _, err := runCmd(t, "", op("events", "--request-id", "two words")...); exitCode(err) != 2 {
		t.Errorf("events --request-id 'two words': %v, want a usage error", err)
	}

	// Followed: that request's events only.
	ctx, cancel := context.WithCancel(context.Background())
	var fo, fe lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, op("events", "--follow", "0", "--request-id", id, "--json"), strings.NewReader(""), &fo, &fe)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(fo.String(), id) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	r.ok("", op("customer-add", "beta", "while-following")...)
	_, _ = r.ok("", op("events", "--request-id", id)...) // a round trip after the new event
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("follow: %v\n%s", err, fe.String())
	}
	lines := strings.Split(strings.TrimSpace(fo.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], id) {
		t.Errorf("events --follow --request-id %s printed:\n%s", id, fo.String())
	}
}

// The device-unavailable problem's detail is the tenants error, which
// begins with its sentinels ("conflict: device registered with another
// provider: ..."): ctl printed "Device registered with another provider:
// conflict: device registered with another provider: device ...". The
// title is printed once, then the detail once.
func TestDeviceUnavailableReportedOnce(t *testing.T) {
	const mac = "02:00:00:00:00:07"
	r := refusalRig(t, mac, "correct horse")
	for _, who := range []string{"beta", "operator"} {
		_, msg := refused(t, "", r.api(who, "device-add", "beta", mac, "c-77")...)
		first, _, _ := strings.Cut(msg, "\n")
		if n := strings.Count(strings.ToLower(first), "registered with another provider"); n != 1 || strings.Contains(first, "conflict:") ||
			!strings.HasPrefix(first, "ispmux: Device registered with another provider: device "+mac) {
			t.Errorf("%s's refusal printed:\n%s\nwant the title once, then the detail (\"device %s ...\") once", who, msg, mac)
		}
	}
}

// The operator refused another ISP's device (attaching it through an
// ISP's path, or claiming it) is told whose it is and to move it with POST
// /v1/devices/MAC/move: ctl named only the API route. It names the ctl
// command too, with the device, ISP and customer the operator asked for,
// and that command moves it, and what its --immediate costs. An ISP is
// told nothing of the kind; for a device of the configuration (which a
// move refuses) no move is named.
func TestOperatorRefusalNamesCtlMove(t *testing.T) {
	const mac = "02:00:00:00:00:07"
	r := refusalRig(t, mac, "correct horse")
	_, msg := refused(t, "", r.api("beta", "device-add", "beta", mac, "c-77")...)
	if strings.Contains(msg, "ispmux ctl") || strings.Contains(msg, "/move") {
		t.Errorf("beta's refusal names a move command:\n%s", msg)
	}

	sock := []string{"ctl", "--socket", r.sock}
	for _, c := range []struct {
		args  []string
		stdin string
	}{
		{append(sock, "device-add", "beta", mac, "c-77"), ""},
		{append(sock, "claim", "beta", "c-77", mac, "--password-stdin"), "correct horse\n"},
	} {
		_, msg := refused(t, c.stdin, c.args...)
		want := "ispmux ctl --socket " + r.sock + " move " + mac + " beta c-77"
		if !strings.Contains(msg, want) {
			t.Errorf("%q refused:\n%s\nwant the ctl command that moves it: %s", c.args[3:], msg, want)
		}
		// What --immediate costs, as `ctl move -h` and OPERATIONS.md
		// say: the hint said only that it "ends that at once".
		if warn := "--immediate ends that at once, and the device is without service until its next DHCP message, within half client_lease_max"; !strings.Contains(msg, warn) {
			t.Errorf("%q refused:\n%s\nwant what --immediate costs: %s", c.args[3:], msg, warn)
		}
	}
	r.ok("", append(sock, "move", mac, "beta", "c-77")...)
	out, _ := r.ok("", append(sock, "devices", "beta")...)
	if rows := column(t, out); len(rows) != 1 || rows[0]["MAC"] != mac || rows[0]["CUSTOMER"] != "c-77" {
		t.Errorf("after the move named:\n%s", out)
	}

	// A configuration device: changed in the configuration, no move.
	hw := subscribers.MAC{2, 0, 0, 0, 0, 8}
	if _, err := r.ten.SyncConfig([]tenants.ConfigDevice{{MAC: hw, ISP: "alpha", CustomerID: "building-1"}}); err != nil {
		t.Fatal(err)
	}
	_, msg = refused(t, "", append(sock, "device-add", "beta", "02:00:00:00:00:08", "c-77")...)
	if strings.Contains(msg, " move ") || !strings.Contains(msg, "configuration") {
		t.Errorf("refused a configuration device:\n%s\nwant the configuration named, no move", msg)
	}
}

// The operator's device import of another ISP's devices: each refused
// line names the API route that moves the device, and ctl named no ctl
// command (attach and claim did: TestOperatorRefusalNamesCtlMove). It
// names one after the counts, for the first such line, and that command
// moves it; an ISP's import names none.
func TestDeviceImportNamesCtlMove(t *testing.T) {
	const mac, mac2 = "02:00:00:00:00:07", "02:00:00:00:00:09"
	r := refusalRig(t, mac, "correct horse")
	r.ok("", r.api("operator", "customer-add", "alpha", "a-6")...)
	r.ok("", r.api("operator", "device-add", "alpha", mac2, "a-6")...)
	r.ok("", r.api("operator", "customer-set", "beta", "c-77", "--device-limit", "4")...)
	lines := `{"mac":"02:00:00:00:00:0a","customer_id":"c-77"}
{"mac":"` + mac + `","customer_id":"c-77"}
{"mac":"` + mac2 + `","customer_id":"c-77"}
`
	_, errOut, err := runCmd(t, lines, r.api("beta", "device-import", "beta", "-", "--errors")...)
	if err == nil || strings.Contains(errOut, " move ") {
		t.Errorf("beta's import of alpha's devices: %v\n%s\nwant failed lines and no move named", err, errOut)
	}
	sock := []string{"ctl", "--socket", r.sock}
	_, errOut, err = runCmd(t, lines, append(sock, "device-import", "beta", "-", "--errors")...)
	want := "2 lines name devices another ISP has: `ispmux ctl --socket " + r.sock + " move " + mac + " beta c-77` moves line 2's"
	if err == nil || !strings.Contains(errOut, want) {
		t.Fatalf("the operator's import of alpha's devices: %v\n%s\nwant: %s", err, errOut, want)
	}
	r.ok("", append(sock, "move", mac, "beta", "c-77")...)
	out, _ := r.ok("", append(sock, "devices", "beta")...)
	if rows := column(t, out); len(rows) != 2 || rows[0]["MAC"] != mac && rows[1]["MAC"] != mac {
		t.Errorf("after the move named:\n%s", out)
	}
}

// The move a refusal names is a command line to paste into a shell: the
// customer ID the operator typed (which may hold ' ; $ * and the like)
// and the -c or --socket path (which may hold a space) were printed as
// they are, so the pasted line moved another customer, ran what followed
// a ';', or split the path. Each argument is shell-quoted, and the line
// runs as given.
func TestMoveHintPastesIntoAShell(t *testing.T) {
	const mac = "02:00:00:00:00:07"
	const cust = `o'hara;$(id)*&`
	r := refusalRig(t, mac, "correct horse")
	r.ok("", r.api("operator", "customer-add", "beta", cust)...)

	cfg := filepath.Join(t.TempDir(), "my config", "ispmux.toml")
	b, err := os.ReadFile(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Dir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, msg := refused(t, "", "ctl", "-c", cfg, "device-add", "beta", mac, cust)
	got := hintArgs(t, strings.SplitN(msg, "\n", 2)[1])
	if want := []string{"ctl", "-c", cfg, "move", mac, "beta", cust}; !slices.Equal(got, want) {
		t.Fatalf("refused:\n%s\nthe move pasted into a shell runs %q, want %q", msg, got, want)
	}
	r.ok("", got...)
	out, _ := r.ok("", "ctl", "-c", cfg, "devices", "beta")
	if rows := column(t, out); len(rows) != 1 || rows[0]["CUSTOMER"] != cust {
		t.Errorf("after the move named:\n%s", out)
	}
}

// Over the API the move named --api only: the token file given (and
// --ca, --insecure) was left out, so the line pasted failed for want of a
// token ("--api needs a token"). It names them.
func TestMoveHintOverAPINamesTokenFile(t *testing.T) {
	const mac = "02:00:00:00:00:07"
	r := refusalRig(t, mac, "correct horse")
	t.Setenv(tokenEnv, "")
	tf := filepath.Join(t.TempDir(), "operator.token")
	if err := os.WriteFile(tf, []byte(r.tokens["operator"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, msg := refused(t, "", "ctl", "--api", r.apiURL, "--token-file", tf, "device-add", "beta", mac, "c-77")
	got := hintArgs(t, strings.SplitN(msg, "\n", 2)[1])
	if want := []string{"ctl", "--api", r.apiURL, "--token-file", tf, "move", mac, "beta", "c-77"}; !slices.Equal(got, want) {
		t.Fatalf("refused over the API:\n%s\nthe move pasted runs %q, want %q", msg, got, want)
	}
	r.ok("", got...)
}

// TestStatusOnboardingHandoverRetry: ctl status's CHOSEN column says when a
// failed handover is retried, and that a retry asked for on the portal's
// failure page is pending (no failure reported until its outcome). Before,
// a failed one showed no retry time, and an asked one showed only the ISP,
// as a device switching normally.
func TestStatusOnboardingHandoverRetry(t *testing.T) {
	st := &ctlsock.Status{Onboarding: []ctlsock.OnboardingStatus{
		{MAC: "02:00:00:00:00:01", Access: "acc0", IP: "100.127.0.10", Expires: "2026-12-05T08:00:00Z", Chosen: "alpha",
			HandoverFailed: "refused", HandoverRetry: "2026-12-05T08:10:00Z"},
		{MAC: "02:00:00:00:00:02", Access: "acc0", IP: "100.127.0.11", Expires: "2026-12-05T08:00:00Z", Chosen: "beta",
			HandoverRetry: "2026-12-05T08:01:00Z"},
		{MAC: "02:00:00:00:00:03", Access: "acc0", IP: "100.127.0.12", Expires: "2026-12-05T08:00:00Z", Chosen: "beta"},
	}}
	var b bytes.Buffer
	if err := writeStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"alpha (handover refused, retry 2026-12-05 08:10:00Z)",
		"beta (retry asked, 2026-12-05 08:01:00Z)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	if !strings.Contains(b.String(), "100.127.0.12  2026-12-05 08:00:00Z  beta\n") {
		t.Errorf("a device switching normally shows more than its ISP:\n%s", b.String())
	}
}

// TestStatusHandovers: ctl status lists the devices on their way to the
// ISP they chose, between the walled garden (or their old ISP) and that
// ISP's ACK, with where their DORA stands. Before, such a device was in
// no list of ctl status for up to an onboarding lease time.
func TestStatusHandovers(t *testing.T) {
	st := &ctlsock.Status{Handovers: []ctlsock.HandoverStatus{
		{MAC: "02:00:00:00:00:01", Access: "acc0", ISP: "alpha", CustomerID: "c-1", HeldUntil: "2026-12-05T08:00:20Z"},
		{MAC: "02:00:00:00:00:02", Access: "acc0", ISP: "beta", CustomerID: "c-2", HeldUntil: "2026-12-05T08:00:20Z", SilentSince: "2026-12-05T08:00:03Z"},
		{MAC: "02:00:00:00:00:03", Access: "acc1", ISP: "beta", CustomerID: "c-3", Failed: "refused"},
	}}
	var b bytes.Buffer
	if err := writeStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"handovers (on the way to the ISP chosen): 3",
		"c-1       asking its ISP",
		"its ISP silent since 2026-12-05 08:00:03Z",
		"refused: back to the garden at its next DISCOVER",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	var empty bytes.Buffer
	if err := writeStatus(&empty, &ctlsock.Status{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(empty.String(), "handovers") {
		t.Errorf("a status without handovers lists them:\n%s", empty.String())
	}
}

// The operator's attach or claim of a MAC it blocked while no ISP had it
// is refused (409 device-blocked) with the API's routes to lift the block
// or move the device (POST /v1/devices/MAC/unblock, .../move): ctl named
// no command, so the operator on the box translated the routes by hand.
// It names the ctl unblock, which pasted lifts the block (the attach then
// succeeds), and the ctl move with the ISP and customer asked for. An
// ISP's refusal names neither.
func TestOperatorRefusalOfBlockedNamesCtl(t *testing.T) {
	const mac = "02:00:00:00:00:09"
	r := refusalRig(t, "02:00:00:00:00:07", "correct horse")
	sock := []string{"ctl", "--socket", r.sock}
	r.ok("", append(sock, "block", mac)...)
	blocked := func(stdin string, args ...string) string {
		t.Helper()
		_, _, err := runCmd(t, stdin, args...)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Slug() != "device-blocked" {
			t.Fatalf("%q: %v, want a device-blocked problem", args, err)
		}
		var b bytes.Buffer
		report(&b, err)
		return b.String()
	}
	if msg := blocked("", r.api("beta", "device-add", "beta", mac, "c-77")...); strings.Contains(msg, "ispmux ctl") {
		t.Errorf("beta's refusal names a ctl command:\n%s", msg)
	}
	var msg string
	for _, c := range []struct {
		args  []string
		stdin string
	}{
		{append(sock, "device-add", "beta", mac, "c-77"), ""},
		{append(sock, "claim", "beta", "c-77", mac, "--password-stdin"), "correct horse\n"},
	} {
		msg = blocked(c.stdin, c.args...)
		for _, want := range []string{
			"`ispmux ctl --socket " + r.sock + " unblock " + mac + "`",
			"`ispmux ctl --socket " + r.sock + " move " + mac + " beta c-77`",
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("%q refused:\n%s\nwant the ctl command %s", c.args[3:], msg, want)
			}
		}
	}
	r.ok("", hintArgs(t, strings.SplitN(msg, "\n", 2)[1])...)
	r.ok("", append(sock, "device-add", "beta", mac, "c-77")...)
}

// A customer at its device limit: the refusal lists its devices, and ctl
// said "detach one first (device-del), or claim again with --replace one
// of them" after every command, though only claim has --replace: the
// operator's device-add or move was told to use a flag it does not take.
// Claim's refusal names --replace; device-add's and move's name the
// device limit instead (customer-set --device-limit).
func TestDeviceLimitHintFitsTheCommand(t *testing.T) {
	r := newRig(t, nil)
	op := func(args ...string) []string { return r.api("operator", args...) }
	r.ok("pw-of-c-1\n", op("customer-add", "beta", "c-1", "--password-stdin", "--device-limit", "1")...)
	r.ok("", op("customer-add", "alpha", "a-1")...)
	r.ok("", op("device-add", "beta", "02:00:00:00:00:01", "c-1")...)
	r.ok("", op("device-add", "alpha", "02:00:00:00:00:03", "a-1")...)
	for _, c := range []struct {
		args        []string
		stdin, want string
	}{
		{op("device-add", "beta", "02:00:00:00:00:02", "c-1"), "", "--device-limit"},
		{op("move", "02:00:00:00:00:03", "beta", "c-1"), "", "--device-limit"},
		{op("claim", "beta", "c-1", "02:00:00:00:00:02", "--password-stdin"), "pw-of-c-1\n", "--replace"},
	} {
		_, _, err := runCmd(t, c.stdin, c.args...)
		var ce *client.Error
		if !errors.As(err, &ce) || len(ce.Devices) != 1 {
			t.Fatalf("%q: %v, want the device limit's refusal naming the customer's device", c.args[1:], err)
		}
		var b bytes.Buffer
		report(&b, err)
		msg := b.String()
		if !strings.Contains(msg, "02:00:00:00:00:01") || !strings.Contains(msg, c.want) {
			t.Errorf("%q refused:\n%s\nwant the customer's device and %s named", c.args[1:], msg, c.want)
		}
		if c.want != "--replace" && strings.Contains(msg, "--replace") {
			t.Errorf("%q refused:\n%s\nnames --replace, which %s does not take", c.args[1:], msg, c.args[1])
		}
	}
}

// Unblocking a MAC no ISP has removes its device (the MAC is unknown
// again), but ctl printed the removed device's card, "blocked: no" and
// "source: api", as if a device of no ISP stayed. It says the device is
// gone; --json still prints the API's object.
func TestUnblockOwnerlessSaysRemoved(t *testing.T) {
	const mac = "02:00:00:00:00:66"
	r := newRig(t, nil)
	op := func(args ...string) []string { return r.api("operator", args...) }
	r.ok("", op("block", mac)...)
	out, _ := r.ok("", op("unblock", mac)...)
	if strings.Contains(out, "blocked:") || !strings.Contains(out, mac) || !strings.Contains(out, "unknown again") {
		t.Errorf("unblock of a MAC no ISP has printed:\n%s\nwant that its device is removed, the MAC unknown again", out)
	}
	r.ok("", op("block", mac)...)
	out, _ = r.ok("", op("unblock", mac, "--json")...)
	var d tenants.Device
	if err := json.Unmarshal([]byte(out), &d); err != nil || d.MAC != mac || d.Blocked {
		t.Errorf("unblock --json: %v\n%s", err, out)
	}
}

// A device pinned to no access: its card (device-add, block, subscriber)
// says "access: any", but the devices table showed "-" in ACCESS, which
// reads as no access at all. The table says any too.
func TestDevicesTableUnpinnedSaysAny(t *testing.T) {
	const mac = "02:00:00:00:00:66"
	r := newRig(t, nil)
	op := func(args ...string) []string { return r.api("operator", args...) }
	card, _ := r.ok("", op("block", mac)...)
	if !strings.Contains(card, "access:    any") {
		t.Fatalf("block's card:\n%s\nwant access: any", card)
	}
	out, _ := r.ok("", op("devices")...)
	rows := column(t, out)
	if len(rows) != 1 || rows[0]["MAC"] != mac || rows[0]["ACCESS"] != "any" {
		t.Errorf("devices:\n%s\nwant %s's ACCESS any, as its card", out, mac)
	}
}

// TestStatusFastPath: ctl status's UP and DOWN say how many of the
// forwarded frames the XDP fast path forwarded, and nothing more without
// it.
func TestStatusFastPath(t *testing.T) {
	st := &ctlsock.Status{Ports: []ctlsock.PortStatus{
		{Name: "acc0", FwdUp: 1000, FwdDown: 900, FastUp: 990, FastDown: 880},
		{Name: "upa", FwdUp: 0, FwdDown: 12},
	}}
	var b bytes.Buffer
	if err := writeStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1000 (xdp 990)", "900 (xdp 880)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Count(b.String(), "xdp") != 2 {
		t.Errorf("the fast path shown where it forwarded nothing:\n%s", b.String())
	}
}

// TestStatusICMPErrors: ctl status's ICMP ERRORS column gives each
// port's ICMP errors sent and, where its budgets refused some, how many
// by which (they were in Prometheus alone).
func TestStatusICMPErrors(t *testing.T) {
	st := &ctlsock.Status{Ports: []ctlsock.PortStatus{
		{Name: "acc0", ICMPErrors: 120, ICMPLimited: map[string]uint64{"subscriber": 4000, "port": 7}},
		{Name: "upa", ICMPErrors: 3, ICMPLimited: map[string]uint64{"subscriber": 0, "port": 0}},
	}}
	var b bytes.Buffer
	if err := writeStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "ICMP ERRORS") || !strings.Contains(out, "  120 (limited port=7 subscriber=4000)  ") {
		t.Errorf("status lacks acc0's ICMP errors, 120 (limited port=7 subscriber=4000):\n%s", out)
	}
	if strings.Count(out, "limited") != 1 {
		t.Errorf("limited shown for a port whose budgets refused nothing:\n%s", out)
	}
}

// TestStatusDHCPWrapped: ctl status's dhcp counters, dozens of them on a
// busy box, are wrapped at 100 columns under their label, every counter
// kept whole and in order.
func TestStatusDHCPWrapped(t *testing.T) {
	m := map[string]uint64{}
	for i := range 60 {
		m[fmt.Sprintf("counter_%02d", i)] = uint64(1000 * i)
	}
	st := &ctlsock.Status{DHCP: m}
	var b bytes.Buffer
	if err := writeStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	i := strings.Index(out, "dhcp: ")
	if i < 0 {
		t.Fatalf("no dhcp line:\n%s", out)
	}
	block := out[i : strings.Index(out[i:], "\n\n")+i]
	lines := strings.Split(block, "\n")
	if len(lines) < 2 {
		t.Fatalf("60 counters on one line:\n%s", block)
	}
	var got []string
	for n, l := range lines {
		if len(l) > 100 {
			t.Errorf("line %d is %d columns: %q", n, len(l), l)
		}
		if n > 0 && !strings.HasPrefix(l, "      ") {
			t.Errorf("line %d not under the label: %q", n, l)
		}
		got = append(got, strings.Fields(strings.TrimPrefix(l, "dhcp: "))...)
	}
	if want := strings.Fields(counters(m)); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("counters wrapped into %q, want %q", got, want)
	}
}

// TestStatusRestartPending: ctl status says what the last reload read that
// only a restart applies, where only the log said it once.
func TestStatusRestartPending(t *testing.T) {
	var b bytes.Buffer
	if err := writeStatus(&b, &ctlsock.Status{}); err != nil || !strings.Contains(b.String(), "restart pending") {
		t.Fatalf("status without a pending restart: %v\n%s", err, b.String())
	}
	b.Reset()
	st := &ctlsock.Status{RestartPending: []string{"metrics", "datapath"}, RestartPendingSince: "2026-12-06T01:02:03Z"}
	if err := writeStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	if want := "metrics, datapath (the file read by the reload at 2026-12-06 01:02:03Z differs"; !strings.Contains(b.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, b.String())
	}
}

// TestCtlConfigWithErrors: ctl -c with a file that has errors finds the
// control socket through the file's state_dir all the same, and says the
// file has errors: ctl status is where an operator sees that a reload of
// that very file was refused (a docs trial got the file's error alone).
// So does a file that is not TOML, by its [appliance] table (a field
// trial's typo elsewhere stopped ctl status); one whose [appliance] table
// is not TOML is refused.
func TestCtlConfigWithErrors(t *testing.T) {
	r := newRig(t, nil)
	b, err := os.ReadFile(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, append(b, "\n[nonsense]\nbogus_key = 1\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut := r.ok("", "ctl", "-c", bad, "isps")
	if !strings.Contains(out, "alpha") || !strings.Contains(errOut, "has errors (ispmux check -c "+bad+" lists them)") {
		t.Errorf("ctl -c with an invalid file:\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
	if err := os.WriteFile(bad, append(b, "\n[broken\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut = r.ok("", "ctl", "-c", bad, "isps")
	if !strings.Contains(out, "alpha") || !strings.Contains(errOut, "has errors") {
		t.Errorf("ctl -c with a file that is not TOML past [appliance]:\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
	broken := strings.Replace(string(b), "[appliance]\n", "[appliance]\nstate_dir = \"/nowhere\n", 1)
	if broken == string(b) {
		t.Fatal("no [appliance] table in the rig's configuration")
	}
	if err := os.WriteFile(bad, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd(t, "", "ctl", "-c", bad, "isps"); err == nil || !strings.Contains(err.Error(), "--socket PATH needs none") {
		t.Errorf("ctl -c with an [appliance] table that is not TOML: %v", err)
	}
}

// TestCtlPurgeISPConfigured: ctl purge-isp refuses a configured ISP,
// saying what to do instead, and an ISP the store holds nothing of.
func TestCtlPurgeISPConfigured(t *testing.T) {
	r := newRig(t, nil)
	_, _, err := runCmd(t, "", "ctl", "--socket", r.sock, "purge-isp", "beta")
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), `ISP "beta" is configured`) {
		t.Errorf("purge-isp of a configured ISP: %v", err)
	}
	_, _, err = runCmd(t, "", "ctl", "--socket", r.sock, "purge-isp", "gamma")
	if err == nil || !strings.Contains(err.Error(), `no customer or device of ISP "gamma"`) {
		t.Errorf("purge-isp of an ISP with nothing stored: %v", err)
	}
}

// TestCtlMoveWarnsUnreachable: a move to an ISP whose router is not
// resolved says so (a switching trial's was accepted without a word, and
// the device sat without service); one to a resolved ISP says nothing.
func TestCtlMoveWarnsUnreachable(t *testing.T) {
	r := newRig(t, nil)
	const mac = "02:00:00:00:00:51"
	r.ok("", "ctl", "--socket", r.sock, "customer-add", "alpha", "a-51")
	r.ok("", "ctl", "--socket", r.sock, "customer-add", "beta", "b-51")
	r.ok("", "ctl", "--socket", r.sock, "device-add", "alpha", mac, "a-51")
	_, errOut := r.ok("", "ctl", "--socket", r.sock, "move", mac, "beta", "b-51")
	if !strings.Contains(errOut, "beta's router 192.0.2.9 is not resolved") || !strings.Contains(errOut, "from its next renewal") {
		t.Errorf("move to an unresolved ISP: stderr %q", errOut)
	}
	_, errOut = r.ok("", "ctl", "--socket", r.sock, "move", mac, "alpha", "a-51")
	if strings.Contains(errOut, "not resolved") {
		t.Errorf("move to a resolved ISP warned: %q", errOut)
	}
}

// TestStatusLastReload: ctl status says whether a reload was made since
// the start and when, where it said "applied (or none since the start)"
// (an operator trial read it as a riddle).
func TestStatusLastReload(t *testing.T) {
	for _, c := range []struct {
		st   ctlsock.Status
		want string
	}{
		{ctlsock.Status{}, "none since the start"},
		{ctlsock.Status{LastReloadAt: "2026-12-06T01:02:03Z"}, "applied at 2026-12-06 01:02:03Z"},
		{ctlsock.Status{LastReloadAt: "2026-12-06T01:02:03Z", ReloadRefused: "x.toml:3: bad", ReloadRefusedAt: "2026-12-06T01:02:03Z"}, "REFUSED at 2026-12-06 01:02:03Z: x.toml:3: bad"},
		// Several errors, one a line: joined with "; " (a field trial
		// read them with a literal \n between, the status line
		// escaping the newline).
		{ctlsock.Status{ReloadRefused: "x.toml:3: bad\nx.toml:47: worse\n", ReloadRefusedAt: "2026-12-06T01:02:03Z"}, "REFUSED at 2026-12-06 01:02:03Z: x.toml:3: bad; x.toml:47: worse (the running"},
	} {
		if got := lastReload(&c.st); !strings.HasPrefix(got, c.want) {
			t.Errorf("lastReload(%+v) = %q, want %q", c.st, got, c.want)
		}
	}
}

// TestOnboardingChosenSuspended: a device in the garden for its customer's
// suspension is shown so, not as having chosen its ISP (a trial read
// "chosen: alpha").
func TestOnboardingChosenSuspended(t *testing.T) {
	if got := onboardingChosen(ctlsock.OnboardingStatus{Suspended: "alpha"}); !strings.Contains(got, "suspended at alpha") {
		t.Errorf("onboardingChosen of a suspended device = %q", got)
	}
	if got := onboardingChosen(ctlsock.OnboardingStatus{Chosen: "beta"}); got != "beta" {
		t.Errorf("onboardingChosen of a device that chose beta = %q", got)
	}
}

// ctl events --mac MAC: one device's events only, from the whole log
// (finding a device's events on a busy box meant paging through the log
// by hand: stop 42's planning list), in any MAC notation; a bad MAC is a
// usage error.
func TestEventsMAC(t *testing.T) {
	const mac = "02:00:00:00:00:07"
	r := refusalRig(t, mac, "correct horse")
	op := func(args ...string) []string { return r.api("operator", args...) }
	r.ok("", op("device-add", "beta", "02:00:00:00:00:08", "c-77")...)
	for i := range 3 {
		r.ok("", op("customer-add", "beta", fmt.Sprintf("y-%d", i))...)
	}
	refused(t, "", r.api("beta", "device-add", "beta", mac, "c-77")...)
	for _, args := range [][]string{
		op("events", "--mac", mac),
		op("events", "--mac", "02-00-00-00-00-07", "0"),
		op("events", "--mac", "0200.0000.0007"),
	} {
		out, errOut := r.ok("", args...)
		rows := column(t, out)
		if len(rows) == 0 {
			t.Errorf("%q: no event:\n%s%s", args[1:], out, errOut)
		}
		for _, row := range rows {
			if row["MAC"] != mac {
				t.Errorf("%q: an event of %s:\n%s", args[1:], row["MAC"], out)
			}
		}
	}
	if _, _, err := runCmd(t, "", op("events", "--mac", "nope")...); err == nil || !strings.Contains(err.Error(), "not a MAC address") {
		t.Errorf("events --mac nope: %v", err)
	}
}

// TestDeviceImportTableAligned: ctl device-import's table (with --errors
// too) has every column of every row under its header, for the usual
// MACs and customer IDs of up to 16 characters. Its DEVICE column held
// "MAC CUSTOMER" in 24 characters: with a customer ID of 7 or more (c-00001)
// RESULT and ERROR were out of line on that row (a field trial).
func TestDeviceImportTableAligned(t *testing.T) {
	r := newRig(t, nil)
	for _, id := range []string{"c-1", "c-00001", "cust-2026-000123"} {
		r.ok("", r.api("operator", "customer-add", "alpha", id, "--device-limit", "4")...)
	}
	lines := `{"mac":"02:00:00:00:00:01","customer_id":"c-1"}
{"mac":"02:00:00:00:00:02","customer_id":"c-00001"}
{"mac":"02:00:00:00:00:03","customer_id":"cust-2026-000123"}
{"mac":"02:00:00:00:00:04","customer_id":"no-such-00001"}
{"mac":"02:00:00:00:00:05","customer_id":"cust-2026-999999"}
{"customer_id":"c-00001"}
`
	for _, errorsOnly := range []bool{false, true} {
		args := r.api("operator", "device-import", "alpha", "-")
		if errorsOnly {
			args = append(args, "--errors")
		}
		out, _, err := runCmd(t, lines, args...)
		if err == nil {
			t.Fatalf("an import with failed lines succeeded:\n%s", out)
		}
		rows := strings.Split(strings.TrimRight(out, "\n"), "\n")
		if want := map[bool]int{false: 7, true: 4}[errorsOnly]; len(rows) != want {
			t.Fatalf("--errors %v: %d lines, want %d:\n%s", errorsOnly, len(rows), want, out)
		}
		header := rows[0]
		for _, col := range []string{"RESULT", "ERROR"} {
			at := strings.Index(header, col)
			for _, row := range rows[1:] {
				if col == "ERROR" && !strings.Contains(row, " error ") {
					continue // no error: no cell
				}
				// The cell starts under the header: a space before, a
				// letter at it.
				if at <= 0 || len(row) <= at || row[at-1] != ' ' || row[at] == ' ' {
					t.Errorf("--errors %v: %s is not under its header:\n%s\n%s", errorsOnly, col, header, row)
				}
			}
		}
		for _, row := range rows[1:] {
			if f := strings.Fields(row); len(f) < 4 || !strings.HasPrefix(f[1], "02:00:00:00:00:") && f[1] != "-" {
				t.Errorf("row without its MAC column: %q", row)
			}
		}
	}
}
