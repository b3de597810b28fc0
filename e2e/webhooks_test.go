package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/lab"
	"github.com/ispmux/ispmux/tenants"
	"github.com/ispmux/ispmux/webhooks"
)

// mgmtLink links the appliance namespace to ns with a veth pair,
// appNet.1/30 on ispmux's side and .2 on ns's: the management network
// webhooks leave by (the uplinks are AF_XDP ports with no kernel stack).
// It returns the far address.
func (r *rig) mgmtLink(ns, name, prefix string) string {
	r.t.Helper()
	app := r.topo.Appliance.NS
	for _, args := range [][]string{
		{"-n", app, "link", "add", name + "0", "type", "veth", "peer", "name", name + "1", "netns", ns},
		{"-n", app, "addr", "add", prefix + ".1/30", "dev", name + "0"},
		{"-n", ns, "addr", "add", prefix + ".2/30", "dev", name + "1"},
		{"-n", app, "link", "set", name + "0", "up"},
		{"-n", ns, "link", "set", name + "1", "up"},
	} {
		if out, err := execOutput("ip", args...); err != nil {
			r.t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	return prefix + ".2"
}

// whMsg is one message a receiver got.
type whMsg struct {
	id  string
	ev  tenants.Event
	at  time.Time
	raw string
}

// whReceiver is an ISP's webhook receiver in the ISP's namespace: it
// verifies every signature, keeps the first copy of each webhook-id and
// counts the duplicates.
type whReceiver struct {
	t      *testing.T
	ns     string
	addr   string
	key    []byte
	tlsCfg *tls.Config // nil: plain http

	mu    sync.Mutex
	srv   *http.Server
	seen  map[string]whMsg
	order []string
	dups  int
	bad   []string
	delay time.Duration
}

func newWHReceiver(t *testing.T, ns, addr, secret string, tlsCfg *tls.Config) *whReceiver {
	key, err := webhooks.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	w := &whReceiver{t: t, ns: ns, addr: addr, key: key, tlsCfg: tlsCfg, seen: map[string]whMsg{}}
	w.up()
	t.Cleanup(w.down)
	return w
}

func (w *whReceiver) up() {
	w.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the old socket may linger a moment
		if ln, err = listenInNS(w.ns, "tcp", w.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		w.t.Fatalf("receiver %s in %s: %v", w.addr, w.ns, err)
	}
	if w.tlsCfg != nil {
		ln = tls.NewListener(ln, w.tlsCfg)
	}
	srv := &http.Server{Handler: http.HandlerFunc(w.serve), ReadHeaderTimeout: 5 * time.Second}
	w.mu.Lock()
	w.srv = srv
	w.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// down closes the listener and every connection: ispmux's next attempt
// is refused.
func (w *whReceiver) down() {
	w.mu.Lock()
	srv := w.srv
	w.srv = nil
	w.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (w *whReceiver) setDelay(d time.Duration) {
	w.mu.Lock()
	w.delay = d
	w.mu.Unlock()
}

func (w *whReceiver) serve(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	id := r.Header.Get("webhook-id")
	if err := webhooks.Verify(w.key, id, r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body, time.Now(), 5*time.Minute); err != nil {
		w.mu.Lock()
		w.bad = append(w.bad, fmt.Sprintf("%s: %v", id, err))
		w.mu.Unlock()
		http.Error(rw, "bad signature", http.StatusBadRequest)
		return
	}
	var ev tenants.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		w.mu.Lock()
		w.bad = append(w.bad, fmt.Sprintf("%s: %v: %s", id, err, body))
		w.mu.Unlock()
		http.Error(rw, "bad body", http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	d := w.delay
	w.mu.Unlock()
	time.Sleep(d)
	w.mu.Lock()
	if _, dup := w.seen[id]; dup {
		w.dups++
	} else {
		w.seen[id] = whMsg{id: id, ev: ev, at: time.Now(), raw: string(body)}
		w.order = append(w.order, id)
	}
	w.mu.Unlock()
	rw.WriteHeader(http.StatusNoContent)
}

// has reports whether an event of kind for mac arrived.
func (w *whReceiver) has(kind, mac string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.seen {
		if m.ev.Kind == kind && strings.EqualFold(m.ev.MAC, mac) {
			return true
		}
	}
	return false
}

func (w *whReceiver) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

func (w *whReceiver) snapshot() (seen map[string]whMsg, order []string, dups int, bad []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen = make(map[string]whMsg, len(w.seen))
	for k, v := range w.seen {
		seen[k] = v
	}
	return seen, slices.Clone(w.order), w.dups, slices.Clone(w.bad)
}

// newSecret returns a fresh whsec_ secret.
func newSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return webhooks.SecretPrefix + base64.StdEncoding.EncodeToString(b[:])
}

// testCA makes a CA and a server certificate for ip; it writes the CA's
// PEM to caFile and returns the server's TLS configuration.
func testCA(t *testing.T, ip, caFile string) *tls.Config {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "beta webhook test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP(ip)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestWebhooks is issue 8's webhooks end to end: each ISP's receiver runs
// in the ISP's namespace, reached over a management link from the
// appliance namespace (beta over https with a private CA, alpha over http
// with webhook_insecure). Beta's receiver verifies every signature and
// gets a refusal by beta's Kea (s6, attached to beta through the API as a
// customer beta's Kea does not know: silence, a timeout event) and a bind
// (s2); it goes down for 30 s and then gets everything once; ispmux is
// killed (-9) while it delivers to a slow receiver and no event is lost;
// alpha's receiver never sees beta's events. Needs the appliance wired
// (webhooks.New in Start, Run, SetWebhookStatus on the API server).
func TestWebhooks(t *testing.T) {
	t.Parallel()
	r := newRig(t, lab.Options{Subscribers: 6, DHCP: true, API: true, LeaseTime: time.Hour, Unconfigured: []string{"s6"}})
	ctx := context.Background()
	tStart := time.Now()

	betaNS, alphaNS := r.ns("ispb"), r.ns("ispa")
	betaIP := r.mgmtLink(betaNS, "whb", "10.99.2")
	alphaIP := r.mgmtLink(alphaNS, "wha", "10.99.1")
	betaSecret, alphaSecret := newSecret(), newSecret()
	files := map[string]string{"beta.whsec": betaSecret + "\n", "alpha.whsec": alphaSecret + "\n"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(r.dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caFile := filepath.Join(r.dir, "beta-ca.pem")
	srvTLS := testCA(t, betaIP, caFile)
	betaRx := newWHReceiver(t, betaNS, betaIP+":8443", betaSecret, srvTLS)
	alphaRx := newWHReceiver(t, alphaNS, alphaIP+":8080", alphaSecret, nil)

	// The lab's configuration, with a webhook per ISP.
	cfg, err := os.ReadFile(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	q := strconv.Quote
	text := strings.Replace(string(cfg), "name = \"beta\"\n", "name = \"beta\"\nwebhook_url = "+q("https://"+betaIP+":8443/hooks/ispmux")+
		"\nwebhook_secret_file = "+q(filepath.Join(r.dir, "beta.whsec"))+"\nwebhook_ca_file = "+q(caFile)+"\nwebhook_retry_max = \"2s\"\n", 1)
	text = strings.Replace(text, "name = \"alpha\"\n", "name = \"alpha\"\nwebhook_url = "+q("http://"+alphaIP+":8080/hooks")+
		"\nwebhook_insecure = true\nwebhook_secret_file = "+q(filepath.Join(r.dir, "alpha.whsec"))+"\nwebhook_retry_max = \"2s\"\n", 1)
	if err := os.WriteFile(r.cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	r.start()
	tok := r.topo.API
	beta, alpha := r.apiAs(tok.ISP["beta"]), r.apiAs(tok.ISP["alpha"])
	first, err := beta.Events(ctx, "beta", 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	base := first.Newest // every beta event after base must arrive

	s1, s2, s6 := r.sub("s1"), r.sub("s2"), r.sub("s6")
	// betaEvents returns beta's events after base, from the API.
	betaEvents := func() []tenants.Event {
		t.Helper()
		var out []tenants.Event
		after := base
		for {
			p, err := beta.Events(ctx, "beta", after, 1000)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p.Items...)
			n, _ := strconv.ParseUint(p.Next, 10, 64)
			if len(p.Items) == 0 || n <= after {
				return out
			}
			after = n
		}
	}
	// allArrived waits until beta's receiver holds every beta event after
	// base.
	allArrived := func(within time.Duration) bool {
		return eventually(within, func() bool {
			seen, _, _, _ := betaRx.snapshot()
			for _, e := range betaEvents() {
				if _, ok := seen[strconv.FormatUint(e.Seq, 10)]; !ok {
					return false
				}
			}
			return true
		})
	}

	t.Run("a bind and a refusal by beta's Kea reach beta's receiver", func(t *testing.T) {
		startClient(t, r.topo.Dhclient(ctx, s2))
		startClient(t, r.topo.Dhclient(ctx, s1))
		if _, err := beta.CreateCustomer(ctx, "beta", tenants.CustomerInput{ID: "c-66"}); err != nil {
			t.Fatal(err)
		}
		if _, err := beta.AttachDevice(ctx, "beta", tenants.DeviceInput{MAC: s6.MAC, CustomerID: "c-66"}); err != nil {
			t.Fatal(err)
		}
		startClient(t, r.topo.Udhcpc(ctx, s6))
		if !eventually(25*time.Second, func() bool { return betaRx.has("bound", s2.MAC) && betaRx.has("timeout", s6.MAC) }) {
			seen, _, _, bad := betaRx.snapshot()
			t.Fatalf("beta's receiver: bound s2 %v, timeout s6 %v; got %v; bad %v\nispmux log:\n%s",
				betaRx.has("bound", s2.MAC), betaRx.has("timeout", s6.MAC), seen, bad, lastLines(r.log.String(), 40))
		}
		if !eventually(10*time.Second, func() bool { return alphaRx.has("bound", s1.MAC) }) {
			t.Errorf("alpha's receiver did not get s1's bind")
		}
		seen, _, _, _ := betaRx.snapshot()
		for _, m := range seen {
			if m.ev.Kind == "timeout" && strings.EqualFold(m.ev.MAC, s6.MAC) {
				if m.ev.CustomerID != "c-66" || m.ev.ISP != "beta" || m.ev.Reason == "" || m.id != strconv.FormatUint(m.ev.Seq, 10) {
					t.Errorf("refusal as received: %s", m.raw)
				}
				t.Logf("refusal as received: %s", m.raw)
			}
		}
		st, err := beta.Webhook(ctx, "beta")
		if err != nil || st.Delivered == 0 || !strings.HasPrefix(st.URL, "https://"+betaIP) {
			t.Errorf("beta's webhook status: %+v %v", st, err)
		}
		if _, err := alpha.Webhook(ctx, "beta"); !errors.Is(err, tenants.ErrNotFound) {
			t.Errorf("alpha reading beta's webhook status: %v", err)
		}
	})

	t.Run("receiver down 30 s, then back: everything once", func(t *testing.T) {
		betaRx.down()
		down := time.Now()
		for i := range 5 {
			if _, err := beta.CreateCustomer(ctx, "beta", tenants.CustomerInput{ID: fmt.Sprintf("c-down-%d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		if !eventually(10*time.Second, func() bool {
			st, err := beta.Webhook(ctx, "beta")
			return err == nil && st.Attempts > 0 && st.Lag >= 5 && st.LastError != ""
		}) {
			st, err := beta.Webhook(ctx, "beta")
			t.Errorf("status while the receiver is down: %+v %v", st, err)
		}
		st, _ := beta.Webhook(ctx, "beta")
		t.Logf("while down: lag %d, attempts %d, last error %q", st.Lag, st.Attempts, st.LastError)
		time.Sleep(time.Until(down.Add(30 * time.Second)))
		betaRx.up()
		back := time.Now()
		if !allArrived(15 * time.Second) {
			t.Fatalf("after the receiver came back, missing events; log:\n%s", lastLines(r.log.String(), 30))
		}
		t.Logf("everything arrived %v after the receiver came back", time.Since(back).Round(time.Millisecond))
		if !eventually(5*time.Second, func() bool {
			st, err := beta.Webhook(ctx, "beta")
			return err == nil && st.Lag == 0 && st.Attempts == 0
		}) {
			st, err := beta.Webhook(ctx, "beta")
			t.Errorf("status after recovery: %+v %v", st, err)
		}
	})

	t.Run("kill -9 mid-delivery loses nothing", func(t *testing.T) {
		before := betaRx.count()
		betaRx.setDelay(300 * time.Millisecond)
		for i := range 12 {
			if _, err := beta.CreateCustomer(ctx, "beta", tenants.CustomerInput{ID: fmt.Sprintf("c-kill-%d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		if !eventually(10*time.Second, func() bool { return betaRx.count() >= before+3 }) {
			t.Fatal("deliveries did not start")
		}
		r.kill9()
		got := betaRx.count() - before
		betaRx.setDelay(0)
		r.start()
		if !allArrived(20 * time.Second) {
			t.Fatalf("events lost across the kill -9; log:\n%s", lastLines(r.log.String(), 30))
		}
		_, _, dups, _ := betaRx.snapshot()
		t.Logf("killed after %d of 12 deliveries; %d duplicate(s) dropped by webhook-id", got, dups)
	})

	t.Run("each receiver got only its ISP's events, all signed", func(t *testing.T) {
		seen, order, dups, bad := betaRx.snapshot()
		if len(bad) > 0 {
			t.Errorf("beta's receiver refused %v", bad)
		}
		want := map[string]bool{}
		for _, e := range betaEvents() {
			want[strconv.FormatUint(e.Seq, 10)] = true
		}
		for _, id := range order {
			m := seen[id]
			if m.ev.ISP != "beta" || id != strconv.FormatUint(m.ev.Seq, 10) {
				t.Errorf("beta's receiver got %s", m.raw)
			}
		}
		for id := range want {
			if _, ok := seen[id]; !ok {
				t.Errorf("beta's event %s never arrived", id)
			}
		}
		aseen, _, _, abad := alphaRx.snapshot()
		if len(abad) > 0 {
			t.Errorf("alpha's receiver refused %v", abad)
		}
		for _, m := range aseen {
			// (Each ISP's webhook ids are its own sequence: alpha's may
			// equal beta's numbers; what must not leak is beta's events.)
			if m.ev.ISP != "alpha" || strings.EqualFold(m.ev.MAC, s2.MAC) || strings.EqualFold(m.ev.MAC, s6.MAC) ||
				strings.HasPrefix(m.ev.CustomerID, "c-66") || strings.Contains(m.raw, "beta") {
				t.Errorf("alpha's receiver got %s", m.raw)
			}
		}
		t.Logf("beta: %d events (%d after base %d), %d duplicates; alpha: %d events; test %v",
			len(seen), len(want), base, dups, len(aseen), time.Since(tStart).Round(time.Second))
	})
}
