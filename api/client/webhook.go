package client

import (
	"context"

	"github.com/ispmux/ispmux/webhooks"
)

// Webhook returns isp's webhook delivery state (GET
// /v1/isps/{isp}/webhook); an ISP without a webhook is tenants.ErrNotFound.
func (c *Client) Webhook(ctx context.Context, isp string) (webhooks.Status, error) {
	var out webhooks.Status
	err := c.do(ctx, "GET", ispPath(isp)+"/webhook", nil, nil, &out)
	return out, err
}
