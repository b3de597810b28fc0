package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The Grafana dashboard in contrib/ is valid JSON, and every query names
// only metrics the collector exports.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("../contrib/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
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
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("contrib/grafana-dashboard.json: %v", err)
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
