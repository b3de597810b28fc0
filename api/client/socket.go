package client

import (
	"context"
	"errors"
	"fmt"
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
				conn, err := d.DialContext(ctx, "unix", path)
				if err != nil {
					return nil, &dialError{fmt.Errorf("control socket %s: %w (is ispmux running?)", path, err)}
				}
				return conn, nil
			},
			MaxIdleConns:    4,
			IdleConnTimeout: 30 * time.Second,
		}, CheckRedirect: noRedirect}
	}
	return c, nil
}

// dialError is a control socket that could not be reached: the client's
// calls return it as it is, not inside the HTTP request's error (which
// named a URL the caller never gave, "http://ispmux/…").
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// plainDialError returns err's dialError if it has one, else err.
func plainDialError(err error) error {
	var de *dialError
	if errors.As(err, &de) {
		return de
	}
	return err
}
