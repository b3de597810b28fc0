package appliance

// Tests of whole appliances: each runs real ispmux appliances (this test
// binary re-executed as TestApplianceChild) inside a network namespace of
// its own, named apx-<random>, with veths named apx*; everything is
// removed at the end, pass or fail.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/internal/privtest"
)

const instChildEnv = "ISPMUX_TEST_APPLIANCE_CHILD_CONFIG"

// TestApplianceChild is the appliance process of the review tests: Start and
// Run as cmd/ispmux's run does. It does nothing unless instChildEnv is set.
func TestApplianceChild(t *testing.T) {
	path := os.Getenv(instChildEnv)
	if path == "" {
		return
	}
	cfg, err := configs.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "CONFIG ERROR:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	a, err := Start(ctx, cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "START ERROR:", err)
		os.Exit(3)
	}
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "RUN ERROR:", err)
		os.Exit(4)
	}
	os.Exit(0)
}

type instRig struct {
	t   *testing.T
	ns  string
	dir string
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type apxProc struct {
	cmd  *exec.Cmd
	log  *syncBuf
	done chan struct{} // closed when the process has exited
	err  error
}

func (r *instRig) ip(args ...string) {
	r.t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", r.ns}, args...)...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("ip -n %s %s: %v: %s", r.ns, strings.Join(args, " "), err, out)
	}
}

func newInstRig(t *testing.T) *instRig {
	privtest.Lab(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	r := &instRig{t: t, ns: "apx-" + hex.EncodeToString(b[:]), dir: t.TempDir()}
	if out, err := exec.Command("ip", "netns", "add", r.ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", r.ns).Run() })
	r.ip("link", "set", "lo", "up")
	r.ip("link", "add", "apxacc", "type", "veth", "peer", "name", "apxaccp")
	r.ip("link", "add", "apxup", "type", "veth", "peer", "name", "apxupp")
	for _, l := range []string{"apxacc", "apxaccp", "apxup", "apxupp"} {
		r.ip("link", "set", l, "up")
	}
	return r
}

// config writes a configuration with state directory state; with portal,
// a [portal] section (link apxportal) and a self-signed certificate.
func (r *instRig) config(name, state string, portal bool) string {
	r.t.Helper()
	var s strings.Builder
	fmt.Fprintf(&s, "version = 1\n[appliance]\nstate_dir = %q\n[datapath]\nattach_mode = \"skb\"\nbind_mode = \"copy\"\n", filepath.Join(r.dir, state))
	if portal {
		crt, key := r.cert()
		fmt.Fprintf(&s, "[portal]\nhostname = \"portal.example.net\"\naddress = \"203.0.113.80\"\ntls_cert = %q\ntls_key = %q\ninterface = \"apxportal\"\n", crt, key)
	}
	s.WriteString("[[access]]\ninterface = \"apxacc\"\naddress = \"100.64.0.1\"\n")
	if portal {
		s.WriteString("[access.onboarding]\npool = \"100.72.0.0/22\"\n")
	}
	s.WriteString("[[isp]]\nname = \"alpha\"\nuplink = \"apxup\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\ndhcp_servers = [\"192.0.2.1\"]\n")
	p := filepath.Join(r.dir, name+".toml")
	if err := os.WriteFile(p, []byte(s.String()), 0o644); err != nil {
		r.t.Fatal(err)
	}
	return p
}

func (r *instRig) cert() (string, string) {
	r.t.Helper()
	crt, key := filepath.Join(r.dir, "portal.crt"), filepath.Join(r.dir, "portal.key")
	if _, err := os.Stat(crt); err == nil {
		return crt, key
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		r.t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "portal.example.net"},
		DNSNames: []string{"portal.example.net"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		r.t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		r.t.Fatal(err)
	}
	_ = os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	_ = os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	return crt, key
}

// start runs an appliance on config inside the rig's namespace.
func (r *instRig) start(config string) *apxProc {
	r.t.Helper()
	p := &apxProc{log: &syncBuf{}, done: make(chan struct{})}
	p.cmd = exec.Command("ip", "netns", "exec", r.ns, os.Args[0], "-test.run=^TestApplianceChild$", "-test.count=1")
	p.cmd.Env = append(os.Environ(), instChildEnv+"="+config)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	r.t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
		}
		if r.t.Failed() {
			r.t.Logf("log of %s:\n%s", config, p.log.String())
		}
	})
	return p
}

func (p *apxProc) waitFor(t *testing.T, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log after %v:\n%s", s, d, p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *apxProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("appliance did not stop within 10 s of SIGTERM")
	}
}

