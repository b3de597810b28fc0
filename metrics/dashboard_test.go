package metrics

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The Grafana dashboard in contrib/ is valid JSON, and every query names
// only metrics the collector exports.
func TestGrafanaDashboard(t *testing.T) {
	d := readDashboard(t)
	raw, err := os.ReadFile("../contrib/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if d.Title == "" || d.UID == "" {
		t.Error("no title or uid")
	}
	exported := map[string]bool{}
	for _, n := range Names() {
		exported[n] = true
	}
	metricRE := regexp.MustCompile(`\bispmux_[a-z0-9_]+`)
	check := func(where, expr string) {
		t.Helper()
		found := metricRE.FindAllString(expr, -1)
		if len(found) == 0 {
			t.Errorf("%s: %q names no ispmux metric", where, expr)
		}
		for _, m := range found {
			base := m
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(m, suf); ok && exported[b] && strings.HasSuffix(b, "_seconds") {
					base = b
				}
			}
			if !exported[base] {
				t.Errorf("%s: %s is not a metric the collector exports", where, m)
			}
		}
	}
	ids := map[int]bool{}
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			check("panel "+p.Title, tg.Expr)
			queries++
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			check("variable "+v.Name, v.Definition)
		}
	}
	// What the issue asks the dashboard to show.
	for _, want := range []string{"ispmux_bindings", "ispmux_dhcp_exchanges_total", "ispmux_dhcp_isp_answer_seconds_bucket",
		"ispmux_dhcp_request_ack_seconds_bucket", "ispmux_port_drops_total", "ispmux_webhook_lag_events"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
	if queries < 10 {
		t.Errorf("%d queries", queries)
	}
}

// dashboard is what the tests read of contrib/grafana-dashboard.json.
type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
			Multi      bool   `json:"multi"`
			IncludeAll bool   `json:"includeAll"`
			AllValue   string `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile("../contrib/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("contrib/grafana-dashboard.json: %v", err)
	}
	return d
}

// labelValues is a query variable's label_values(SELECTOR, LABEL).
var labelValues = regexp.MustCompile(`^label_values\((.+), *(\w+)\)$`)

// Every query of the dashboard (each panel's, and each variable's
// selector) is PromQL Prometheus parses, once Grafana has put in the
// variables (every one of them the dashboard's, or $__rate_interval): a
// rules file with one recording rule per query passes promtool check
// rules, which parses every expression.
func TestGrafanaQueriesParse(t *testing.T) {
	d := readDashboard(t)
	vars := map[string]bool{"__rate_interval": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	varRE := regexp.MustCompile(`\$\{?(\w+)\}?`)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	add := func(where, expr string) {
		t.Helper()
		for _, m := range varRE.FindAllStringSubmatch(expr, -1) {
			if !vars[m[1]] {
				t.Errorf("%s: $%s is no variable of the dashboard", where, m[1])
			}
		}
		expr = varRE.ReplaceAllStringFunc(expr, func(v string) string {
			if strings.Contains(v, "__rate_interval") {
				return "5m"
			}
			return ".*" // a variable's All
		})
		q, _ := json.Marshal(expr) // a JSON string is a YAML one
		n++
		fmt.Fprintf(&rules, "      - record: dashboard:query%d\n        expr: %s\n        labels: { where: %q }\n", n, q, where)
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			add("panel "+p.Title, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(SELECTOR, LABEL)", v.Name, v.Definition)
			continue
		}
		add("variable "+v.Name, m[1])
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "dashboard-rules.yml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, dir, "", "check", "rules", file)
}

// The dashboard has a variable instance (the gateways, several or All),
// and every ispmux series each panel and each other variable reads is
// filtered by it: with several gateways, the panels show the ones picked,
// not every box summed.
func TestGrafanaInstanceVariable(t *testing.T) {
	d := readDashboard(t)
	found := false
	for _, v := range d.Templating.List {
		if v.Name != "instance" {
			continue
		}
		found = true
		if v.Type != "query" || !v.Multi || !v.IncludeAll || v.AllValue != ".*" || !strings.HasPrefix(v.Definition, "label_values(ispmux_") ||
			!strings.HasSuffix(v.Definition, ", instance)") {
			t.Errorf("variable instance: %+v: want label_values(ispmux_..., instance), multi, include All (.*)", v)
		}
	}
	if !found {
		t.Error("no variable instance")
	}
	selector := regexp.MustCompile(`\bispmux_[a-z0-9_]+(\{[^}]*\})?`)
	check := func(where, expr string) {
		t.Helper()
		for _, m := range selector.FindAllStringSubmatch(expr, -1) {
			if !strings.Contains(m[1], `instance=~"$instance"`) {
				t.Errorf("%s: %s is not filtered by instance=~\"$instance\"", where, m[0])
			}
		}
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			check("panel "+p.Title, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" && v.Name != "instance" {
			check("variable "+v.Name, v.Definition)
		}
	}
}
