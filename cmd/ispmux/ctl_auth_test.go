package main

import (
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ctlAuthArgs are arguments each API command runs with (stdin: a
// password, or an NDJSON line).
var ctlAuthArgs = map[string][]string{
	"events": nil, "isps": nil, "stats": nil, "bindings": nil, "devices": nil,
	"customers": {"alpha"}, "customer": {"alpha", "c-1"}, "customer-add": {"alpha", "c-9"},
	"customer-set": {"alpha", "c-1", "--status", "suspended"}, "customer-del": {"alpha", "c-1"},
	"import": {"alpha", "-"}, "device-import": {"alpha", "-"},
	"device-add": {"alpha", "02:00:00:00:00:01", "c-1"}, "device-set": {"alpha", "02:00:00:00:00:01", "--any-access"},
	"device-del": {"alpha", "02:00:00:00:00:01"}, "claim": {"alpha", "c-1", "02:00:00:00:00:01", "--password-stdin"},
	"block": {"02:00:00:00:00:01"}, "unblock": {"02:00:00:00:00:01"}, "purge-isp": {"gamma"},
	"move": {"02:00:00:00:00:01", "beta", "c-2", "--immediate"}, "subscriber": {"02:00:00:00:00:01"}, "webhook": {"alpha"},
}

// reportOf runs args and returns what ispmux prints of its error.
func reportOf(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	_, _, err := runCmd(t, stdin, args...)
	var b strings.Builder
	if err != nil {
		report(&b, err)
	}
	return b.String(), err
}

// TestCtlAuthHints: every ctl command the API refuses for its token (401),
// refuses to its token (403) or refuses the token's form (400
// malformed-authorization) prints the API's words and then what to do:
// which token it needs and how to give it. `ctl stats` with an ISP's
// token said "Not allowed for this token: this endpoint is the
// operator's" and no more (a trial).
func TestCtlAuthHints(t *testing.T) {
	r := newRig(t, nil)
	r.tokens["unknown"] = "not-a-token-anyone-has-0123456789"
	r.tokens["not b64token"] = `"not-a-token-anyone-has-0123456789"`
	for _, c := range ctlCommands {
		if c.where != whereAny {
			continue
		}
		args, ok := ctlAuthArgs[c.name]
		if !ok {
			t.Errorf("ctl %s: no arguments in ctlAuthArgs: add them", c.name)
			continue
		}
		stdin := "pw\n"
		if strings.Contains(c.name, "import") {
			stdin = `{"customer_id":"c-5","mac":"02:00:00:00:00:05"}` + "\n"
		}
		// An unknown token: 401 to every command.
		out, err := reportOf(t, stdin, r.api("unknown", append([]string{c.name}, args...)...)...)
		if err == nil || !strings.Contains(out, "unknown token (HTTP 401") || !strings.Contains(out, "\n  the box knows no such token (the one given with --token)") ||
			!strings.Contains(out, "operator_token_file") {
			t.Errorf("ctl %s with an unknown token: %v\n%s", c.name, err, out)
		}
		// A token in quotes: 400 malformed-authorization (RFC 6750
		// §3.1), the API's words and what is wrong.
		out, err = reportOf(t, stdin, r.api("not b64token", append([]string{c.name}, args...)...)...)
		if err == nil || !strings.Contains(out, "Malformed Authorization header: the bearer token has characters that no bearer token has") || !strings.Contains(out, "(HTTP 400") ||
			!strings.Contains(out, "\n  the token (the one given with --token) is not one word a bearer token can be") {
			t.Errorf("ctl %s with a token in quotes: %v\n%s", c.name, err, out)
		}
		// A claim token: 403 to every command but claim (the API's
		// words: "a claim token may only POST /v1/claims", or "this
		// endpoint is the operator's" on an operator's route).
		if c.name != "claim" {
			out, err = reportOf(t, stdin, r.api("claim", append([]string{c.name}, args...)...)...)
			if err == nil || !strings.Contains(out, "(HTTP 403") ||
				!strings.Contains(out, "\n  this is a claim token (an installer's): it may only run `ctl claim`. `ctl "+c.name+"`") {
				t.Errorf("ctl %s with a claim token: %v\n%s", c.name, err, out)
			}
		}
	}
	for _, c := range []struct {
		who   string
		args  []string
		stdin string
		want  []string
	}{
		{"alpha", []string{"stats"}, "", []string{"this endpoint is the operator's (HTTP 403",
			"\n  `ctl stats` is the operator's, and this is ISP alpha's token: give the operator's token (the one whose sha256: line is in [api] operator_token_file: --token-file FILE, or $ISPMUX_TOKEN), or run it as root on the box over the control socket, where it acts as the operator: `ispmux ctl -c /etc/ispmux/ispmux.toml stats` (-c: your configuration file)"}},
		{"alpha", []string{"move", "02:00:00:00:00:01", "beta", "c-2", "--immediate"}, "", []string{"this endpoint is the operator's (HTTP 403",
			"`ispmux ctl -c /etc/ispmux/ispmux.toml move 02:00:00:00:00:01 beta c-2` with its flags as given"}},
		{"alpha", []string{"block", "02:00:00:00:00:01"}, "", []string{"`ctl block` is the operator's, and this is ISP alpha's token"}},
		{"claim", []string{"stats"}, "", []string{"`ctl stats` is the operator's: give the operator's token"}},
		{"claim", []string{"customers", "alpha"}, "", []string{"`ctl customers` needs the ISP's token (its own objects) or the operator's"}},
		{"alpha", []string{"claim", "alpha", "c-1", "02:00:00:00:00:01", "--password-stdin", "--access", "acc0"}, "pw\n", []string{
			"claims need a claim token (an ISP attaches devices with POST /v1/isps/{isp}/devices) (HTTP 403",
			"\n  `ctl claim` takes a claim token (an installer's: [api] claim_token_files) or the operator's; with the ISP's token attach the device to its customer: `ispmux ctl --api " + r.apiURL + " device-add alpha 02:00:00:00:00:01 c-1 --access acc0`"}},
		{"claim", []string{"claim", "alpha", "c-1", "02:00:00:00:00:01", "--password-stdin"}, "wrong\n", []string{"Invalid credentials (HTTP 403",
			"\n  the ISP, customer ID or password is wrong (the API does not say which, on purpose): check them; the customer's ISP or the operator sets a new password with `ispmux ctl --api " + r.apiURL + " customer-set alpha c-1 --password-stdin`"}},
		// ispHint's hint stays: an ISP's token without --isp.
		{"alpha", []string{"events"}, "", []string{"this endpoint is the operator's (HTTP 403", "\n  an ISP's token sees its own ISP only: add --isp alpha"}},
	} {
		out, err := reportOf(t, c.stdin, r.api(c.who, c.args...)...)
		for _, w := range c.want {
			if err == nil || !strings.Contains(out, w) {
				t.Errorf("ctl %q as %s: %v\n%s\nwant: %s", c.args, c.who, err, out, w)
			}
		}
	}
	// The operator's claim over the control socket with a wrong password
	// is told the same (a trial's `ctl -c … claim` printed "Invalid
	// credentials" alone): the socket needs no token, but the claim still
	// needs the customer's password.
	out, err := reportOf(t, "wrong\n", "ctl", "--socket", r.sock, "claim", "alpha", "c-1", "02:00:00:00:00:01", "--password-stdin")
	if want := "\n  the ISP, customer ID or password is wrong (the API does not say which, on purpose): check them; the customer's ISP or the operator sets a new password with `ispmux ctl --socket " + r.sock + " customer-set alpha c-1 --password-stdin`"; err == nil || !strings.Contains(out, want) {
		t.Errorf("the operator's claim over the socket with a wrong password: %v\n%s\nwant: %s", err, out, want)
	}
}

// TestCtlConnectionHints: ctl over --api that cannot talk to the API at
// all says what to do after the transport's words. A trial's `ctl --api
// https://127.0.0.1:8443 isps` against an API with a certificate of its
// own CA printed "x509: certificate signed by unknown authority" and no
// word of --ca; a stopped appliance printed "connection refused" alone.
func TestCtlConnectionHints(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	defer srv.Close()
	tok := "a-token-long-enough-for-the-client-0123"
	out, err := reportOf(t, "", "ctl", "--api", srv.URL, "--token", tok, "isps")
	if err == nil || !strings.Contains(out, "certificate signed by unknown authority") ||
		!strings.Contains(out, "\n  the API's certificate is not signed by a CA this host trusts: give the CA that signed [api] tls_cert with --ca FILE") {
		t.Errorf("unknown authority: %v\n%s", err, out)
	}
	// The test server's certificate names 127.0.0.1 and example.com,
	// not localhost.
	u := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = reportOf(t, "", "ctl", "--api", u, "--ca", ca, "--token", tok, "isps")
	if err == nil || !strings.Contains(out, "\n  the API's certificate does not name the host of --api "+u) {
		t.Errorf("wrong host name: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	out, err = reportOf(t, "", "ctl", "--api", closed, "--token", tok, "isps")
	if err == nil || !strings.Contains(out, "connection refused") || !strings.Contains(out, "\n  nothing answers at --api "+closed+": is ispmux running") {
		t.Errorf("nothing listening: %v\n%s", err, out)
	}
}