func (r *instRig) status(state string) *ctlsock.Status {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := ctlsock.FetchStatus(ctx, filepath.Join(r.dir, state, SocketName))
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

func portOf(st *ctlsock.Status, name string) ctlsock.PortStatus {
	for _, p := range st.Ports {
		if p.Name == name {
			return p
		}
	}
	return ctlsock.PortStatus{}
}

// TestSecondInstanceLeavesPortalAlone: a second ispmux on the same
// interfaces (another state_dir) fails "without disturbing the first"
// (ARCHITECTURE.md, Ports and links). Before, it deleted the running one's
// portal link before it reached the interface locks, and retried for ~1 s,
// each attempt deleting the link the first one had just re-created.
func TestSecondInstanceLeavesPortalAlone(t *testing.T) {
	r := newInstRig(t)
	a := r.start(r.config("a", "state-a", true))
	a.waitFor(t, "msg=forwarding", 20*time.Second)
	time.Sleep(500 * time.Millisecond)
	before := len(a.log.String())

	b := r.start(r.config("b", "state-b", true))
	select {
	case <-b.done:
		if b.err == nil {
			t.Fatalf("the second appliance started on the same interfaces")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the second appliance neither started nor failed")
	}
	time.Sleep(time.Second)
	after := a.log.String()[before:]
	if n := strings.Count(after, "port link down"); n > 0 {
		t.Errorf("the running appliance's ports went down %d times while a second one failed to start", n)
	}
	if fl := portOf(r.status("state-a"), "apxportal").LinkFlaps; fl != 0 {
		t.Errorf("the running appliance's portal link flapped %d times (second: %s)", fl, strings.TrimSpace(b.log.String()[strings.LastIndex(b.log.String(), "START ERROR"):]))
	}
}

// TestStatusLinkDownAtStart: an uplink that is down when ispmux starts is
// reported down by ctl status (and its ISP's next hop withdrawn). Before,
// it was "up" until the kernel next said something about it.
func TestStatusLinkDownAtStart(t *testing.T) {
	r := newInstRig(t)
	r.ip("link", "set", "apxup", "down")
	a := r.start(r.config("a", "state-a", false))
	a.waitFor(t, "msg=forwarding", 20*time.Second)
	time.Sleep(time.Second)
	if p := portOf(r.status("state-a"), "apxup"); p.Link != "down" {
		t.Errorf("apxup is administratively down; ctl status says link %q (errors %d)", p.Link, p.Errors)
	}
}

// TestRenamedAwayDetached: the port's interface is renamed away (down,
// renamed, a new interface takes its name: a NIC swap). The port follows
// the new interface and ispmux's XDP program leaves the old one (before,
// it stayed attached there, while ispmux ran and after a clean stop).
func TestRenamedAwayDetached(t *testing.T) {
	r := newInstRig(t)
	a := r.start(r.config("a", "state-a", false))
	a.waitFor(t, "msg=forwarding", 20*time.Second)
	r.ip("link", "set", "apxacc", "down")
	r.ip("link", "set", "apxacc", "name", "apxaccold")
	r.ip("link", "add", "apxacc", "type", "veth", "peer", "name", "apxaccp2")
	r.ip("link", "set", "apxaccp2", "up")
	r.ip("link", "set", "apxacc", "up")
	a.waitFor(t, `msg="port re-opened" port=apxacc`, 10*time.Second)
	a.stop(t)
	out, _ := exec.Command("ip", "-n", r.ns, "-d", "link", "show", "apxaccold").CombinedOutput()
	if strings.Contains(string(out), "xdp") {
		t.Errorf("after a clean stop, the renamed-away interface still has ispmux's XDP program:\n%s", out)
	}
}

// TestPortOpenFailureNoPanic: a port that fails to open (here: a second
// ispmux on the same interfaces) makes Start return its error ("START
// ERROR"), not a nil pointer panic in the deferred closePorts (a.ports
// holds nil for the ports not opened yet).
func TestPortOpenFailureNoPanic(t *testing.T) {
	r := newInstRig(t)
	a := r.start(r.config("a", "state-a", false))
	a.waitFor(t, "msg=forwarding", 20*time.Second)
	b := r.start(r.config("b", "state-b", false))
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the second appliance neither started nor failed")
	}
	out := b.log.String()
	if strings.Contains(out, "panic:") || !strings.Contains(out, "START ERROR") {
		t.Errorf("second appliance did not fail cleanly (exit %v):\n%s", b.err, tail(out, 3000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestListenerInUseStopsStartBeforePorts: the metrics address is taken.
// Before, ispmux opened its ports and attached XDP, logged "forwarding",
// then stopped on the listener's error (a trial; under systemd's
// Restart= every 2 s, an attach and detach each time). Start refuses now,
// naming [metrics] listen, before it touches an interface.
func TestListenerInUseStopsStartBeforePorts(t *testing.T) {
	r := newInstRig(t)
	// Something else holds the metrics address in the namespace.
	holder := exec.Command("ip", "netns", "exec", r.ns, "python3", "-c",
		"import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('127.0.0.1', 19401))\ns.listen()\nprint('held', flush=True)\ntime.sleep(60)")
	out := &syncBuf{}
	holder.Stdout = out
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "held"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the address holder did not start")
		}
	}
	cfg := r.config("m", "state-m", false)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, append(b, "[metrics]\nlisten = \"127.0.0.1:19401\"\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	p := r.start(cfg)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the appliance neither failed nor stopped")
	}
	log := p.log.String()
	if !strings.Contains(log, "START ERROR") || !strings.Contains(log, "[metrics] listen") {
		t.Errorf("want a start error naming [metrics] listen:\n%s", tail(log, 3000))
	}
	if strings.Contains(log, "xdp") && strings.Contains(log, "attached") || strings.Contains(log, "msg=forwarding") {
		t.Errorf("the ports were opened before the listener failed:\n%s", tail(log, 3000))
	}
}
