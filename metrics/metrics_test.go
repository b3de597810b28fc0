package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ispmux/ispmux/api"
	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/dhcpproxy"
	"github.com/ispmux/ispmux/engine"
	"github.com/ispmux/ispmux/internal/histo"
	"github.com/ispmux/ispmux/subscribers"
)

// fake is a Source whose numbers a test moves.
type fake struct {
	mu       sync.Mutex
	ports    []Port
	isps     []ISP
	dhcp     DHCP
	ctl      engine.ControlCounters
	store    subscribers.CommitStats
	api      API
	webhooks []WebhookSample
	config   Config
}

func (f *fake) Ports() []Port {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Port(nil), f.ports...)
}

func (f *fake) ISPs() []ISP {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ISP(nil), f.isps...)
}

func (f *fake) DHCP() DHCP {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.dhcp
	d.Counters = map[string]uint64{}
	for k, v := range f.dhcp.Counters {
		d.Counters[k] = v
	}
	return d
}

func (f *fake) Control() engine.ControlCounters {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctl
}

func (f *fake) Store() subscribers.CommitStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.store
}

func (f *fake) API() API {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.api
}

func (f *fake) Portal() map[string]uint64 {
	return map[string]uint64{"pages": 3, "claims_ok": 1}
}

func (f *fake) Config() Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.config
	if c.LastSuccess.IsZero() {
		c.LastReloadOK, c.LastSuccess = true, time.Unix(1700000000, 0)
	}
	return c
}

func (f *fake) Webhooks() []WebhookSample {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]WebhookSample(nil), f.webhooks...)
}

func snapshot(ds ...time.Duration) histo.Snapshot {
	var h histo.Histogram
	for _, d := range ds {
		h.Observe(d)
	}
	return h.Snapshot()
}

// newFake is a box with two access ports and one uplink per ISP, nisp
// ISPs and some traffic.
func newFake(nisp int) *fake {
	f := &fake{dhcp: DHCP{Counters: map[string]uint64{"relayed_discover": 10, "offer": 9, "ack": 8, "unknown_subscriber": 2, "events_suppressed": 1},
		Pending: 3, PendingIntents: 1, Leases: 8}}
	for i := range 2 + nisp {
		p := Port{Name: fmt.Sprintf("port%d", i)}
		p.Queue.RxFrames, p.Queue.RxBytes, p.Queue.TxFrames, p.Queue.TxBytes = 100, 10000, 90, 9000
		p.Engine.Name = p.Name
		p.Engine.Up, p.Engine.Down = 80, 70
		p.Engine.Drops[classifier.ReasonUnknownMAC] = 5
		f.ports = append(f.ports, p)
	}
	for i := range nisp {
		name := fmt.Sprintf("isp%d", i)
		c := dhcpproxy.ISPCounters{Index: uint8(i), Name: name, Relayed: 20,
			Answer: snapshot(3*time.Millisecond, 40*time.Millisecond), RequestAck: snapshot(8 * time.Millisecond)}
		c.Outcomes[dhcpproxy.OutcomeOffer], c.Outcomes[dhcpproxy.OutcomeAck], c.Outcomes[dhcpproxy.OutcomeTimeout] = 5, 4, 1
		f.isps = append(f.isps, ISP{Name: name, DHCP: c, Bindings: 4, StaticBindings: 1, Customers: 7, Devices: 9, NextHopResolved: true})
		f.webhooks = append(f.webhooks, WebhookSample{ISP: name, Delivered: 12, Failures: 1, Lag: 2})
	}
	f.store = subscribers.CommitStats{Transactions: 9, Writes: 31, WindowWaits: 4, JournalSync: "fdatasync", Latency: snapshot(time.Millisecond, 2*time.Millisecond)}
	f.api = API{Requests: []api.RequestCount{{Route: "GET /v1/isps", Code: 200, Count: 3}, {Route: api.RouteOther, Code: 404, Count: 1}},
		Latency: []api.RouteLatency{{Route: "GET /v1/isps", Latency: snapshot(time.Millisecond)}}, Connections: 1, ConnectionsRefused: 2}
	return f
}

func TestLint(t *testing.T) {
	problems, err := testutil.CollectAndLint(New(newFake(2)))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// The whole handler too (the runtime's and process's collectors).
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(newFake(2)))
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("pedantic registry: %v", err)
	}
}

