package api

import (
	"net/http"

	"github.com/ispmux/ispmux/webhooks"
)

// WebhookStatusFunc returns an ISP's webhook delivery state, false when
// the ISP has no webhook (webhooks.Manager.StatusOf).
type WebhookStatusFunc func(isp string) (webhooks.Status, bool)

// SetWebhookStatus gives GET /v1/isps/{isp}/webhook its data. Without it
// (or for an ISP without a webhook_url) the route answers 404 not-found.
// Safe to call at any time.
func (s *Server) SetWebhookStatus(f WebhookStatusFunc) {
	if f == nil {
		s.webhookStatus.Store(nil)
		return
	}
	s.webhookStatus.Store(&f)
}

// getWebhook answers the ISP's own webhook delivery state.
func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request, c *call) {
	if f := s.webhookStatus.Load(); f != nil {
		if st, ok := (*f)(c.isp); ok {
			writeJSON(w, http.StatusOK, st)
			return
		}
	}
	s.problem(w, r, "not-found", "no webhook is configured for this ISP (webhook_url in its [[isp]] entry)")
}
