package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/webhooks"
)

// TestWebhookStatus: an ISP reads its own webhook delivery state; an ISP
// without a webhook, and a server without the function, answer 404.
func TestWebhookStatus(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	f.srv.SetWebhookStatus(func(isp string) (webhooks.Status, bool) {
		if isp != "alpha" {
			return webhooks.Status{}, false
		}
		return webhooks.Status{ISP: "alpha", URL: "https://hooks.alpha.example/x", Cursor: 41, Lag: 2, Attempts: 3,
			LastError: "POST https://hooks.alpha.example/x: HTTP 503: busy", LastErrorTime: at, Delivered: 40, Failures: 3}, true
	})
	w := f.do("GET", "/v1/isps/alpha/webhook", "alpha", "")
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	var got map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got["isp"] != "alpha" || got["cursor"] != 41.0 || got["lag"] != 2.0 || got["attempts"] != 3.0 || got["delivered_total"] != 40.0 ||
		got["failures_total"] != 3.0 || got["last_error_time"] != "2026-06-01T12:00:00Z" || !strings.Contains(got["last_error"].(string), "503") {
		t.Errorf("alpha's webhook: %s", w.Body)
	}
	if _, ok := got["last_success"]; ok {
		t.Errorf("a zero last_success is shown: %s", w.Body)
	}
	if p := decodeProblem(t, f.do("GET", "/v1/isps/beta/webhook", "beta", "")); p.Status != 404 || !strings.Contains(p.Detail, "webhook_url") {
		t.Errorf("beta without a webhook: %+v", p)
	}
	if p := decodeProblem(t, f.do("GET", "/v1/isps/alpha/webhook", "beta", "")); p.Status != 404 || strings.Contains(p.Detail, "webhook") {
		t.Errorf("beta on alpha's webhook: %+v", p)
	}
	f.srv.SetWebhookStatus(nil)
	if p := decodeProblem(t, f.do("GET", "/v1/isps/alpha/webhook", "operator", "")); p.Status != 404 {
		t.Errorf("no webhooks at all: %+v", p)
	}
}