// Every description is collected (none is missing from Describe or
// Collect), and every series names only bounded labels.
func TestEveryMetricCollected(t *testing.T) {
	c := New(newFake(2))
	got := map[string]bool{}
	ch := make(chan prometheus.Metric, 10000)
	c.Collect(ch)
	close(ch)
	for m := range ch {
		got[descFQName(m.Desc())] = true
	}
	for _, n := range Names() {
		if !got[n] {
			t.Errorf("%s not collected", n)
		}
	}
	if n := testutil.CollectAndCount(c); n < len(Names()) {
		t.Errorf("%d series", n)
	}
	allowed := map[string]bool{"port": true, "isp": true, "reason": true, "outcome": true, "kind": true, "direction": true,
		"decision": true, "route": true, "code": true, "via": true, "budget": true}
	dch := make(chan *prometheus.Desc, 100)
	c.Describe(dch)
	close(dch)
	for d := range dch {
		for _, l := range descLabels(d) {
			if !allowed[l] {
				t.Errorf("%s: label %q", d, l)
			}
		}
	}
}

var (
	fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)
	labelsRE = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

func descFQName(d *prometheus.Desc) string {
	if m := fqNameRE.FindStringSubmatch(d.String()); m != nil {
		return m[1]
	}
	return ""
}

func descLabels(d *prometheus.Desc) []string {
	m := labelsRE.FindStringSubmatch(d.String())
	if m == nil || m[1] == "" {
		return nil
	}
	return strings.Split(m[1], ",")
}

// Values move with the source: a DORA at isp1, a drop, a webhook
// delivery, a commit, an API request.
func TestValuesMove(t *testing.T) {
	f := newFake(2)
	c := New(f)
	expect := func(what string, want string, names ...string) {
		t.Helper()
		if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	exchanges := func(isp1Ack, isp1Offer int) string {
		var b strings.Builder
		b.WriteString("# HELP ispmux_dhcp_exchanges_total " + helpOf(t, "ispmux_dhcp_exchanges_total") + "\n# TYPE ispmux_dhcp_exchanges_total counter\n")
		for i, isp := range []string{"isp0", "isp1"} {
			ack, offer := 4, 5
			if i == 1 {
				ack, offer = isp1Ack, isp1Offer
			}
			for o := range dhcpproxy.NumOutcomes {
				v := 0
				switch o {
				case dhcpproxy.OutcomeAck:
					v = ack
				case dhcpproxy.OutcomeOffer:
					v = offer
				case dhcpproxy.OutcomeTimeout:
					v = 1
				}
				fmt.Fprintf(&b, "ispmux_dhcp_exchanges_total{isp=%q,outcome=%q} %d\n", isp, o.String(), v)
			}
		}
		return b.String()
	}
	expect("exchanges before", exchanges(4, 5), "ispmux_dhcp_exchanges_total")

	f.mu.Lock()
	d := &f.isps[1].DHCP
	d.Outcomes[dhcpproxy.OutcomeOffer]++
	d.Outcomes[dhcpproxy.OutcomeAck]++
	d.RequestAck.Add(snapshot(20 * time.Millisecond))
	f.isps[1].Bindings++
	f.ports[0].Engine.Drops[classifier.ReasonSpoofedSource] += 3
	f.webhooks[1].Delivered += 2
	f.webhooks[1].Lag = 0
	f.store.Latency.Add(snapshot(5 * time.Millisecond))
	f.api.Requests[0].Count++
	f.dhcp.Counters["events_suppressed"] = 4
	f.dhcp.Pending = 0
	f.dhcp.MaxPending, f.dhcp.MaxOnboarding, f.dhcp.Registered, f.dhcp.MaxRegistered = 4096, 100000, 12, 1<<20
	f.mu.Unlock()

	expect("exchanges after", exchanges(5, 6), "ispmux_dhcp_exchanges_total")
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ispmux_bindings", map[string]string{"isp": "isp1", "kind": "dhcp"}, 5},
		{"ispmux_bindings", map[string]string{"isp": "isp0", "kind": "static"}, 1},
		{"ispmux_port_drops_total", map[string]string{"port": "port0", "reason": "spoofed_source"}, 3},
		{"ispmux_port_drops_total", map[string]string{"port": "port0", "reason": "unknown_mac"}, 5},
		{"ispmux_port_drops_total", map[string]string{"port": "port1", "reason": "ttl_expired"}, 0},
		{"ispmux_webhook_deliveries_total", map[string]string{"isp": "isp1"}, 14},
		{"ispmux_webhook_lag_events", map[string]string{"isp": "isp1"}, 0},
		{"ispmux_webhook_lag_events", map[string]string{"isp": "isp0"}, 2},
		{"ispmux_api_requests_total", map[string]string{"route": "GET /v1/isps", "code": "200"}, 4},
		{"ispmux_events_suppressed_total", nil, 4},
		{"ispmux_dhcp_pending_transactions", nil, 0},
		{"ispmux_dhcp_pending_transactions_max", nil, 4096},
		{"ispmux_onboarding_max", nil, 100000},
		{"ispmux_registered_devices", nil, 12},
		{"ispmux_registered_devices_max", nil, 1 << 20},
		{"ispmux_dhcp_decisions_total", map[string]string{"decision": "unknown_subscriber"}, 2},
		{"ispmux_isp_next_hop_resolved", map[string]string{"isp": "isp0"}, 1},
		{"ispmux_dhcp_request_ack_seconds_count", map[string]string{"isp": "isp1"}, 2},
		{"ispmux_dhcp_request_ack_seconds_count", map[string]string{"isp": "isp0"}, 1},
		{"ispmux_store_commit_seconds_count", nil, 3},
		{"ispmux_store_writes_total", nil, 31},
		{"ispmux_store_commit_window_waits_total", nil, 4},
		{"ispmux_store_journal_sync_info", map[string]string{"via": "fdatasync"}, 1},
		{"ispmux_log_dropped_lines_total", nil, 0},
	}
	text := scrape(t, Handler(c))
	for _, ck := range checks {
		if got, ok := sampleValue(text, ck.name, ck.labels); !ok || got != ck.want {
			t.Errorf("%s%v = %v (found %v), want %v", ck.name, ck.labels, got, ok, ck.want)
		}
	}
	// events_suppressed is its own metric, not a decision.
	if strings.Contains(text, `decision="events_suppressed"`) {
		t.Error("events_suppressed exported as a decision")
	}
	// A histogram's bucket.
	if got, ok := sampleValue(text, "ispmux_dhcp_request_ack_seconds_bucket", map[string]string{"isp": "isp1", "le": "0.01"}); !ok || got != 1 {
		t.Errorf("request→ack le=0.01: %v %v", got, ok)
	}
}

