package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/appliance"
)

// testConfig writes a valid configuration whose state_dir is inside a
// temporary directory and returns its path and the state_dir.
func testConfig(t *testing.T) (path, stateDir string) {
	t.Helper()
	dir := t.TempDir()
	stateDir = filepath.Join(dir, "state")
	if err := os.Mkdir(stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "ispmux.toml")
	cfg := fmt.Sprintf("version = 1\n[appliance]\nstate_dir = %q\n"+
		"[[access]]\ninterface = \"acc0\"\naddress = \"100.64.0.1\"\n"+
		"[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\n", stateDir)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, stateDir
}

// fakeAppliance serves a control socket in stateDir: /status, and /events
// from a log holding Seq oldest..newest. It records the queries it gets.
type fakeAppliance struct {
	oldest, newest uint64
	mu             sync.Mutex
	queries        []string
}

func (f *fakeAppliance) serve(t *testing.T, stateDir string) {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(stateDir, appliance.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(appliance.Status{Uptime: "42s", Bindings: []appliance.BindingStatus{}})
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f.mu.Lock()
		f.queries = append(f.queries, r.URL.RawQuery)
		oldest, newest := f.oldest, f.newest
		f.mu.Unlock()
		from, n := oldest, uint64(1000)
		if s := q.Get("last"); s != "" {
			n, _ = strconv.ParseUint(s, 10, 64)
			if newest > n {
				from = max(newest-n+1, oldest)
			}
		} else {
			after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
			from = max(after+1, oldest)
		}
		evs := []appliance.EventStatus{}
		for s := from; s <= newest && uint64(len(evs)) < n; s++ {
			evs = append(evs, appliance.EventStatus{Seq: s, Kind: "bound", MAC: "02:00:00:00:00:01"})
		}
		w.Header().Set("Ispmux-Oldest-Seq", strconv.FormatUint(oldest, 10))
		w.Header().Set("Ispmux-Newest-Seq", strconv.FormatUint(newest, 10))
		_ = json.NewEncoder(w).Encode(evs)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
}

func runCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var o, e bytes.Buffer
	err = run(ctx, args, &o, &e)
	return o.String(), e.String(), err
}

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
		{[]string{"ctl", "-c", cfg, "stats"}, `ctl: unknown command "stats"`},
		{[]string{"ctl", "-c", cfg}, "ctl: missing status or events"},
	} {
		_, _, err := runCmd(t, tt.args...)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v (exit %d), want a usage error (exit 2) containing %q", tt.args, err, exitCode(err), tt.want)
		}
	}
	// Without extra arguments check succeeds.
	if out, _, err := runCmd(t, "check", "-c", cfg); err != nil || !strings.Contains(out, cfg+": ok") {
		t.Errorf("check -c %s: %v %q", cfg, err, out)
	}
}

// TestCtlConfigAfterCommand: -c is read wherever it is, not only before
// the ctl command word.
func TestCtlConfigAfterCommand(t *testing.T) {
	cfg, state := testConfig(t)
	f := &fakeAppliance{oldest: 1, newest: 3}
	f.serve(t, state)
	for _, args := range [][]string{
		{"ctl", "-c", cfg, "status"},
		{"ctl", "status", "-c", cfg},
	} {
		out, _, err := runCmd(t, args...)
		if err != nil || !strings.Contains(out, `"uptime": "42s"`) {
			t.Errorf("%q: %v\n%s", args, err, out)
		}
	}
	for _, args := range [][]string{
		{"ctl", "events", "-c", cfg, "1"},
		{"ctl", "events", "1", "-c", cfg},
	} {
		out, _, err := runCmd(t, args...)
		var evs []appliance.EventStatus
		if err != nil || json.Unmarshal([]byte(out), &evs) != nil || len(evs) != 2 || evs[0].Seq != 2 {
			t.Errorf("%q: %v\n%s", args, err, out)
		}
	}
}

func TestCtlEventsNewestAndPaging(t *testing.T) {
	cfg, state := testConfig(t)
	f := &fakeAppliance{oldest: 1, newest: 1500}
	f.serve(t, state)

	// No N: the newest 100, oldest first, and how to see the older ones.
	out, errOut, err := runCmd(t, "ctl", "-c", cfg, "events")
	if err != nil {
		t.Fatal(err)
	}
	var evs []appliance.EventStatus
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(evs) != 100 || evs[0].Seq != 1401 || evs[99].Seq != 1500 {
		t.Errorf("got %d events from seq %d, want the newest 100 (1401..1500)", len(evs), evs[0].Seq)
	}
	if want := "the newest 100 events (seq 1401..1500); the log holds seq 1..1500: `ispmux ctl -c " + cfg + " events N`"; !strings.Contains(errOut, want) {
		t.Errorf("notice %q lacks %q", errOut, want)
	}

	// N: the events after N, and how to get the next page.
	out, errOut, err = runCmd(t, "ctl", "-c", cfg, "events", "0")
	if err != nil {
		t.Fatal(err)
	}
	evs = nil
	if err := json.Unmarshal([]byte(out), &evs); err != nil || len(evs) != 1000 || evs[0].Seq != 1 {
		t.Errorf("events 0: %v, %d events", err, len(evs))
	}
	if want := "events seq 1..1000; the log holds up to seq 1500: `ispmux ctl -c " + cfg + " events 1000` shows the next ones"; !strings.Contains(errOut, want) {
		t.Errorf("notice %q lacks %q", errOut, want)
	}
	// The last page: no notice.
	if _, errOut, err = runCmd(t, "ctl", "-c", cfg, "events", "1000"); err != nil || errOut != "" {
		t.Errorf("events 1000: %v, notice %q", err, errOut)
	}
	f.mu.Lock()
	q := f.queries
	f.mu.Unlock()
	if len(q) != 3 || q[0] != "last=100" || q[1] != "after=0" || q[2] != "after=1000" {
		t.Errorf("queries %q", q)
	}

	// A log that fits: everything, no notice.
	f.mu.Lock()
	f.oldest, f.newest = 1, 5
	f.mu.Unlock()
	out, errOut, err = runCmd(t, "ctl", "-c", cfg, "events")
	evs = nil
	if err != nil || json.Unmarshal([]byte(out), &evs) != nil || len(evs) != 5 || errOut != "" {
		t.Errorf("small log: %v, %d events, notice %q", err, len(evs), errOut)
	}
}
