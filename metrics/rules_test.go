package metrics

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/api"
	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/dhcpproxy"
	"github.com/ispmux/ispmux/internal/histo"
)

// promtool returns the path of Prometheus's promtool (Debian's prometheus
// package, which lab/deps.sh installs), failing the test without it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not installed (Debian package prometheus): run bash lab/deps.sh as root: %v", err)
	}
	return p
}

// runPromtool runs promtool with args in dir, failing the test with its
// output when it fails.
func runPromtool(t *testing.T, dir string, stdin string, args ...string) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// docRules returns the alert rules of docs/OPERATIONS.md ("Suggested
// rules", the yaml block an operator copies) written to a file in dir, and
// the names of its alerts.
func docRules(t *testing.T, dir string) (file string, alerts []string) {
	t.Helper()
	block := docBlock(t, "## Suggested rules\n")
	for _, m := range regexp.MustCompile(`(?m)^\s*- alert: (\w+)\s*$`).FindAllStringSubmatch(block, -1) {
		alerts = append(alerts, m[1])
	}
	file = filepath.Join(dir, "ispmux-rules.yml")
	if err := os.WriteFile(file, []byte(block), 0o644); err != nil {
		t.Fatal(err)
	}
	return file, alerts
}

// docBlock returns the first yaml block of docs/OPERATIONS.md after the
// line that starts with heading.
func docBlock(t *testing.T, heading string) string {
	t.Helper()
	raw, err := os.ReadFile("../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(raw), "\n"+heading)
	if !ok {
		t.Fatalf("docs/OPERATIONS.md: no %q", heading)
	}
	_, block, ok := strings.Cut(after, "```yaml\n")
	if !ok {
		t.Fatalf("docs/OPERATIONS.md: no yaml block after %q", heading)
	}
	block, _, ok = strings.Cut(block, "```")
	if !ok {
		t.Fatalf("docs/OPERATIONS.md: the yaml block after %q does not end", heading)
	}
	return block
}

// The suggested rules are valid for Prometheus (promtool check rules: the
// YAML, every PromQL expression, every template), and so is the scrape
// configuration with them (promtool check config), its job the one the
// rules' IspmuxDown watches, over https with a ca_file, and still valid
// with its commented server_name in use. (promtool does not look for a
// ca_file, only for a client's cert_file and key_file.)
func TestSuggestedRulesValid(t *testing.T) {
	dir := t.TempDir()
	file, alerts := docRules(t, dir)
	if len(alerts) < 10 {
		t.Errorf("%d alerts in the suggested rules: %v", len(alerts), alerts)
	}
	runPromtool(t, dir, "", "check", "rules", file)

	scrape := docBlock(t, "Prometheus:\n")
	job := regexp.MustCompile(`job_name: (\S+)`).FindStringSubmatch(scrape)
	rules, _ := os.ReadFile(file)
	if job == nil || !strings.Contains(string(rules), `up{job="`+job[1]+`"}`) {
		t.Errorf("the rules watch no up{job=...} of the scrape configuration's job %v", job)
	}
	if !regexp.MustCompile(`(?m)^\s*scheme: https\b`).MatchString(scrape) || !regexp.MustCompile(`(?m)^\s*tls_config:(\s*\{\s*|\n\s*)ca_file: /\S+`).MatchString(scrape) {
		t.Errorf("the scrape configuration is not https with a tls_config's ca_file:\n%s", scrape)
	}
	serverName := regexp.MustCompile(`(?m)^(\s*)# (server_name: )`)
	if !serverName.MatchString(scrape) {
		t.Errorf("the scrape configuration shows no server_name:\n%s", scrape)
	}
	for _, c := range []struct{ name, conf string }{
		{"prometheus.yml", scrape},
		{"prometheus-server-name.yml", serverName.ReplaceAllString(scrape, "$1$2")},
	} {
		conf := filepath.Join(dir, c.name)
		if err := os.WriteFile(conf, []byte(c.conf+"rule_files: ["+filepath.Base(file)+"]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		runPromtool(t, dir, "", "check", "config", conf)
	}
}

// A whole /metrics (ispmux's series, the Go runtime's and the process's)
// passes promtool check metrics: names, units, HELP and TYPE.
func TestExpositionPromtool(t *testing.T) {
	f := newFake(2)
	for i := range f.ports {
		for r := 1; r < int(classifier.NumReasons); r++ {
			f.ports[i].Engine.Drops[r] = uint64(r)
		}
	}
	runPromtool(t, t.TempDir(), scrape(t, Handler(New(f))), "check", "metrics")
}

// ruleBox is one ispmux whose counters a rules scenario moves minute by
// minute: two access ports, one uplink per ISP (port2, port3), ISPs isp0
// and isp1.
type ruleBox struct {
	instance string
	f        *fake
	// answer, reqAck and commit are the histograms the box observes.
	answer, reqAck [2]histo.Histogram
	commit         histo.Histogram
	// down: the box answers no scrape (up 0, no series).
	down bool
	// isp is how each ISP's DHCP goes this minute (see ispMinute).
	isp [2]string
}

func newRuleBox(instance string) *ruleBox {
	b := &ruleBox{instance: instance, f: &fake{dhcp: DHCP{Counters: map[string]uint64{}}}}
	for i := range 4 {
		b.f.ports = append(b.f.ports, Port{Name: fmt.Sprintf("port%d", i)})
	}
	for i := range 2 {
		name := fmt.Sprintf("isp%d", i)
		b.f.isps = append(b.f.isps, ISP{Name: name, DHCP: dhcpproxy.ISPCounters{Index: uint8(i), Name: name},
			Bindings: 100, StaticBindings: 2, Customers: 90, Devices: 110, NextHopResolved: true})
		b.f.webhooks = append(b.f.webhooks, WebhookSample{ISP: name})
	}
	b.f.store.JournalSync = "io_uring"
	return b
}

func observe(h *histo.Histogram, n int, d time.Duration) {
	for range n {
		h.Observe(d)
	}
}

// healthy is one minute of a healthy box: every ISP answers every DHCP
// message within 20 ms, commits take 2 ms, webhooks are delivered.
func (b *ruleBox) healthy() {
	for i := range b.f.ports {
		p := &b.f.ports[i]
		p.Queue.RxFrames += 60000
		p.Queue.RxBytes += 60000 * 500
		p.Queue.TxFrames += 60000
		p.Queue.TxBytes += 60000 * 500
		p.Engine.Up += 30000
		p.Engine.Down += 30000
		p.Engine.Drops[classifier.ReasonUnknownMAC] += 30
		p.Engine.Punts += 120
	}
	for i := range b.f.isps {
		b.ispMinute(i)
	}
	for _, k := range []string{"relayed_discover", "relayed_request", "offer", "ack"} {
		b.f.dhcp.Counters[k] += 60
	}
	b.f.dhcp.Counters["unknown_subscriber"] += 5
	b.f.store.Writes += 300
	b.f.store.Transactions += 120
	observe(&b.commit, 120, 2*time.Millisecond)
	b.f.ctl.ARPSent += 2
	b.f.ctl.ARPLearned += 2
	b.f.api = API{Requests: []api.RequestCount{{Route: "GET /v1/isps/{isp}/customers", Code: 200, Count: apiCount(b.f.api, 200) + 10},
		{Route: "GET /v1/isps/{isp}/customers", Code: 500, Count: apiCount(b.f.api, 500)}}, Connections: 1}
}

// ispMinute is one minute of ISP i's DHCP, as b.isp[i] says: "" every
// message answered (60 a minute, half DISCOVERs, half REQUESTs); "nak" the
// REQUESTs NAKed; "trickle-nak" two REQUESTs a minute, NAKed; "silent" no
// answer; "slow" the ACKs delivered in 3 s; "unreachable" the ISP's next
// hop lost, every message rejected unrelayed; "rejected" every message
// rejected unrelayed (e.g. over the uplink's MTU); "webhook-down" its
// webhook receiver refuses every delivery; "clone" every message answered,
// and 120 a minute of a clone of a customer's MAC refused as misplaced.
func (b *ruleBox) ispMinute(i int) {
	isp := &b.f.isps[i]
	d := &isp.DHCP
	out := &d.Outcomes
	wh := &b.f.webhooks[i]
	isp.NextHopResolved = true
	if b.isp[i] == "clone" {
		// A clone of one of its customers' MACs on another circuit,
		// refused twice a second; its customers served as ever.
		out[dhcpproxy.OutcomeMisplaced] += 120
	}
	switch b.isp[i] {
	case "nak":
		d.Relayed += 60
		out[dhcpproxy.OutcomeOffer] += 30
		out[dhcpproxy.OutcomeNak] += 30
		observe(&b.answer[i], 60, 20*time.Millisecond)
	case "trickle-nak":
		d.Relayed += 2
		out[dhcpproxy.OutcomeNak] += 2
		observe(&b.answer[i], 2, 20*time.Millisecond)
	case "silent":
		d.Relayed += 60
		out[dhcpproxy.OutcomeTimeout] += 60
	case "unreachable":
		isp.NextHopResolved = false
		out[dhcpproxy.OutcomeRejected] += 60
		b.f.dhcp.Counters["no_next_hop"] += 60
		b.f.ports[0].Engine.Drops[classifier.ReasonNoNextHop] += 600
	case "rejected":
		out[dhcpproxy.OutcomeRejected] += 60
	default:
		d.Relayed += 60
		out[dhcpproxy.OutcomeOffer] += 30
		out[dhcpproxy.OutcomeAck] += 30
		observe(&b.answer[i], 60, 20*time.Millisecond)
		if b.isp[i] == "slow" {
			observe(&b.reqAck[i], 30, 3*time.Second)
		} else {
			observe(&b.reqAck[i], 30, 25*time.Millisecond)
		}
	}
	if b.isp[i] == "webhook-down" {
		wh.Failures += 4
		wh.Lag += 10
	} else {
		wh.Delivered += 60
	}
}

// apiCount is the requests a counts with code.
func apiCount(a API, code int) uint64 {
	for _, r := range a.Requests {
		if r.Code == code {
			return r.Count
		}
	}
	return 0
}

// timeline is input_series for promtool test rules: each series's value
// at each minute ("_": no sample).
type timeline struct {
	minutes int
	values  map[string][]string
}

// scrape records the box's /metrics at minute m, with the labels
// Prometheus adds (instance, job) and the up series.
func (tl *timeline) scrape(t *testing.T, b *ruleBox, m int) {
	t.Helper()
	up := "1"
	if b.down {
		up = "0"
	}
	tl.set(fmt.Sprintf(`up{instance=%q,job="ispmux"}`, b.instance), m, up)
	if b.down {
		return
	}
	for _, line := range strings.Split(scrape(t, Handler(New(b.f))), "\n") {
		if !strings.HasPrefix(line, "ispmux_") { // not a comment, nor the runtime's series
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		series, value := line[:i], line[i+1:]
		target := fmt.Sprintf(`instance=%q,job="ispmux"`, b.instance)
		if name, labels, ok := strings.Cut(series, "{"); ok {
			series = name + "{" + target + "," + labels
		} else {
			series += "{" + target + "}"
		}
		tl.set(series, m, value)
	}
}

func (tl *timeline) set(series string, m int, v string) {
	if tl.values[series] == nil {
		tl.values[series] = slices.Repeat([]string{"_"}, tl.minutes)
	}
	tl.values[series][m] = v
}

// inputSeries is the timeline in promtool's notation: runs of one value
// are written a+0xN.
func (tl *timeline) inputSeries() []map[string]string {
	var out []map[string]string
	for _, s := range slices.Sorted(func(yield func(string) bool) {
		for k := range tl.values {
			if !yield(k) {
				return
			}
		}
	}) {
		v := tl.values[s]
		var parts []string
		for i := 0; i < len(v); {
			j := i + 1
			for j < len(v) && v[j] == v[i] {
				j++
			}
			switch {
			case j-i == 1:
				parts = append(parts, v[i])
			case v[i] == "_":
				parts = append(parts, "_x"+strconv.Itoa(j-i))
			default:
				parts = append(parts, v[i]+"+0x"+strconv.Itoa(j-i-1))
			}
			i = j
		}
		out = append(out, map[string]string{"series": s, "values": strings.Join(parts, " ")})
	}
	return out
}

// firing is an alert expected to fire: its labels (besides alertname)
// and its summary.
type firing struct {
	labels  map[string]string
	summary string
}

// ruleScenario is a story of one or two boxes and the alerts expected at
// some minutes: at each check every alert of the rules is tested, and
// those not named must not fire.
type ruleScenario struct {
	name    string
	minutes int
	// fault moves the boxes at minute m, before their minute (healthy,
	// but for the ISP modes fault sets).
	fault  func(m int, a, b *ruleBox)
	checks map[int]map[string][]firing
	// queries are PromQL expressions checked at some minutes
	// (promql_expr_test).
	queries []queryCheck
}

// queryCheck is an expression's expected samples at a minute.
type queryCheck struct {
	minute  int
	expr    string
	samples []map[string]any
}

// build runs the scenario and returns its promtool test.
func (sc ruleScenario) build(t *testing.T, alerts []string) map[string]any {
	tl := &timeline{minutes: sc.minutes, values: map[string][]string{}}
	a, b := newRuleBox("gw-a:9400"), newRuleBox("gw-b:9400")
	for m := range sc.minutes {
		sc.fault(m, a, b)
		for _, x := range []*ruleBox{a, b} {
			x.healthy()
			for i := range x.f.isps {
				x.f.isps[i].DHCP.Answer, x.f.isps[i].DHCP.RequestAck = x.answer[i].Snapshot(), x.reqAck[i].Snapshot()
			}
			x.f.store.Latency = x.commit.Snapshot()
			tl.scrape(t, x, m)
		}
	}
	var tests []map[string]any
	for _, m := range slices.Sorted(func(yield func(int) bool) {
		for k := range sc.checks {
			if !yield(k) {
				return
			}
		}
	}) {
		for alert := range sc.checks[m] {
			if !slices.Contains(alerts, alert) {
				t.Fatalf("%s: no alert %s in the rules", sc.name, alert)
			}
		}
		for _, alert := range alerts {
			exp := []map[string]any{}
			for _, f := range sc.checks[m][alert] {
				exp = append(exp, map[string]any{"exp_labels": f.labels, "exp_annotations": map[string]string{"summary": f.summary}})
			}
			tests = append(tests, map[string]any{"eval_time": fmt.Sprintf("%dm", m), "alertname": alert, "exp_alerts": exp})
		}
	}
	var queries []map[string]any
	for _, q := range sc.queries {
		queries = append(queries, map[string]any{"eval_time": fmt.Sprintf("%dm", q.minute), "expr": q.expr, "exp_samples": q.samples})
	}
	return map[string]any{"name": sc.name, "interval": "1m", "input_series": tl.inputSeries(), "alert_rule_test": tests, "promql_expr_test": queries}
}

// dashboardQuery returns the query of the Grafana dashboard's panel
// titled title, its variables set to every ISP and port, the gateways
// instance (a regexp: ".*" for All) and 5m.
func dashboardQuery(t *testing.T, title, instance string) string {
	t.Helper()
	for _, p := range readDashboard(t).Panels {
		if p.Title == title && len(p.Targets) > 0 {
			return strings.NewReplacer("$__rate_interval", "5m", "$instance", instance, "$isp", ".*", "$port", ".*").Replace(p.Targets[0].Expr)
		}
	}
	t.Fatalf("no panel %q in the dashboard", title)
	return ""
}

// at is the labels of box a's series.
func at(box string, kv ...string) map[string]string {
	l := map[string]string{"instance": box, "job": "ispmux"}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return l
}

const gwA, gwB = "gw-a:9400", "gw-b:9400"

// Each suggested alert fires, with its labels and summary, from the
// series ispmux really exports when what it is about happens, and no
// alert fires on a healthy box (promtool test rules); so do some of the
// Grafana dashboard's queries.
func TestSuggestedRulesFire(t *testing.T) {
	dir := t.TempDir()
	file, alerts := docRules(t, dir)
	none := map[string][]firing{}
	scenarios := []ruleScenario{
		{name: "healthy", minutes: 60, fault: func(int, *ruleBox, *ruleBox) {},
			checks: map[int]map[string][]firing{10: none, 30: none, 59: none}},
		{name: "box b stops answering scrapes", minutes: 25, fault: func(m int, _, b *ruleBox) { b.down = m >= 10 },
			checks: map[int]map[string][]firing{
				11: none,
				13: {"IspmuxDown": {{at(gwB, "severity", "page"), "ispmux gw-b:9400 is not answering scrapes"}}},
				24: {"IspmuxDown": {{at(gwB, "severity", "page"), "ispmux gw-b:9400 is not answering scrapes"}}},
			}},
		{name: "isp1's next hop lost on box a", minutes: 30, fault: func(m int, a, _ *ruleBox) {
			if m >= 10 {
				a.isp[1] = "unreachable"
			}
		}, checks: map[int]map[string][]firing{
			9:  none,
			11: {"IspmuxISPUnreachable": {{at(gwA, "isp", "isp1", "severity", "page"), "ISP isp1: next hop unresolved, its subscribers are offline"}}},
			29: {
				"IspmuxISPUnreachable": {{at(gwA, "isp", "isp1", "severity", "page"), "ISP isp1: next hop unresolved, its subscribers are offline"}},
				"IspmuxDHCPRefusals":   {{at(gwA, "isp", "isp1", "severity", "ticket"), "ISP isp1: 100% of DHCP exchanges refused"}},
			},
		}},
		{name: "every message to isp0 refused by ispmux on box b (over the uplink's MTU)", minutes: 30, fault: func(m int, _, b *ruleBox) {
			if m >= 5 {
				b.isp[0] = "rejected"
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			29: {"IspmuxDHCPRefusals": {{at(gwB, "isp", "isp0", "severity", "ticket"), "ISP isp0: 100% of DHCP exchanges refused"}}},
		}, queries: []queryCheck{{29, dashboardQuery(t, "Refused share per ISP", ".*"), []map[string]any{
			// Box a's isp0 answers all, box b's refuses all.
			{"labels": `{isp="isp0"}`, "value": 0.5}, {"labels": `{isp="isp1"}`, "value": 0},
		}}, {29, dashboardQuery(t, "Refused share per ISP", regexp.QuoteMeta(gwB)), []map[string]any{
			// Box b alone.
			{"labels": `{isp="isp0"}`, "value": 1}, {"labels": `{isp="isp1"}`, "value": 0},
		}}}},
		{name: "a data port down", minutes: 20, fault: func(m int, a, b *ruleBox) {
			a.f.ports[2].Queue.Down = m >= 10
			b.f.ports[1].Queue.Down = m == 10 // one scrape: shorter than for
			if a.f.ports[2].Queue.Down {
				a.f.ports[2].Queue.Errors += 10
			}
		}, checks: map[int]map[string][]firing{
			10: none,
			11: {"IspmuxPortDown": {{at(gwA, "port", "port2", "severity", "page"), "data port port2 is failing (link down or gone)"}}},
			19: {"IspmuxPortDown": {{at(gwA, "port", "port2", "severity", "page"), "data port port2 is failing (link down or gone)"}}},
		}},
		{name: "a clone of an isp0 customer's MAC on another circuit of box a", minutes: 31, fault: func(m int, a, _ *ruleBox) {
			if m >= 5 {
				a.isp[0] = "clone"
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			19: none,
			30: {"IspmuxMACMisplaced": {{at(gwA, "isp", "isp0", "severity", "ticket"), "ISP isp0: 2/s DHCP messages of its customers' MACs refused for where they were seen (a MAC clone on another circuit, or devices moved): its rejected events name the circuits"}}},
		}},
		{name: "isp0 NAKs half the messages on box a; isp1 NAKs a trickle on box b", minutes: 31, fault: func(m int, a, b *ruleBox) {
			if m >= 5 {
				a.isp[0], b.isp[1] = "nak", "trickle-nak"
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			30: {"IspmuxDHCPRefusals": {{at(gwA, "isp", "isp0", "severity", "ticket"), "ISP isp0: 50% of DHCP exchanges refused"}}},
		}},
		{name: "isp1's servers silent on box b", minutes: 30, fault: func(m int, _, b *ruleBox) {
			if m >= 10 {
				b.isp[1] = "silent"
			}
		}, checks: map[int]map[string][]firing{
			9: none,
			29: {
				"IspmuxISPDHCPSilent": {{at(gwB, "isp", "isp1", "severity", "page"), "ISP isp1: its DHCP servers answer nothing"}},
				"IspmuxDHCPRefusals":  {{at(gwB, "isp", "isp1", "severity", "ticket"), "ISP isp1: 100% of DHCP exchanges refused"}},
			},
		}},
		{name: "isp0's ACKs slow on box a", minutes: 31, fault: func(m int, a, _ *ruleBox) {
			if m >= 5 {
				a.isp[0] = "slow"
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			30: {"IspmuxDHCPSlow": {{at(gwA, "isp", "isp0", "severity", "ticket"), "ISP isp0: REQUEST→ACK p99 4.975s"}}},
		}},
		{name: "box a's disk slow, box b busy", minutes: 31, fault: func(m int, a, b *ruleBox) {
			if m >= 5 {
				observe(&a.commit, 120, 300*time.Millisecond)
			}
			observe(&b.commit, 20000, time.Millisecond)
		}, checks: map[int]map[string][]firing{
			4:  none,
			30: {"IspmuxStoreSlow": {{at(gwA, "severity", "ticket"), "store commit p99 495ms: every ACK waits for it"}}},
		}},
		{name: "a store error on box a", minutes: 21, fault: func(m int, a, _ *ruleBox) {
			if m == 10 {
				a.f.dhcp.Counters["store_error"]++
			}
		}, checks: map[int]map[string][]firing{
			9:  none,
			11: {"IspmuxStoreErrors": {{at(gwA, "decision", "store_error", "severity", "page"), "store commits failing: DHCP ACKs withheld"}}},
			20: none,
		}},
		{name: "box b's store refuses writes (its disk full): an import's lines fail", minutes: 21, fault: func(m int, _, b *ruleBox) {
			if m == 10 {
				b.f.store.WriteErrors += 30232
			}
		}, checks: map[int]map[string][]firing{
			9:  none,
			11: {"IspmuxStoreWriteErrors": {{at(gwB, "severity", "page"), "store writes failing: 30.23k in 5 min, their changes not made"}}},
			20: none,
		}},
		{name: "box a's punt queue full", minutes: 21, fault: func(m int, a, b *ruleBox) {
			if m >= 5 {
				a.f.ports[0].Engine.Drops[classifier.ReasonPuntQueueFull] += 120
				b.f.ports[0].Engine.Drops[classifier.ReasonPuntQueueFull] += 36
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			20: {"IspmuxControlPlaneBehind": {{at(gwA, "severity", "page"), "punt queue full: DHCP frames are being lost"}}},
		}},
		{name: "box a's DHCP transactions at max_pending; box b's at a peak now and then", minutes: 16, fault: func(m int, a, b *ruleBox) {
			if m >= 5 {
				a.f.dhcp.Pending = 4096
				a.f.dhcp.Counters["pending_full"] += 60
				b.f.dhcp.Counters["pending_full"]++
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			9:  none,
			15: {"IspmuxDHCPPendingFull": {{at(gwA, "decision", "pending_full", "severity", "page"), "DHCP transactions at [dhcp] max_pending: subscribers' DISCOVERs and REQUESTs dropped"}}},
		}},
		{name: "box a drops traffic for want of a next hop, every ISP's resolved (the portal's path)", minutes: 21, fault: func(m int, a, _ *ruleBox) {
			if m >= 5 {
				a.f.ports[0].Engine.Drops[classifier.ReasonNoNextHop] += 600
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			20: {"IspmuxNoNextHopDrops": {{at(gwA, "severity", "ticket"), "10 frames/s dropped for want of a next hop while every ISP's is resolved: the portal's, or a router flapping"}}},
		}},
		{name: "a subscriber floods DHCP on box a's port0; one a moment on box b", minutes: 41, fault: func(m int, a, b *ruleBox) {
			if m >= 5 {
				a.f.ports[0].Engine.Drops[classifier.ReasonDHCPFlood] += 1200
			}
			if m == 5 {
				b.f.ports[1].Engine.Drops[classifier.ReasonDHCPFlood] += 1200
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			14: none,
			40: {"IspmuxDHCPFlood": {{at(gwA, "port", "port0", "severity", "ticket"), "port port0: a subscriber floods DHCP past its budget (its MAC: the proxy's rate-limited, unknown, blocked or rejected events)"}}},
		}},
		{name: "one circuit of box a's port1 floods DHCP from made-up MACs; box b's port0 onboards a building's devices at once", minutes: 41, fault: func(m int, a, b *ruleBox) {
			if m >= 5 {
				// Past the circuit's share (10/s): 50 made-up MACs a second.
				a.f.ports[1].Engine.Drops[classifier.ReasonUnregisteredDHCPCircuit] += 40 * 60
			}
			if m == 5 {
				// 300 devices back at once, onboarded at 10/s: drops for a moment.
				b.f.ports[0].Engine.Drops[classifier.ReasonUnregisteredDHCPCircuit] += 600
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			14: none,
			40: {"IspmuxUnregisteredDHCPCircuitFlood": {{at(gwA, "port", "port1", "severity", "ticket"),
				"port port1: a circuit floods DHCP from made-up MACs past its share (40/s dropped): its new devices are not onboarded, the port's other circuits' are (ispmux ctl status, last drop by cause: the flood's last MAC)"}}},
		}},
		{name: "box a's walled garden full; box b's a moment", minutes: 26, fault: func(m int, a, b *ruleBox) {
			if m >= 5 {
				a.f.dhcp.Counters["onboarding_full"] += 10
			}
			if m == 5 {
				b.f.dhcp.Counters["onboarding_full"] += 3
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			14: none,
			25: {"IspmuxOnboardingFull": {{at(gwA, "decision", "onboarding_full", "severity", "ticket"), "walled garden full: new devices get no onboarding lease"}}},
		}},
		{name: "claimed devices refused by their ISP on box a; one handover failing once on box b", minutes: 56, fault: func(m int, a, b *ruleBox) {
			if m >= 5 {
				a.f.dhcp.Counters["handover_failed"] += 3
				a.f.dhcp.Counters["handover_failed_refused"] += 3
			}
			if m == 5 {
				b.f.dhcp.Counters["handover_failed"]++
				b.f.dhcp.Counters["handover_failed_unanswered"]++
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			34: none,
			36: none,
			55: {"IspmuxHandoverFailing": {{at(gwA, "severity", "ticket"), "devices claimed on the portal not taken by their ISP (handover failed): ispmux ctl status"}}},
		}},
		{name: "box a's journal falls back to fdatasync", minutes: 21, fault: func(m int, a, _ *ruleBox) {
			if m >= 10 {
				a.f.store.JournalSync = "fdatasync"
			}
		}, checks: map[int]map[string][]firing{
			9:  none,
			20: {"IspmuxJournalFdatasync": {{at(gwA, "via", "fdatasync", "severity", "ticket"), "binding journal synced by fdatasync, not io_uring: slower ACKs (the store open log line says why)"}}},
		}},
		{name: "box a's port2 egress full", minutes: 21, fault: func(m int, a, b *ruleBox) {
			if m >= 5 {
				a.f.ports[2].Queue.TxFull += 12000
				b.f.ports[2].Queue.TxFull += 3600
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			20: {"IspmuxEgressDrops": {{at(gwA, "port", "port2", "severity", "ticket"), "port port2: 200 frames/s not sent (egress full)"}}},
		}},
		{name: "spoofing on box a's port0", minutes: 26, fault: func(m int, a, b *ruleBox) {
			if m >= 5 {
				a.f.ports[0].Engine.Drops[classifier.ReasonSpoofedSource] += 20
				b.f.ports[0].Engine.Drops[classifier.ReasonSpoofedSource] += 1
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			25: {"IspmuxSpoofing": {{at(gwA, "port", "port0", "severity", "ticket"), "port port0: subscribers sending from addresses not theirs"}}},
		}},
		{name: "box a's reload refused (an error in the file)", minutes: 26, fault: func(m int, a, _ *ruleBox) {
			if m >= 5 {
				a.f.config = Config{LastReloadOK: false, LastSuccess: time.Unix(1700000000, 0), RestartPending: true}
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			25: {"IspmuxReloadRefused": {{at(gwA, "severity", "ticket"), "the last reload of the configuration was refused: the running configuration is not the file's (ispmux ctl status, last reload)"}}},
		}},
		{name: "box b's reload applied in part (a token file missing), box a's refused", minutes: 26, fault: func(m int, a, b *ruleBox) {
			if m >= 5 {
				b.f.config = Config{LastReloadOK: false, LastReloadPartial: true, LastSuccess: time.Unix(1700000300, 0)}
				a.f.config = Config{LastReloadOK: false, LastSuccess: time.Unix(1700000000, 0)}
			}
		}, checks: map[int]map[string][]firing{
			4: none,
			25: {
				"IspmuxReloadAppliedInPart": {{at(gwB, "severity", "ticket"), "the last reload applied the configuration in part: what it names (a token file, certificate, webhook secret or static subscriber) stays as it was, the rest of the file applied (ispmux ctl status, last reload)"}},
				"IspmuxReloadRefused":       {{at(gwA, "severity", "ticket"), "the last reload of the configuration was refused: the running configuration is not the file's (ispmux ctl status, last reload)"}},
			},
		}},
		{name: "releases pending on box a", minutes: 40, fault: func(m int, a, _ *ruleBox) {
			if m >= 5 {
				a.f.dhcp.PendingIntents = 3
			}
		}, checks: map[int]map[string][]firing{
			30: none,
			36: {"IspmuxPendingIntents": {{at(gwA, "severity", "ticket"), "3 RELEASE/DECLINE not delivered to ISPs for 30 min"}}},
		}},
		{name: "isp1's webhook receiver down on box a", minutes: 41, fault: func(m int, a, _ *ruleBox) {
			if m >= 5 {
				a.isp[1] = "webhook-down"
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			40: {"IspmuxWebhookLag": {{at(gwA, "isp", "isp1", "severity", "ticket"), "ISP isp1: webhook 360 events behind"}}},
		}},
		{name: "refusal events over budget on box a", minutes: 21, fault: func(m int, a, _ *ruleBox) {
			if m >= 5 {
				a.f.dhcp.Counters["events_suppressed"] += 120
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			20: {"IspmuxEventsSuppressed": {{at(gwA, "severity", "ticket"), "refusal events over budget: the log and webhooks see a sample"}}},
		}},
		{name: "box a's API answers 5xx", minutes: 16, fault: func(m int, a, _ *ruleBox) {
			if m >= 5 {
				a.f.api.Requests[1].Count++
			}
		}, checks: map[int]map[string][]firing{
			4:  none,
			15: {"IspmuxAPIErrors": {{at(gwA, "severity", "ticket"), "the management API answers 5xx"}}},
		}},
	}
	// Every suggested alert is shown to fire in some scenario: an alert
	// added without one is tested for not firing only.
	fires := map[string]bool{}
	for _, sc := range scenarios {
		for _, check := range sc.checks {
			for alert, f := range check {
				fires[alert] = fires[alert] || len(f) > 0
			}
		}
	}
	for _, alert := range alerts {
		if !fires[alert] {
			t.Errorf("no scenario makes %s fire: add one", alert)
		}
	}
	var tests []map[string]any
	for _, sc := range scenarios {
		tests = append(tests, sc.build(t, alerts))
	}
	unit, err := json.MarshalIndent(map[string]any{
		"rule_files":          []string{filepath.Base(file)},
		"evaluation_interval": "1m",
		"tests":               tests,
	}, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ispmux-rules-test.yml"), unit, 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, dir, "", "test", "rules", "ispmux-rules-test.yml")
}

// TestRulesFileMatchesDoc: contrib/prometheus/ispmux-rules.yml, the rules
// file an operator loads (the Debian package ships it), is the suggested
// rules' block of docs/OPERATIONS.md (promtool checks that block): a
// trial's operator had to cut the rules out of the page.
func TestRulesFileMatchesDoc(t *testing.T) {
	raw, err := os.ReadFile("../contrib/prometheus/ispmux-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var body []string
	for _, l := range strings.SplitAfter(string(raw), "\n") {
		if !strings.HasPrefix(l, "#") || len(body) > 0 {
			body = append(body, l)
		}
	}
	if got, want := strings.Join(body, ""), docBlock(t, "## Suggested rules\n"); got != want {
		t.Errorf("contrib/prometheus/ispmux-rules.yml differs from docs/OPERATIONS.md's suggested rules: copy the block over it")
	}
}