func helpOf(t *testing.T, name string) string {
	t.Helper()
	ch := make(chan *prometheus.Desc, 100)
	New(&fake{}).Describe(ch)
	close(ch)
	for d := range ch {
		if descFQName(d) == name {
			m := regexp.MustCompile(`help: "((?:[^"\\]|\\.)*)"`).FindStringSubmatch(d.String())
			return m[1]
		}
	}
	t.Fatalf("no %s", name)
	return ""
}

func scrape(t testing.TB, h http.Handler) string {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", w.Code, w.Body)
	}
	return w.Body.String()
}

// sampleValue finds the sample of name with exactly these labels (in any
// order) in the text format.
func sampleValue(text, name string, labels map[string]string) (float64, bool) {
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, name) {
			continue
		}
		rest := l[len(name):]
		got := map[string]string{}
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			for _, kv := range regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`).FindAllStringSubmatch(rest[:end], -1) {
				got[kv[1]] = kv[2]
			}
			rest = rest[end+1:]
		}
		if !strings.HasPrefix(rest, " ") || len(got) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			match = match && got[k] == v
		}
		if match {
			var v float64
			fmt.Sscan(strings.TrimSpace(rest), &v)
			return v, true
		}
	}
	return 0, false
}

func TestHandlerRoutes(t *testing.T) {
	h := Handler(New(newFake(1)))
	for _, tt := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/metrics", 200},
		{"HEAD", "/metrics", 200},
		{"POST", "/metrics", 405},
		{"GET", "/", 404},
		{"GET", "/debug/pprof/", 404},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tt.method, tt.path, nil))
		if w.Code != tt.code {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, w.Code, tt.code)
		}
	}
	body := scrape(t, h)
	for _, want := range []string{"go_goroutines", "process_start_time_seconds", "go_build_info", "ispmux_port_received_frames_total{port=\"port0\"} 100"} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in /metrics", want)
		}
	}
}

// A nil Funcs field contributes nothing; the rest is served.
func TestFuncs(t *testing.T) {
	f := newFake(1)
	c := New(Funcs{ISPsFunc: f.ISPs, WebhooksFunc: f.Webhooks})
	text := scrape(t, Handler(c))
	if _, ok := sampleValue(text, "ispmux_bindings", map[string]string{"isp": "isp0", "kind": "dhcp"}); !ok {
		t.Error("no bindings")
	}
	if strings.Contains(text, "ispmux_port_received_frames_total{") {
		t.Error("ports without PortsFunc")
	}
}
