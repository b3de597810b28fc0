package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
)

// The Standard Webhooks specification's example.
const (
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTS     = 1614265330
	specBody   = `{"test": 2432232314}`
	specSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignSpecVector(t *testing.T) {
	key, err := ParseSecret(specSecret + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := Sign(key, specID, specTS, []byte(specBody)); got != specSig {
		t.Fatalf("Sign = %s, want %s", got, specSig)
	}
	at := time.Unix(specTS, 0)
	ok := func(id, ts, sigs, body string, now time.Time) error {
		return Verify(key, id, ts, sigs, []byte(body), now, 5*time.Minute)
	}
	if err := ok(specID, "1614265330", specSig, specBody, at.Add(time.Minute)); err != nil {
		t.Errorf("spec vector does not verify: %v", err)
	}
	if err := ok(specID, "1614265330", "v1,bm90IHRoaXMgb25l "+specSig, specBody, at); err != nil {
		t.Errorf("second of two signatures does not verify: %v", err)
	}
	for name, e := range map[string]error{
		"body changed":   ok(specID, "1614265330", specSig, `{"test": 2432232315}`, at),
		"id changed":     ok("msg_other", "1614265330", specSig, specBody, at),
		"ts changed":     ok(specID, "1614265331", specSig, specBody, at),
		"stale":          ok(specID, "1614265330", specSig, specBody, at.Add(6*time.Minute)),
		"future":         ok(specID, "1614265330", specSig, specBody, at.Add(-6*time.Minute)),
		"not a ts":       ok(specID, "soon", specSig, specBody, at),
		"v2 scheme only": ok(specID, "1614265330", "v2,"+strings.TrimPrefix(specSig, "v1,"), specBody, at),
	} {
		if e == nil {
			t.Errorf("%s: verified", name)
		}
	}
	for _, bad := range []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!", "whsec_c2hvcnQ=", ""} {
		if _, err := ParseSecret(bad); err == nil {
			t.Errorf("ParseSecret(%q) accepted", bad)
		}
	}
}

func TestBackoff(t *testing.T) {
	base, cap := time.Second, 5*time.Minute
	prevHi := time.Duration(0)
	for n := 1; n <= 40; n++ {
		lo, hi := Backoff(n, base, cap, 0), Backoff(n, base, cap, 0.999999999)
		want := min(base<<min(n-1, 30), cap)
		if lo != want/2 || hi < want-time.Microsecond || hi > want {
			t.Errorf("retry %d: [%v, %v], want [%v, %v]", n, lo, hi, want/2, want)
		}
		if hi < prevHi {
			t.Errorf("retry %d: upper bound %v below the previous %v", n, hi, prevHi)
		}
		prevHi = hi
		for range 50 {
			if d := Backoff(n, base, cap, jitter()); d < want/2 || d > want {
				t.Fatalf("retry %d: %v outside [%v, %v]", n, d, want/2, want)
			}
		}
	}
	if d := Backoff(1, base, cap, 0.5); d != 750*time.Millisecond {
		t.Errorf("first retry at r=0.5: %v", d)
	}
	if Backoff(9, base, cap, 0) != 128*time.Second || Backoff(10, base, cap, 0) != cap/2 || Backoff(10, base, cap, 0.999999999) < cap-time.Microsecond {
		t.Error("the 9th retry is not 256 s or the 10th not capped at 5 min")
	}
}

// delivery is one request a receiver got.
type delivery struct {
	id, ts string
	ev     tenants.Event
	lost   LostMessage
	status int
}

// receiver is an httptest server that verifies signatures and answers
// with what answer says (default 200).
type receiver struct {
	t   *testing.T
	srv *httptest.Server
	key []byte

	mu       sync.Mutex
	got      []delivery
	arrivals int
	answer   func(n int, id string) int // n: the request's index; called without mu
	notify   chan struct{}
}

func newReceiver(t *testing.T, secret string) *receiver {
	key, err := ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{t: t, key: key, notify: make(chan struct{}, 1000)}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	if err := Verify(rc.key, id, ts, r.Header.Get("webhook-signature"), body, time.Now(), 5*time.Minute); err != nil {
		rc.t.Errorf("receiver: %s: %v", id, err)
		http.Error(w, "bad signature", 400)
		return
	}
	if r.Method != "POST" || r.Header.Get("Content-Type") != "application/json" {
		rc.t.Errorf("receiver: %s %s", r.Method, r.Header.Get("Content-Type"))
	}
	d := delivery{id: id, ts: ts, status: 200}
	if strings.HasPrefix(id, "lost-") {
		if err := json.Unmarshal(body, &d.lost); err != nil {
			rc.t.Errorf("receiver: %s: %v", body, err)
		}
	} else if err := json.Unmarshal(body, &d.ev); err != nil {
		rc.t.Errorf("receiver: %s: %v", body, err)
	}
	rc.mu.Lock()
	n, answer := rc.arrivals, rc.answer
	rc.arrivals++
	rc.mu.Unlock()
	if answer != nil {
		d.status = answer(n, id)
	}
	rc.mu.Lock()
	rc.got = append(rc.got, d)
	rc.mu.Unlock()
	select {
	case rc.notify <- struct{}{}:
	default:
	}
	w.WriteHeader(d.status)
}

// acked returns the ids the receiver answered 2xx, in order.
func (rc *receiver) acked() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, d := range rc.got {
		if d.status/100 == 2 {
			out = append(out, d.id)
		}
	}
	return out
}

