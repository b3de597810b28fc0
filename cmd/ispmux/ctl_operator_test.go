package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
