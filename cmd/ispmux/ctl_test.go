package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/api/client"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
)

// column checks that every line of a table has its cell of column name
// where the header has name (tabwriter alignment) and returns the rows
// as maps.
func column(t *testing.T, out string) []map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	header := lines[0]
	names := strings.Fields(header)
	var starts []int
	for _, n := range names {
		starts = append(starts, strings.Index(header, n))
	}
	var rows []map[string]string
	for _, l := range lines[1:] {
		row := map[string]string{}
		for i, n := range names {
			if starts[i] > len(l) {
				t.Fatalf("row %q shorter than the header %q", l, header)
			}
			if starts[i] > 0 && l[starts[i]-1] != ' ' {
				t.Fatalf("row %q: column %s does not start at %d (header %q)", l, n, starts[i], header)
			}
			end := len(l)
			if i+1 < len(names) {
				end = min(starts[i+1], len(l))
			}
			row[n] = strings.TrimSpace(l[starts[i]:end])
		}
		rows = append(rows, row)
	}
	return rows
}

// TestCtlOverAPI drives every tenant command over the API (the real
// api.Server over a real tenants service) with tokens from the flag, the
// environment and a file, and checks the tables and the JSON.
func TestCtlOverAPI(t *testing.T) {
	r := newRig(t, nil)
	op := func(args ...string) []string { return r.api("operator", args...) }

	// Tokens: --token, $ISPMUX_TOKEN, --token-file.
	out, _ := r.ok("", op("isps")...)
	rows := column(t, out)
	if len(rows) != 2 || rows[0]["ISP"] != "alpha" || rows[1]["ISP"] != "beta" || rows[0]["CUSTOMERS"] != "0" {
		t.Fatalf("isps:\n%s", out)
	}
	t.Setenv(tokenEnv, r.tokens["beta"])
	out, _ = r.ok("", "ctl", "isps", "--api", r.apiURL)
	if rows := column(t, out); len(rows) != 1 || rows[0]["ISP"] != "beta" {
		t.Errorf("isps with beta's token from $%s:\n%s", tokenEnv, out)
	}
	tf := filepath.Join(t.TempDir(), "alpha.txt")
	if err := os.WriteFile(tf, []byte(r.tokens["alpha"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ = r.ok("", "ctl", "isps", "--api", r.apiURL, "--token-file", tf, "--json")
	var isps tenants.Page[tenants.ISPInfo]
	if err := json.Unmarshal([]byte(out), &isps); err != nil || len(isps.Items) != 1 || isps.Items[0].Name != "alpha" {
		t.Errorf("isps --token-file --json: %v\n%s", err, out)
	}

	// Customers: the password from stdin, never echoed.
	const pw = "correct horse battery"
	out, errOut := r.ok(pw+"\n", op("customer-add", "alpha", "c-1", "--password-stdin", "--device-limit", "2")...)
	if !strings.Contains(out, "customer:") || !strings.Contains(out, "c-1") || !strings.Contains(out, "0 of 2") ||
		strings.Contains(out+errOut, pw) {
		t.Errorf("customer-add:\n%s\n%s", out, errOut)
	}
	r.ok("", op("customer-add", "alpha", "c-2", "--suspended")...)
	r.ok("", op("customer-add", "beta", "b-1")...)
	out, _ = r.ok("", op("customers", "alpha")...)
	rows = column(t, out)
	if len(rows) != 2 || rows[0]["CUSTOMER"] != "c-1" || rows[0]["STATUS"] != "active" || rows[0]["LIMIT"] != "2" ||
		rows[1]["CUSTOMER"] != "c-2" || rows[1]["STATUS"] != "suspended" {
		t.Errorf("customers:\n%s", out)
	}
	// Pages: --limit, the next page's hint, --after.
	out, errOut = r.ok("", op("customers", "alpha", "--limit", "1")...)
	_, cursor, _ := strings.Cut(errOut, "customers alpha --limit 1 --after ")
	cursor, _, found := strings.Cut(cursor, "` shows the next page")
	if rows := column(t, out); len(rows) != 1 || !found {
		t.Fatalf("customers --limit 1:\n%s%s", out, errOut)
	}
	out, errOut = r.ok("", op("customers", "alpha", "--limit", "1", "--after", cursor)...)
	if rows := column(t, out); len(rows) != 1 || rows[0]["CUSTOMER"] != "c-2" || errOut != "" {
		t.Errorf("customers --after c-1:\n%s%s", out, errOut)
	}
	out, _ = r.ok("", op("customers", "alpha", "--json")...)
	var cp tenants.Page[tenants.Customer]
	if err := json.Unmarshal([]byte(out), &cp); err != nil || len(cp.Items) != 2 || cp.Items[0].DeviceLimit != 2 {
		t.Errorf("customers --json: %v\n%s", err, out)
	}
	out, _ = r.ok("", op("customer-set", "alpha", "c-2", "--status", "active", "--device-limit", "3")...)
	if !strings.Contains(out, "active") || !strings.Contains(out, "0 of 3") {
		t.Errorf("customer-set:\n%s", out)
	}
	out, _ = r.ok("", op("customer", "alpha", "c-2", "--json")...)
	var cu tenants.Customer
	if err := json.Unmarshal([]byte(out), &cu); err != nil || cu.Status != tenants.StatusActive || cu.DeviceLimit != 3 {
		t.Errorf("customer --json: %v\n%s", err, out)
	}
	r.ok("new secret\n", op("customer-set", "alpha", "c-2", "--password-stdin")...)

	// An ISP token sees another ISP's customers as not existing: exit 1,
	// the problem's title and detail.
	_, _, err := runCmd(t, "", r.api("alpha", "customers", "beta")...)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 404 || exitCode(err) != 1 {
		t.Errorf("alpha reads beta: %v", err)
	}

	// Import: one result per line, exit 1 when a line failed.
	nd := filepath.Join(t.TempDir(), "c.ndjson")
	if err := os.WriteFile(nd, []byte(`{"customer_id":"i-1"}`+"\n"+`{"customer_id":"i-2","device_limit":2}`+"\n"+`{"bad":true}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = runCmd(t, "", op("import", "alpha", nd)...)
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "1 of 3 lines failed") {
		t.Errorf("import with a bad line: %v", err)
	}
	if !strings.Contains(out, "i-1") || !strings.Contains(out, "created") || !strings.Contains(out, "error") ||
		!strings.Contains(errOut, "3 lines: 2 created, 0 updated, 0 unchanged, 1 failed") {
		t.Errorf("import:\n%s%s", out, errOut)
	}
	// A rerun from stdin, as JSON: unchanged.
	out, errOut = r.ok(`{"customer_id":"i-1"}`+"\n", op("import", "alpha", "-", "--json")...)
	var ir tenants.ImportResult
	if err := json.Unmarshal([]byte(out), &ir); err != nil || ir.Result != "unchanged" || ir.Line != 1 {
		t.Errorf("import rerun: %v %q", err, out)
	}
	if !strings.Contains(errOut, "import: 1 line: 0 created") {
		t.Errorf("import rerun's summary (one line):\n%s", errOut)
	}

	// Devices.
	const mac1, mac2, mac3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
	out, _ = r.ok("", op("device-add", "alpha", mac1, "c-2", "--access", "acc0")...)
	if !strings.Contains(out, mac1) || !strings.Contains(out, "acc0") {
		t.Errorf("device-add:\n%s", out)
	}
	// Bulk attach: one result per line, exit 1 when a line failed.
	out, errOut, err = runCmd(t, `{"mac":"02:00:00:00:00:21","customer_id":"i-2"}`+"\n"+`{"mac":"02:00:00:00:00:22","customer_id":"nobody"}`+"\n",
		op("device-import", "alpha", "-")...)
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "(request id ") || !strings.Contains(out, "02:00:00:00:00:21  i-2") || !strings.Contains(out, "attached") ||
		!strings.Contains(out, "customer nobody") || !strings.Contains(errOut, "2 lines: 1 attached, 0 moved, 0 unchanged, 1 failed") {
		t.Errorf("device-import: %v\n%s%s", err, out, errOut)
	}
	// --errors: the failed lines only (5000 rows of "attached" hid the
	// failures: a trial); the counts at the end either way.
	out, errOut, _ = runCmd(t, `{"mac":"02:00:00:00:00:21","customer_id":"i-2"}`+"\n"+`{"mac":"02:00:00:00:00:22","customer_id":"nobody"}`+"\n",
		op("device-import", "alpha", "-", "--errors")...)
	if strings.Contains(out, "02:00:00:00:00:21") || !strings.Contains(out, "customer nobody") || !strings.Contains(errOut, "1 unchanged, 1 failed") {
		t.Errorf("device-import --errors:\n%s%s", out, errOut)
	}
	r.ok("", op("device-del", "alpha", "02:00:00:00:00:21")...) // the counts below are without it
	// A claim: a claim token, the customer's password from stdin.
	out, errOut = r.ok(pw+"\n", r.api("claim", "claim", "alpha", "c-1", mac2, "--password-stdin")...)
	if !strings.Contains(out, "claim") || strings.Contains(out+errOut, pw) {
		t.Errorf("claim:\n%s%s", out, errOut)
	}
	// A wrong password: the generic problem, exit 1.
	_, _, err = runCmd(t, "wrong\n", r.api("claim", "claim", "alpha", "c-1", mac3, "--password-stdin")...)
	if !errors.Is(err, tenants.ErrBadCredentials) || exitCode(err) != 1 {
		t.Errorf("claim with a wrong password: %v", err)
	}
	// Over the device limit (2: mac2 and, now, mac3): the devices named.
	time.Sleep(20 * time.Millisecond) // past the claim back-off
	r.ok(pw+"\n", r.api("claim", "claim", "alpha", "c-1", mac3, "--password-stdin")...)
	_, _, err = runCmd(t, pw+"\n", r.api("claim", "claim", "alpha", "c-1", "02:00:00:00:00:04", "--password-stdin")...)
	if !errors.As(err, &ce) || len(ce.Devices) != 2 {
		t.Errorf("claim over the limit: %v", err)
	}
	r.ok(pw+"\n", r.api("claim", "claim", "alpha", "c-1", "02:00:00:00:00:04", "--password-stdin", "--replace", mac3)...)

	out, _ = r.ok("", op("devices")...)
	rows = column(t, out)
	if len(rows) != 3 || rows[0]["MAC"] != mac1 || rows[0]["ACCESS"] != "acc0" || rows[0]["SOURCE"] != "api" || rows[1]["SOURCE"] != "claim" {
		t.Errorf("devices:\n%s", out)
	}
	out, _ = r.ok("", op("devices", "alpha", "--customer", "c-1")...)
	if rows := column(t, out); len(rows) != 2 || rows[0]["CUSTOMER"] != "c-1" {
		t.Errorf("devices --customer:\n%s", out)
	}
	// The operator without an ISP: that customer ID's devices at every
	// ISP (GET /v1/devices?customer_id=).
	out, _ = r.ok("", op("devices", "--customer", "c-1")...)
	if rows := column(t, out); len(rows) != 2 || rows[0]["CUSTOMER"] != "c-1" || rows[1]["CUSTOMER"] != "c-1" || rows[0]["ISP"] != "alpha" {
		t.Errorf("devices --customer without ISP:\n%s", out)
	}
	out, _ = r.ok("", op("block", mac1)...)
	if !strings.Contains(out, "blocked:") || !strings.Contains(out, "yes") {
		t.Errorf("block:\n%s", out)
	}
	out, _ = r.ok("", op("unblock", mac1, "--json")...)
	var d tenants.Device
	if err := json.Unmarshal([]byte(out), &d); err != nil || d.Blocked {
		t.Errorf("unblock --json: %v\n%s", err, out)
	}
	// A MAC no ISP has: blocked all the same (before: 404), a device of
	// no ISP in the operator's list, gone again with its unblock.
	out, _ = r.ok("", op("block", "02:00:00:00:00:66")...)
	if !strings.Contains(out, "blocked:") || !strings.Contains(out, "yes") {
		t.Errorf("block of a MAC no ISP has:\n%s", out)
	}
	out, _ = r.ok("", op("devices")...)
	if !strings.Contains(out, "02:00:00:00:00:66") {
		t.Errorf("devices after the block of a MAC no ISP has:\n%s", out)
	}
	r.ok("", op("unblock", "02:00:00:00:00:66")...)
	if out, _ = r.ok("", op("devices")...); strings.Contains(out, "02:00:00:00:00:66") {
		t.Errorf("devices after its unblock:\n%s", out)
	}
	out, _ = r.ok("", op("move", mac1, "beta", "b-1")...)
	if !strings.Contains(out, "beta") || !strings.Contains(out, "b-1") {
		t.Errorf("move:\n%s", out)
	}

	// A binding in the store (what the DHCP path writes) and its event.
	hw := subscribers.MAC{2, 0, 0, 0, 0, 1}
	if _, err := r.store.CommitBindingEvent(subscribers.Binding{MAC: hw, Access: "acc0", ISP: "beta", Customer: "b-1",
		IP: netip.MustParseAddr("198.51.100.50"), Expires: time.Now().Add(time.Hour)},
		subscribers.Event{Kind: subscribers.EventBound, MAC: hw, ISP: "beta", Customer: "b-1", IP: netip.MustParseAddr("198.51.100.50")}); err != nil {
		t.Fatal(err)
	}
	// The device's pin: to the access it is bound on (the ISP's token),
	// cleared, named; one of the three flags exactly.
	for _, c := range []struct {
		flags []string
		want  string
	}{{[]string{"--bound"}, "acc0"}, {[]string{"--any-access"}, ""}, {[]string{"--access", "acc1"}, "acc1"}} {
		out, _ = r.ok("", r.api("beta", append([]string{"device-set", "beta", mac1, "--json"}, c.flags...)...)...)
		d = tenants.Device{}
		if err := json.Unmarshal([]byte(out), &d); err != nil || d.Access != c.want {
			t.Errorf("device-set %v: %v\n%s, want access %q", c.flags, err, out, c.want)
		}
	}
	for _, flags := range [][]string{nil, {"--bound", "--any-access"}, {"--access", ""}} {
		if _, _, err := runCmd(t, "", op(append([]string{"device-set", "beta", mac1}, flags...)...)...); exitCode(err) != 2 {
			t.Errorf("device-set %v: %v, want a usage error", flags, err)
		}
	}
	out, _ = r.ok("", op("bindings")...)
	if rows := column(t, out); len(rows) != 1 || rows[0]["IP"] != "198.51.100.50" || rows[0]["VLAN"] != "-" {
		t.Errorf("bindings:\n%s", out)
	}
	out, _ = r.ok("", r.api("beta", "bindings", "beta", "--json")...)
	var bp tenants.Page[tenants.Binding]
	if err := json.Unmarshal([]byte(out), &bp); err != nil || len(bp.Items) != 1 {
		t.Errorf("bindings beta --json: %v\n%s", err, out)
	}
	out, _ = r.ok("", r.api("alpha", "bindings", "alpha")...)
	if rows := column(t, out); len(rows) != 0 {
		t.Errorf("alpha's bindings:\n%s", out)
	}

	// One subscriber in one view, also written with dashes.
	out, _ = r.ok("", op("subscriber", "02-00-00-00-00-01")...)
	for _, want := range []string{"subscriber 02:00:00:00:00:01", "customer:", "b-1", "198.51.100.50", "device-attached", "device-blocked", "moved", "bound"} {
		if !strings.Contains(out, want) {
			t.Errorf("subscriber lacks %q:\n%s", want, out)
		}
	}
	out, _ = r.ok("", r.api("beta", "subscriber", mac1, "--isp", "beta", "--json")...)
	var sv subscriberView
	if err := json.Unmarshal([]byte(out), &sv); err != nil || sv.Device == nil || sv.Binding == nil || len(sv.Events) == 0 {
		t.Errorf("subscriber --isp beta --json: %v\n%s", err, out)
	}
	for _, ev := range sv.Events {
		if ev.ISP != "beta" {
			t.Errorf("beta's view shows %+v", ev)
		}
	}
	_, _, err = runCmd(t, "", op("subscriber", "02:00:00:00:00:99")...)
	if err == nil || exitCode(err) != 1 {
		t.Errorf("unknown subscriber: %v", err)
	}

	// Events: the actor and request id of each change.
	out, _ = r.ok("", op("events")...)
	rows = column(t, out)
	if len(rows) < 10 || rows[0]["KIND"] != "customer-created" || rows[0]["ACTOR"] == "-" {
		t.Errorf("events:\n%s", out)
	}
	out, _ = r.ok("", r.api("beta", "events", "--isp", "beta", "--json")...)
	var el client.EventList
	if err := json.Unmarshal([]byte(out), &el); err != nil || len(el.Items) == 0 {
		t.Errorf("events --isp beta --json: %v\n%s", err, out)
	}
	for _, ev := range el.Items {
		if ev.ISP != "beta" {
			t.Errorf("beta's events show %+v", ev)
		}
	}

	out, _ = r.ok("", op("stats")...)
	if !strings.Contains(out, "customers:") || !strings.Contains(out, "bindings:") {
		t.Errorf("stats:\n%s", out)
	}
	out, _ = r.ok("", op("stats", "--json")...)
	var st tenants.Stats
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.ISPs != 2 || st.Customers != 5 || st.Devices != 3 || st.Bindings != 1 {
		t.Errorf("stats --json: %v %+v", err, st)
	}

	out, _ = r.ok("", op("device-del", "alpha", mac2)...)
	if !strings.Contains(out, "detached "+mac2) {
		t.Errorf("device-del: %q", out)
	}
	out, _ = r.ok("", op("customer-del", "alpha", "c-1")...)
	if !strings.Contains(out, "deleted customer c-1") {
		t.Errorf("customer-del: %q", out)
	}
	if _, _, err := runCmd(t, "", op("customer", "alpha", "c-1")...); !errors.Is(err, tenants.ErrNotFound) {
		t.Errorf("deleted customer: %v", err)
	}
	// The ISP's token may not block (operator): 403, exit 1.
	if _, _, err := runCmd(t, "", r.api("alpha", "block", mac1)...); !errors.Is(err, tenants.ErrForbidden) || exitCode(err) != 1 {
		t.Errorf("alpha blocks: %v", err)
	}
}

// TestCtlOverSocket: the same tenant commands over the control socket,
// as the operator without a token; the actor is "socket".
func TestCtlOverSocket(t *testing.T) {
	r := newRig(t, nil)
	for _, target := range [][]string{{"--socket", r.sock}, {"-c", r.cfg}} {
		id := "s-" + target[0][len(target[0])-1:]
		r.ok("", append([]string{"ctl", "customer-add", "beta", id}, target...)...)
		out, _ := r.ok("", append([]string{"ctl", "customers", "beta"}, target...)...)
		if !strings.Contains(out, id) {
			t.Errorf("%q: customers:\n%s", target, out)
		}
	}
	out, _ := r.ok("", "ctl", "events", "--socket", r.sock, "--json")
	var el client.EventList
	if err := json.Unmarshal([]byte(out), &el); err != nil || len(el.Items) != 2 || el.Items[0].Actor != "operator:socket" {
		t.Errorf("events over the socket: %v\n%s", err, out)
	}
}

// eventLog is a tenants.Service with only an event log, seq oldest..newest,
// every third event alpha's, the others beta's. grow events are appended
// after each read (a busy box); a read past maxReads (0: none) fails.
type eventLog struct {
	tenants.Service
	mu             sync.Mutex
	oldest, newest uint64
	calls          []string
	grow           uint64
	maxReads       int
}

func (f *eventLog) HasISP(name string) bool { return name == "alpha" || name == "beta" }

func (f *eventLog) Events(_ context.Context, isp string, after uint64, limit int) (tenants.EventPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, isp+":"+strconv.FormatUint(after, 10)+":"+strconv.Itoa(limit))
	if f.maxReads > 0 && len(f.calls) > f.maxReads {
		return tenants.EventPage{}, fmt.Errorf("read %d of the event log: over %d", len(f.calls), f.maxReads)
	}
	defer func() { f.newest += f.grow }()
	p := tenants.EventPage{Events: []tenants.Event{}, Oldest: f.oldest, Newest: f.newest}
	for s := max(after+1, f.oldest); s <= f.newest && len(p.Events) < limit; s++ {
		ev := tenants.Event{Seq: s, Kind: "bound", MAC: "02:00:00:00:00:01", ISP: "beta"}
		if s%3 == 0 {
			ev.ISP = "alpha"
		}
		if isp == "" || ev.ISP == isp {
			p.Events = append(p.Events, ev)
		}
	}
	return p, nil
}

func seqs(t *testing.T, out string) []uint64 {
	t.Helper()
	var l client.EventList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var s []uint64
	for _, e := range l.Items {
		s = append(s, e.Seq)
	}
	return s
}

func TestCtlEventsNewestAndPaging(t *testing.T) {
	f := &eventLog{oldest: 1, newest: 1500}
	r := newRig(t, f)
	cfg := r.cfg

	// No N: the newest 100, oldest first, and how to see the older ones.
	out, errOut := r.ok("", "ctl", "-c", cfg, "events", "--json")
	if s := seqs(t, out); len(s) != 100 || s[0] != 1401 || s[99] != 1500 {
		t.Errorf("got %d events from seq %v, want the newest 100 (1401..1500)", len(s), s[:1])
	}
	if want := "the newest 100 events (seq 1401..1500); the log holds seq 1..1500: `ispmux ctl -c " + cfg + " events N`"; !strings.Contains(errOut, want) {
		t.Errorf("notice %q lacks %q", errOut, want)
	}
	// The table: the same events.
	out, _ = r.ok("", "ctl", "-c", cfg, "events")
	if rows := column(t, out); len(rows) != 100 || rows[0]["SEQ"] != "1401" || rows[0]["KIND"] != "bound" {
		t.Errorf("events table: %d rows\n%s", len(rows), out)
	}

	// N: the events after N, and how to get the next page.
	out, errOut = r.ok("", "ctl", "-c", cfg, "events", "0", "--json")
	if s := seqs(t, out); len(s) != 1000 || s[0] != 1 {
		t.Errorf("events 0: %d events", len(s))
	}
	if want := "events seq 1..1000; the log holds up to seq 1500: `ispmux ctl -c " + cfg + " events 1000` shows the next ones"; !strings.Contains(errOut, want) {
		t.Errorf("notice %q lacks %q", errOut, want)
	}
	// The last page: no notice.
	if _, errOut = r.ok("", "ctl", "-c", cfg, "events", "1000"); errOut != "" {
		t.Errorf("events 1000: notice %q", errOut)
	}
	// --limit.
	if out, _ = r.ok("", "ctl", "--socket", r.sock, "events", "--limit", "10", "--json"); len(seqs(t, out)) != 10 {
		t.Errorf("events --limit 10:\n%s", out)
	}

	// One ISP's newest 100: found by widening the window.
	out, errOut = r.ok("", "ctl", "--socket", r.sock, "events", "--isp", "alpha", "--json")
	s := seqs(t, out)
	if len(s) != 100 || s[99] != 1500 || s[0] != 1203 {
		t.Errorf("alpha's newest: %d events, %v..%v", len(s), s[0], s[len(s)-1])
	}
	if !strings.Contains(errOut, "--socket "+r.sock+" events --isp alpha N`") {
		t.Errorf("notice %q", errOut)
	}

	// A log that fits: everything, no notice.
	f.mu.Lock()
	f.oldest, f.newest = 1, 5
	f.mu.Unlock()
	out, errOut = r.ok("", "ctl", "-c", cfg, "events", "--json")
	if s := seqs(t, out); len(s) != 5 || errOut != "" {
		t.Errorf("small log: %d events, notice %q", len(s), errOut)
	}
	// Trimmed: after 0 is "from the oldest", after 2 when the log starts at 10 missed some.
	f.mu.Lock()
	f.oldest, f.newest = 10, 12
	f.mu.Unlock()
	if _, errOut = r.ok("", "ctl", "-c", cfg, "events", "2"); !strings.Contains(errOut, "events after seq 2 were trimmed") {
		t.Errorf("trimmed: notice %q", errOut)
	}
	// Past the newest: nothing was trimmed (it said so).
	if _, errOut = r.ok("", "ctl", "-c", cfg, "events", "99999"); !strings.Contains(errOut, "seq 99999 is past the newest event, seq 12") ||
		strings.Contains(errOut, "trimmed") {
		t.Errorf("past the newest: notice %q", errOut)
	}
}

// The hints of `ctl events` name the command that shows the next events:
// it put the events flags (--isp, --request-id) before the command word,
// where they are not ctl's, so the line pasted was refused ("flag
// provided but not defined: -isp"). They follow it, and the line runs.
func TestCtlEventsHintsRun(t *testing.T) {
	f := &eventLog{oldest: 1, newest: 1500}
	r := newRig(t, f)
	_, errOut := r.ok("", "ctl", "--socket", r.sock, "events", "--isp", "alpha", "--limit", "5")
	args := hintArgs(t, errOut)
	if want := []string{"ctl", "--socket", r.sock, "events", "--isp", "alpha", "--limit", "5", "N"}; !slices.Equal(args, want) {
		t.Fatalf("newest: the hint runs %q, want %q", args, want)
	}
	args[len(args)-1] = "0"
	_, errOut = r.ok("", args...)
	for range 2 { // the next page, as each hint names it
		if !strings.Contains(errOut, "shows the next ones") {
			t.Fatalf("%q: no next page named: %q", args, errOut)
		}
		args = hintArgs(t, errOut)
		out, e := r.ok("", append(args, "--json")...)
		if s := seqs(t, out); len(s) != 5 || s[0]%3 != 0 {
			t.Errorf("%q: seq %v, want 5 of alpha's", args, s)
		}
		errOut = e
	}
}

// ctl events --request-id reads the log from AFTER-SEQ to its newest; on
// a box appending more events per read than a read returns (1000), the
// newest ran away from it and the read never ended. It ends at the newest
// its first read found; the newest 100 of a request likewise (the whole
// log of 100,000 events read in 1000s, once).
func TestCtlEventsRequestIDEndsOnAGrowingLog(t *testing.T) {
	f := &eventLog{oldest: 1, newest: 100_000, grow: 2 * tenants.MaxLimit, maxReads: 500}
	r := newRig(t, f)
	for _, args := range [][]string{
		{"ctl", "--socket", r.sock, "events", "--request-id", "none-such", "0"},
		{"ctl", "--socket", r.sock, "events", "--request-id", "none-such"},
	} {
		f.mu.Lock()
		f.calls, f.newest = nil, 100_000
		f.mu.Unlock()
		out, errOut, err := runCmd(t, "", args...)
		f.mu.Lock()
		n := len(f.calls)
		f.mu.Unlock()
		if err != nil || n > 102 || !strings.Contains(errOut, "no event") {
			t.Errorf("%q: %v after %d reads\n%s%s", args[3:], err, n, out, errOut)
		}
	}
}

// readEvents is the paging of both newestEvents (up to the head's
// newest) and matchingAfter (up to the first page's newest): on a log
// that grows by 1000 events a read it follows Next to the end it was
// given, not to a newest that runs away, and stops where its page
// function says so, returning that page's Next.
func TestReadEvents(t *testing.T) {
	f := &eventLog{oldest: 1, newest: 3500, grow: tenants.MaxLimit}
	r := newRig(t, f)
	c, err := client.NewSocket(r.sock, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &ctlEnv{ctx: context.Background()}
	read := func(after, end uint64, pages int) (got []uint64, next string) {
		t.Helper()
		f.mu.Lock()
		f.newest = 3500
		f.mu.Unlock()
		next, err := readEvents(e, c, "", "", after, end, func(l client.EventList) bool {
			for _, ev := range l.Items {
				got = append(got, ev.Seq)
			}
			pages--
			return pages > 0
		})
		if err != nil {
			t.Fatal(err)
		}
		return got, next
	}
	for _, tt := range []struct {
		name       string
		after, end uint64
		pages      int
		want       string // the seqs read, all of them, and the Next
	}{
		{"to the first page's newest", 500, toFirstNewest, 100, "501..3500, next 3500"},
		{"to an end given", 0, 2000, 100, "1..2000, next 2000"},
		{"to an end inside a page", 0, 1500, 100, "1..2000, next 2000"},
		{"stopped by its page function", 0, toFirstNewest, 2, "1..2000, next 2000"},
		{"past the newest", 9000, toFirstNewest, 100, "none, next 3500"},
	} {
		evs, next := read(tt.after, tt.end, tt.pages)
		got := "none"
		if len(evs) > 0 {
			got = fmt.Sprintf("%d..%d", evs[0], evs[len(evs)-1])
			if len(evs) != int(evs[len(evs)-1]-evs[0]+1) {
				got += fmt.Sprintf(" (%d of them)", len(evs))
			}
		}
		if got += ", next " + next; got != tt.want {
			t.Errorf("%s: read %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestCtlEventsFollow: --follow prints the events as they are stored,
// from after AFTER-SEQ, until interrupted.
func TestCtlEventsFollow(t *testing.T) {
	r := newRig(t, nil)
	r.ok("", r.api("operator", "customer-add", "alpha", "before")...)
	for _, tt := range []struct {
		name string
		args []string
		json bool
	}{
		{"api json", r.api("operator", "events", "--follow", "0", "--json"), true},
		{"socket table", []string{"ctl", "events", "--follow", "--socket", r.sock, "0"}, false},
		{"isp", r.api("alpha", "events", "--follow", "--isp", "alpha", "0", "--json"), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			var out, errOut lockedBuffer
			done := make(chan error, 1)
			go func() { done <- run(ctx, tt.args, strings.NewReader(""), &out, &errOut) }()
			id := "f-" + strings.ReplaceAll(tt.name, " ", "-")
			r.ok("", r.api("operator", "customer-add", "alpha", id)...)
			r.ok("", r.api("operator", "customer-add", "beta", id)...)
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(out.String(), id) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond) // beta's event, if it were shown
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("follow: %v\n%s", err, errOut.String())
			}
			o := out.String()
			if !strings.Contains(o, "before") || !strings.Contains(o, id) {
				t.Fatalf("follow printed:\n%s", o)
			}
			if tt.json {
				var isps []string
				for _, l := range strings.Split(strings.TrimSpace(o), "\n") {
					var ev tenants.Event
					if err := json.Unmarshal([]byte(l), &ev); err != nil {
						t.Fatalf("line %q: %v", l, err)
					}
					isps = append(isps, ev.ISP)
				}
				if tt.name == "isp" && strings.Contains(strings.Join(isps, " "), "beta") {
					t.Errorf("alpha's stream shows beta's events: %v", isps)
				}
			} else if !strings.HasPrefix(o, "SEQ ") || !strings.Contains(o, "customer-created") {
				t.Errorf("follow table:\n%s", o)
			}
		})
	}
}

// TestCtlISPTokenWithoutISPHint: an ISP's token without --isp (or the
// ISP argument of bindings and devices) asks for the operator's endpoint
// of every ISP's events (devices, bindings, device); the refusal says
// what to do: add --isp with the token's ISP, or name it.
func TestCtlISPTokenWithoutISPHint(t *testing.T) {
	r := newRig(t, nil)
	for _, c := range []struct {
		args []string
		want string
	}{
		{r.api("alpha", "events"), "add --isp alpha"},
		{r.api("alpha", "events", "--follow"), "add --isp alpha"},
		{r.api("alpha", "subscriber", "02:00:00:00:00:01"), "add --isp alpha"},
		{r.api("alpha", "bindings"), "name it (`ispmux ctl --api "},
		{r.api("alpha", "bindings"), " bindings alpha`)"},
		{r.api("alpha", "devices", "--limit", "5"), " devices alpha`)"},
		{r.api("alpha", "devices", "--customer", "c-1"), " devices alpha --customer c-1`)"},
	} {
		_, _, err := runCmd(t, "", c.args...)
		var b strings.Builder
		report(&b, err)
		if err == nil || !strings.Contains(b.String(), "this endpoint is the operator's") || !strings.Contains(b.String(), c.want) {
			t.Errorf("%q: %v\n%s", c.args, err, b.String())

		}
	}
	// A claim token may not read events whatever --isp says: no hint to
	// name the ISP, but the claim token's (authHint).
	for _, cmd := range []string{"events", "bindings", "devices"} {
		_, _, err := runCmd(t, "", r.api("claim", cmd)...)
		var h hinted
		if err == nil || !errors.As(err, &h) || strings.Contains(h.hint, "--isp") || strings.Contains(h.hint, " "+cmd+" ") ||
			!strings.HasPrefix(h.hint, "this is a claim token") {
			t.Errorf("claim token, %s: %v (hint %q)", cmd, err, h.hint)
		}
	}
}

// TestFollowedEventsAligned: ctl events --follow prints each event as it
// comes, in fixed-width columns: every column of every row starts under
// its header, as in the table without --follow, for the usual values of
// each (every kind, a reason of a few words, an ISP's actor), and the
// sequence numbers of a store restored from a backup (2^32 and a million
// a second since the backup: a field trial's were 4304987795, past the
// column, and every row after a restore was out of line), and those of a
// store created since numbers start at the clock (16 digits: every row
// of a new box's stream was out of line).
func TestFollowedEventsAligned(t *testing.T) {
	at := time.Date(2026, 12, 5, 2, 20, 13, 0, time.UTC)
	var evs []tenants.Event
	for i, k := range []subscribers.EventKind{
		subscribers.EventBound, subscribers.EventNak, subscribers.EventRateLimited, subscribers.EventClaimRefused,
		subscribers.EventCustomerCreated, subscribers.EventCustomerUpdated, subscribers.EventDeviceAttached,
		subscribers.EventAttachRefused, subscribers.EventOnboardingEnded, subscribers.EventSuppressed,
	} {
		ev := tenants.Event{Seq: uint64(1200 + i), Time: at, Kind: string(k)}
		switch i % 3 {
		case 0:
			ev.MAC, ev.ISP, ev.CustomerID, ev.IP = "02:00:00:00:00:07", "alpha", "c-12", "100.64.255.254"
			ev.Reason = "address not available"
		case 1:
			ev.ISP, ev.CustomerID, ev.Reason = "beta", "a-5", "status suspended, device_limit 3"
			ev.Actor, ev.RequestID = "isp:beta-1", "9ba6a62faa12a5d8249d39a4"
		case 2:
			ev.Actor, ev.RequestID = "operator:operator", "4658d3144a6c8d4a93f010a5"
		}
		evs = append(evs, ev)
	}
	// Restored from a copy a day old (subscribers' copy jump).
	evs = append(evs, tenants.Event{Seq: 1<<32 + 86400*1_000_000 + 1201, Time: at, Kind: string(subscribers.EventBound),
		MAC: "02:00:00:00:00:07", ISP: "alpha", CustomerID: "c-12", IP: "100.64.0.1", Reason: "lease 30s"})
	// A store created now numbers from the clock (microseconds since the
	// epoch: 16 digits), and so does its copy restored a day later.
	base := uint64(at.UnixMicro())
	for _, seq := range []uint64{base + 1, base + 1<<32 + 86400*1_000_000 + 1201} {
		evs = append(evs, tenants.Event{Seq: seq, Time: at, Kind: string(subscribers.EventRenewed),
			MAC: "02:00:00:00:00:07", ISP: "alpha", CustomerID: "c-12", IP: "100.64.0.1", Reason: "lease renewed for 30s"})
	}
	header := eventLine(eventHeader)
	for _, ev := range evs {
		row := eventLine(eventCells(ev))
		pos, hpos := 0, 0
		for i, c := range eventCells(ev) {
			at := strings.Index(row[pos:], c) + pos
			want := strings.Index(header[hpos:], eventHeader[i]) + hpos
			if at != want {
				t.Fatalf("%s: column %s starts at %d, its header at %d:\n%s\n%s", ev.Kind, eventHeader[i], at, want, header, row)
			}
			pos, hpos = at+len(c), want+len(eventHeader[i])
		}
	}
}