func (rc *receiver) all() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

// waitAcked waits until n messages were acknowledged.
func (rc *receiver) waitAcked(n int, within time.Duration) []string {
	rc.t.Helper()
	deadline := time.Now().Add(within)
	for {
		a := rc.acked()
		if len(a) >= n || time.Now().After(deadline) {
			if len(a) < n {
				rc.t.Fatalf("receiver acknowledged %d of %d within %v: %v", len(a), n, within, a)
			}
			return a
		}
		select {
		case <-rc.notify:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func openStore(t testing.TB, path string, opts subscribers.Options) *subscribers.Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "ispmux.db")
	}
	s, err := subscribers.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func writeSecret(t testing.TB, secret string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "whsec")
	if err := os.WriteFile(f, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// isp is an [[isp]] with a webhook to url (none if "").
func isp(name, url, secretFile string) configs.ISP {
	return configs.ISP{Name: name, WebhookURL: url, WebhookSecretFile: secretFile, WebhookRetryMaxDur: 100 * time.Millisecond}
}

// running is a Manager whose Run goes on until stop.
type running struct {
	m    *Manager
	stop func()
}

func start(t testing.TB, cfg *configs.Config, s *subscribers.Store) *running {
	t.Helper()
	m, err := New(cfg, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	return run(t, m)
}

func run(t testing.TB, m *Manager) *running {
	m.minBackoff = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := m.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return &running{m: m, stop: stop}
}

func addEvent(t testing.TB, s *subscribers.Store, ispName string, kind subscribers.EventKind, i int) subscribers.Event {
	t.Helper()
	e, err := s.AddEvent(subscribers.Event{Kind: kind, ISP: ispName, MAC: subscribers.MAC{2, 0, 0, 0, 1, byte(i)},
		IP: netip.AddrFrom4([4]byte{100, 64, 0, byte(i)}), Customer: "c-" + strconv.Itoa(i), Reason: "test " + strconv.Itoa(i)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func ids(evs ...subscribers.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, strconv.FormatUint(e.ISPSeq, 10))
	}
	return out
}

func TestDeliveryInOrderPerISP(t *testing.T) {
	s := openStore(t, "", subscribers.Options{NoSync: true})
	sec := writeSecret(t, specSecret)
	ra, rb := newReceiver(t, specSecret), newReceiver(t, specSecret)
	addEvent(t, s, "beta", subscribers.EventBound, 0) // before the webhook: not sent
	r := start(t, &configs.Config{ISPs: []configs.ISP{isp("alpha", ra.srv.URL, sec), isp("beta", rb.srv.URL+"/hook?k=v", sec), isp("gamma", "", "")}}, s)
	var wantA, wantB []subscribers.Event
	for i := 1; i <= 20; i++ {
		if i%3 == 0 {
			wantA = append(wantA, addEvent(t, s, "alpha", subscribers.EventBound, i))
		} else {
			wantB = append(wantB, addEvent(t, s, "beta", subscribers.EventTimeout, i))
		}
		addEvent(t, s, "gamma", subscribers.EventBound, i)
	}
	gotA, gotB := ra.waitAcked(len(wantA), 5*time.Second), rb.waitAcked(len(wantB), 5*time.Second)
	if strings.Join(gotA, ",") != strings.Join(ids(wantA...), ",") || strings.Join(gotB, ",") != strings.Join(ids(wantB...), ",") {
		t.Fatalf("alpha got %v want %v; beta got %v want %v", gotA, ids(wantA...), gotB, ids(wantB...))
	}
	for _, d := range rb.all() {
		e := d.ev
		if e.ISP != "beta" || e.Kind != "timeout" || e.CustomerID == "" || e.MAC == "" || e.IP == "" || e.Reason == "" || e.Time.IsZero() ||
			strconv.FormatUint(e.Seq, 10) != d.id {
			t.Errorf("beta's receiver got %+v (id %s)", e, d.id)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(ra.all()) + len(rb.all()); n != len(wantA)+len(wantB) {
		t.Errorf("%d requests for %d events", n, len(wantA)+len(wantB))
	}
	st := r.m.Status()
	if len(st) != 2 || st[0].ISP != "alpha" || st[1].ISP != "beta" {
		t.Fatalf("Status %+v", st)
	}
	b := st[1]
	// The cursor is at beta's last event, in beta's own sequence.
	if b.Lag != 0 || b.Delivered != uint64(len(wantB)) || b.Failures != 0 || b.Attempts != 0 || b.LastSuccess.IsZero() ||
		b.Cursor != wantB[len(wantB)-1].ISPSeq || b.URL != rb.srv.URL+"/…?…" {
		t.Errorf("beta's status %+v", b)
	}
	if _, ok := r.m.StatusOf("gamma"); ok {
		t.Error("gamma (no webhook) has a status")
	}
}

func TestRetries(t *testing.T) {
	s := openStore(t, "", subscribers.Options{NoSync: true})
	sec := writeSecret(t, specSecret)
	rc := newReceiver(t, specSecret)
	block := make(chan struct{})
	defer close(block)
	rc.answer = func(n int, id string) int {
		switch n {
		case 0:
			return 500
		case 1:
			return 404
		case 2:
			return 429
		case 3:
			select { // a timeout: the answer never comes in time
			case <-block:
			case <-time.After(2 * time.Second):
			}
			return 200
		}
		return 204
	}
	m, err := New(&configs.Config{ISPs: []configs.ISP{isp("beta", rc.srv.URL, sec)}}, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.timeout = 300 * time.Millisecond
	for _, tg := range m.targets {
		tg.client.Timeout = m.timeout
	}
	r := run(t, m)
	e := addEvent(t, s, "beta", subscribers.EventBound, 1)
	rc.waitAcked(1, 10*time.Second)
	all := rc.all()
	if len(all) < 4 {
		t.Fatalf("%d requests: %+v", len(all), all)
	}
	for _, d := range all {
		if d.id != strconv.FormatUint(e.ISPSeq, 10) {
			t.Errorf("retry with id %s, want %d", d.id, e.ISPSeq)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		st, _ := r.m.StatusOf("beta")
		if st.Delivered == 1 {
			if st.Failures != 4 || st.Attempts != 0 || !strings.Contains(st.LastError, "timeout") || st.Lag != 0 || st.Cursor != e.ISPSeq {
				t.Errorf("status after 500, 404, 429, timeout, 204: %+v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	s := openStore(t, "", subscribers.Options{NoSync: true})
	sec := writeSecret(t, specSecret)
	elsewhere := newReceiver(t, specSecret)
	redir := httptest.NewServer(http.RedirectHandler(elsewhere.srv.URL, http.StatusTemporaryRedirect))
	defer redir.Close()
	r := start(t, &configs.Config{ISPs: []configs.ISP{isp("beta", redir.URL, sec)}}, s)
	addEvent(t, s, "beta", subscribers.EventBound, 1)
	deadline := time.Now().Add(3 * time.Second)
	for {
		st, _ := r.m.StatusOf("beta")
		if st.Failures >= 3 {
			if st.Delivered != 0 || !strings.Contains(st.LastError, "redirect") || st.Lag != 1 || st.Attempts < 3 {
				t.Errorf("status %+v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(elsewhere.all()); n != 0 {
		t.Errorf("the redirect's target got %d requests", n)
	}
}

func TestCursorSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ispmux.db")
	s := openStore(t, path, subscribers.Options{})
	sec := writeSecret(t, specSecret)
	rc := newReceiver(t, specSecret)
	cfg := &configs.Config{ISPs: []configs.ISP{isp("beta", rc.srv.URL, sec)}}
	r := start(t, cfg, s)
	var first []subscribers.Event
	for i := range 5 {
		first = append(first, addEvent(t, s, "beta", subscribers.EventBound, i))
	}
	rc.waitAcked(5, 5*time.Second)
	r.stop()
	if seq, ok, err := s.WebhookCursor("beta"); err != nil || !ok || seq != first[4].ISPSeq {
		t.Fatalf("stored cursor %d %v %v, want %d", seq, ok, err, first[4].ISPSeq)
	}
	// Down: events keep coming; the store is closed and opened again.
	var second []subscribers.Event
	for i := range 3 {
		second = append(second, addEvent(t, s, "beta", subscribers.EventReleased, 10+i))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path, subscribers.Options{})
	start(t, cfg, s)
	rc.waitAcked(8, 5*time.Second)
	time.Sleep(100 * time.Millisecond)
	got := rc.acked()
	if want := append(ids(first...), ids(second...)...); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("acknowledged %v, want each once: %v", got, want)
	}
}

// A receiver that hangs holds its ISP's deliveries for RequestTimeout
// (10 s) a try: beta's, delivered beside it, would take that long if they
// waited for it. The bound below is half of it, not a speed: the store
// without fsync (90 of them took over 2 s of a loaded CI run).
func TestDeadReceiverDelaysNobodyElse(t *testing.T) {
	s := openStore(t, "", subscribers.Options{NoSync: true})
	sec := writeSecret(t, specSecret)
	// alpha's receiver accepts connections and never answers; gamma's
	// refuses them.
	hang := make(chan struct{})
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-hang
	}))
	defer dead.Close()
	defer close(hang)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + ln.Addr().String()
	ln.Close()
	rb := newReceiver(t, specSecret)
	m, err := New(&configs.Config{ISPs: []configs.ISP{isp("alpha", dead.URL, sec), isp("beta", rb.srv.URL, sec), isp("gamma", refused, sec)}}, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, m)
	var want []subscribers.Event
	start := time.Now()
	for i := range 30 {
		addEvent(t, s, "alpha", subscribers.EventBound, i)
		addEvent(t, s, "gamma", subscribers.EventBound, i)
		want = append(want, addEvent(t, s, "beta", subscribers.EventBound, i))
	}
	got := rb.waitAcked(len(want), RequestTimeout)
	took := time.Since(start)
	if strings.Join(got, ",") != strings.Join(ids(want...), ",") {
		t.Errorf("beta got %v", got)
	}
	if took > RequestTimeout/2 {
		t.Errorf("beta's 30 events took %v next to dead receivers", took)
	}
	for _, st := range r.m.Status() {
		switch st.ISP {
		case "alpha", "gamma":
			if st.Delivered != 0 || st.Lag != 30 {
				t.Errorf("%s: %+v", st.ISP, st)
			}
		}
	}
	t.Logf("beta: 30 events in %v next to a hanging and a refusing receiver", took)
}

func TestEventsLostGap(t *testing.T) {
	s := openStore(t, "", subscribers.Options{NoSync: true, EventRetention: 5})
	sec := writeSecret(t, specSecret)
	rc := newReceiver(t, specSecret)
	m, err := New(&configs.Config{ISPs: []configs.ISP{isp("beta", rc.srv.URL, sec)}}, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Cursor 0; 30 events: the log holds beta's undelivered ones past
	// its retention (5), up to 4× it (Store.HoldEventsFor), so it keeps
	// 11..30.
	var evs []subscribers.Event
	for i := range 30 {
		evs = append(evs, addEvent(t, s, "beta", subscribers.EventBound, i))
	}
	// Before delivery, the lag counts the trimmed ones too (it said 20:
	// a receiver down past the hold showed lag 0 while losing events).
	if st, _ := m.StatusOf("beta"); st.Lag != 30 {
		t.Errorf("lag before delivery %d, want 30 (20 held, 10 trimmed)", st.Lag)
	}
	r := run(t, m)
	got := rc.waitAcked(21, 5*time.Second)
	b := s.EventBase() // the cursor's start: the new store's newest
	want := append([]string{LostID(b+1, b+10)}, ids(evs[10:]...)...)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v, want %v", got, want)
	}
	l := rc.all()[0].lost
	if l.Kind != KindEventsLost || l.FirstSeq != b+1 || l.LastSeq != b+10 || l.ISP != "beta" || l.Reason == "" {
		t.Errorf("lost message %+v", l)
	}
	time.Sleep(50 * time.Millisecond)
	if st, _ := r.m.StatusOf("beta"); st.Lost != 1 || st.Delivered != 21 || st.Cursor != b+30 {
		t.Errorf("status %+v", st)
	}
}

func TestReload(t *testing.T) {
	s := openStore(t, "", subscribers.Options{NoSync: true})
	sec := writeSecret(t, specSecret)
	r1 := newReceiver(t, specSecret)
	r := start(t, &configs.Config{ISPs: []configs.ISP{isp("beta", r1.srv.URL, sec), isp("alpha", "", "")}}, s)
	addEvent(t, s, "beta", subscribers.EventBound, 1)
	r1.waitAcked(1, 5*time.Second)

	// A new secret (the file rewritten) and a new URL; alpha gains a
	// webhook.
	const secret2 = "whsec_" + "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX" // 24 bytes
	if err := os.WriteFile(sec, []byte(secret2), 0o600); err != nil {
		t.Fatal(err)
	}
	r2, ra := newReceiver(t, secret2), newReceiver(t, secret2)
	sa := writeSecret(t, secret2)
	if err := r.m.Reload(&configs.Config{ISPs: []configs.ISP{isp("beta", r2.srv.URL, sec), isp("alpha", ra.srv.URL, sa)}}); err != nil {
		t.Fatal(err)
	}
	e2 := addEvent(t, s, "beta", subscribers.EventReleased, 2)
	a1 := addEvent(t, s, "alpha", subscribers.EventBound, 3)
	if got := r2.waitAcked(1, 5*time.Second); got[0] != ids(e2)[0] {
		t.Errorf("new URL got %v, want %v", got, ids(e2))
	}
	if got := ra.waitAcked(1, 5*time.Second); got[0] != ids(a1)[0] {
		t.Errorf("alpha got %v", got)
	}
	if n := len(r1.all()); n != 1 {
		t.Errorf("old URL got %d requests", n)
	}
	// A broken secret file: refused, the webhook in force stays.
	if err := os.WriteFile(sec, []byte("nonsense"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.m.Reload(&configs.Config{ISPs: []configs.ISP{isp("beta", r1.srv.URL, sec), isp("alpha", ra.srv.URL, sa)}}); err == nil {
		t.Error("reload with a broken secret accepted")
	}
	e3 := addEvent(t, s, "beta", subscribers.EventBound, 4)
	if got := r2.waitAcked(2, 5*time.Second); got[1] != ids(e3)[0] {
		t.Errorf("after a refused reload: %v", got)
	}
	waitCursor(t, r.m, "beta", e3.ISPSeq)
	// beta's webhook removed: no more requests, its cursor stays.
	if err := r.m.Reload(&configs.Config{ISPs: []configs.ISP{isp("beta", "", ""), isp("alpha", ra.srv.URL, sa)}}); err != nil {
		t.Fatal(err)
	}
	addEvent(t, s, "beta", subscribers.EventBound, 5)
	time.Sleep(100 * time.Millisecond)
	if n := len(r2.all()); n != 2 {
		t.Errorf("removed webhook got %d requests", n)
	}
	if seq, _, _ := s.WebhookCursor("beta"); seq != e3.ISPSeq {
		t.Errorf("beta's cursor %d, want %d", seq, e3.ISPSeq)
	}
	if st := r.m.Status(); len(st) != 1 || st[0].ISP != "alpha" {
		t.Errorf("status after removal %+v", st)
	}
}

func TestNewRefusesBadFiles(t *testing.T) {
	s := openStore(t, "", subscribers.Options{NoSync: true})
	short := writeSecret(t, "whsec_c2hvcnQ=")
	good := writeSecret(t, specSecret)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, []byte("not pem"), 0o600)
	for name, p := range map[string]configs.ISP{
		"missing secret": isp("beta", "https://h.example/", "/nonexistent/whsec"),
		"short secret":   isp("beta", "https://h.example/", short),
		"bad ca":         {Name: "beta", WebhookURL: "https://h.example/", WebhookSecretFile: good, WebhookCAFile: ca},
	} {
		if _, err := New(&configs.Config{ISPs: []configs.ISP{p}}, s, nil); err == nil || !strings.Contains(err.Error(), "beta") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The configuration refuses http to a host that is not loopback.
	_, err := configs.Parse("t.toml", []byte("version = 1\n[[access]]\ninterface = \"acc0\"\n[[isp]]\nname = \"beta\"\nuplink = \"upb\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\n"+
		"webhook_url = \"http://192.0.2.80/hook\"\nwebhook_secret_file = \"/s\"\n"))
	if err == nil || !strings.Contains(err.Error(), "is http and its host is not loopback") {
		t.Errorf("http to a non-loopback host: %v", err)
	}
}

// waitCursor waits until isp's acknowledged cursor is seq.
func waitCursor(t *testing.T, m *Manager, isp string, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := m.StatusOf(isp)
		if st.Cursor == seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's cursor %d, want %d", isp, st.Cursor, seq)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An ISP's receiver never learns how many events the other ISPs had:
// beta's deliveries are numbered 1, 2, 3 after the store's base
// (webhook-id and the body's seq), whatever alpha's events between them. Before, both were the box's one
// sequence, whose gaps counted alpha's events.
func TestWebhookIDsHideOtherISPs(t *testing.T) {
	s := openStore(t, "", subscribers.Options{NoSync: true})
	sec := writeSecret(t, specSecret)
	rb := newReceiver(t, specSecret)
	start(t, &configs.Config{ISPs: []configs.ISP{isp("alpha", "", ""), isp("beta", rb.srv.URL, sec)}}, s)
	for i := range 3 {
		addEvent(t, s, "beta", subscribers.EventBound, i)
		for j := range 4 * (i + 1) {
			addEvent(t, s, "alpha", subscribers.EventBound, 10+j)
		}
	}
	got := rb.waitAcked(3, 5*time.Second)
	b := s.EventBase()
	if want := fmt.Sprintf("%d,%d,%d", b+1, b+2, b+3); strings.Join(got, ",") != want {
		t.Fatalf("beta's receiver got webhook-ids %v, want %s (its own sequence)", got, want)
	}
	for _, d := range rb.all() {
		if strconv.FormatUint(d.ev.Seq, 10) != d.id {
			t.Errorf("body seq %d, webhook-id %s", d.ev.Seq, d.id)
		}
	}
	if st, ok := storedCursorStatus(t, s); ok && st.Cursor != b+3 {
		t.Errorf("beta's stored cursor %d, want %d", st.Cursor, b+3)
	}
}

// storedCursorStatus returns beta's stored webhook cursor as a Status.
func storedCursorStatus(t *testing.T, s *subscribers.Store) (Status, bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		seq, ok, err := s.WebhookCursor("beta")
		if err != nil {
			t.Fatal(err)
		}
		if ok && seq >= s.EventBase()+3 || time.Now().After(deadline) {
			return Status{ISP: "beta", Cursor: seq}, ok
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A new webhook's status before its worker has read its cursor (the
// worker's in-memory cursor is 0 until then) shows the stored cursor, the
// ISP's newest event when the webhook was added, and lag 0: it showed
// cursor 0 and every event of the ISP the log held as lag. Fails without
// the stored cursor in fill.
func TestStatusBeforeWorkerReadsCursor(t *testing.T) {
	s := openStore(t, "", subscribers.Options{NoSync: true})
	var last subscribers.Event
	for i := range 3 {
		last = addEvent(t, s, "beta", subscribers.EventBound, i)
	}
	m, err := New(&configs.Config{ISPs: []configs.ISP{isp("beta", "http://127.0.0.1:1/", writeSecret(t, specSecret))}}, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.mu.Lock()
	m.ctx = ctx
	m.workers["beta"] = newWorker(m, m.targets["beta"]) // not run: its cursor not read
	m.mu.Unlock()
	if st, _ := m.StatusOf("beta"); st.Cursor != last.ISPSeq || st.Lag != 0 {
		t.Errorf("status before the worker read its cursor: cursor %d, lag %d; want %d, 0", st.Cursor, st.Lag, last.ISPSeq)
	}
}
