package client

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"time"
)

// NewSocket returns a client of the API the appliance serves on its
// control socket (a unix socket, state_dir/ispmux.sock): every call there
// acts as the operator, without a token (the socket is root's only).
func NewSocket(path string, o Options) (*Client, error) {
	c := &Client{base: &url.URL{Scheme: "http", Host: "ispmux"}, hc: o.HTTPClient, timeout: o.Timeout}
	if c.timeout == 0 {
		c.timeout = 30 * time.Second
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
			MaxIdleConns:    4,
			IdleConnTimeout: 30 * time.Second,
		}}
	}
	return c, nil
}
