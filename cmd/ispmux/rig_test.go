package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/api"
	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/auth"
	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
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
	writeTestConfig(t, path, stateDir, 0o644)
	return path, stateDir
}

// writeTestConfig writes testConfig's configuration, with stateDir, to
// path with mode perm.
func writeTestConfig(t *testing.T, path, stateDir string, perm os.FileMode) {
	t.Helper()
	cfg := fmt.Sprintf("version = 1\n[appliance]\nstate_dir = %q\n"+
		"[[access]]\ninterface = \"acc0\"\naddress = \"100.64.0.1\"\n"+
		"[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\n", stateDir)
	if err := os.WriteFile(path, []byte(cfg), perm); err != nil {
		t.Fatal(err)
	}
}

// rig is a running API: the real api.Server over a tenants service, on a
// loopback TCP port (apiURL, with tokens) and on a control socket in a
// configuration's state_dir (sock), next to a fake /status and /backup.
type rig struct {
	t      *testing.T
	cfg    string // a valid configuration whose state_dir holds sock
	sock   string
	apiURL string
	tokens map[string]string // operator, alpha, beta, claim
	dir    string
	store  *subscribers.Store // with a real tenants service
	ten    *tenants.Tenants
	backup []byte // what GET /backup sends
}

// newRig serves svc (nil: a real tenants.Tenants over a fresh store, ISPs
// alpha and beta).
func newRig(t *testing.T, svc tenants.Service) *rig {
	t.Helper()
	return newWrappedRig(t, svc, nil)
}

// newWrappedRig is newRig serving wrap(svc) (wrap nil: svc itself): a
// test that watches the calls a real service gets.
func newWrappedRig(t *testing.T, svc tenants.Service, wrap func(tenants.Service) tenants.Service) *rig {
	t.Helper()
	cfgPath, state := testConfig(t)
	r := &rig{t: t, cfg: cfgPath, sock: filepath.Join(state, appliance.SocketName), dir: filepath.Dir(cfgPath),
		tokens: map[string]string{}, backup: bytes.Repeat([]byte("ispmux store "), 1000)}
	if svc == nil {
		st, err := subscribers.Open(filepath.Join(r.dir, "s.db"), subscribers.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		r.store = st
		r.ten = tenants.New(tenants.Config{ISPs: []string{"alpha", "beta"}, MaxDevices: 100,
			Claim:    tenants.ClaimLimits{BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond},
			Circuits: []tenants.Circuit{{Access: "acc0"}, {Access: "acc1", VLAN: 7}}},
			st, registry.New(), nil, nil, nil)
		if err := r.ten.Load(); err != nil {
			t.Fatal(err)
		}
		svc = r.ten
	}
	write := func(name, label string) string {
		tok, line := auth.NewToken()
		p := filepath.Join(r.dir, name)
		if err := os.WriteFile(p, []byte(line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r.tokens[label] = tok
		return p
	}
	cfg := configs.Default()
	cfg.API.OperatorTokenFile = write("operator.token", "operator")
	cfg.API.ClaimTokenFiles = []string{write("installer.token", "claim")}
	cfg.ISPs = []configs.ISP{
		{Name: "alpha", TokenFiles: []string{write("alpha-1.token", "alpha")}},
		{Name: "beta", TokenFiles: []string{write("beta-1.token", "beta")}},
	}
	toks, err := auth.LoadTokens(auth.TokenFilesFromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		svc = wrap(svc)
	}
	srv := api.New(cfg.API, svc, toks, nil)
	srv.Limits.Heartbeat = 100 * time.Millisecond

	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	r.apiURL = hs.URL

	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(ctlsock.Status{Uptime: "42s", Leases: 1,
			Ports: []ctlsock.PortStatus{{Name: "acc0", RxFrames: 10, Drops: map[string]uint64{"no-binding": 3}}},
			ISPs: []ctlsock.ISPStatus{{Name: "alpha", NextHop: "192.0.2.1", State: "resolved", MAC: "02:aa:00:00:00:01"},
				{Name: "beta", NextHop: "192.0.2.9", State: "incomplete"}},
			Bindings: []ctlsock.BindingStatus{{MAC: "02:00:00:00:00:01", Access: "acc0", ISP: "alpha", IP: "192.0.2.50"}},
			DHCP:     map[string]uint64{"acks": 4, "offers": 5},
			Onboarding: []ctlsock.OnboardingStatus{{MAC: "02:00:00:00:00:77", Access: "acc0", IP: "100.72.0.7",
				Expires: "2026-12-06T02:00:00Z"}}})
	})
	mux.HandleFunc("GET /backup", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Trailer", "Ispmux-Backup-Size, Ispmux-Backup-Sha256")
		_, _ = w.Write(r.backup)
		sum := sha256.Sum256(r.backup)
		w.Header().Set("Ispmux-Backup-Size", fmt.Sprint(len(r.backup)))
		w.Header().Set("Ispmux-Backup-Sha256", hex.EncodeToString(sum[:]))
	})
	mux.Handle("/v1/", srv.SocketHandler())
	ln, err := net.Listen("unix", r.sock)
	if err != nil {
		t.Fatal(err)
	}
	us := httptest.NewUnstartedServer(mux)
	us.Listener.Close()
	us.Listener = ln
	us.Start()
	t.Cleanup(us.Close)
	return r
}

// runCmd runs ispmux with args and stdin.
func runCmd(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var o, e bytes.Buffer
	err = run(ctx, args, strings.NewReader(stdin), &o, &e)
	return o.String(), e.String(), err
}

// ctl runs `ispmux ctl` with the operator's token over the API.
func (r *rig) api(who string, args ...string) []string {
	return append(append([]string{"ctl"}, args...), "--api", r.apiURL, "--token", r.tokens[who])
}

// ok runs args and fails the test on an error.
func (r *rig) ok(stdin string, args ...string) (stdout, stderr string) {
	r.t.Helper()
	out, errOut, err := runCmd(r.t, stdin, args...)
	if err != nil {
		r.t.Fatalf("%q: %v\nstdout:\n%s\nstderr:\n%s", args, err, out, errOut)
	}
	return out, errOut
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var _ io.Writer = (*lockedBuffer)(nil)

// hintArgs is the command line a hint prints between backticks (the
// first in text), as a POSIX shell splits it when it is pasted, without
// its "ispmux": the arguments run takes.
func hintArgs(t *testing.T, text string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(text, "`")
	line, _, ok2 := strings.Cut(rest, "`")
	if !ok || !ok2 {
		t.Fatalf("no command line in %q", text)
	}
	out, err := exec.Command("sh", "-c", "set -- "+line+"\nfor a; do printf '%s\\000' \"$a\"; done").Output()
	if err != nil {
		t.Fatalf("sh splitting %s: %v", line, err)
	}
	words := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(words) < 2 || words[0] != "ispmux" {
		t.Fatalf("%s: not an ispmux command line: %q", line, words)
	}
	return words[1:]
}
