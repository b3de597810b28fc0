// Package client is a Go client of the ispmux management API (package
// api, docs/API.md): one typed method per endpoint, problem details turned
// into *Error (errors.Is matches the tenants errors), and Follow for the
// Server-Sent Events streams, resuming without gap after a disconnect. It
// is what `ispmux ctl` uses to talk to a box over the network.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ispmux/ispmux/tenants"
)

// Options configure a Client.
type Options struct {
	// CAFile is a PEM file of the CA (or the self-signed certificate)
	// the server's certificate must chain to; empty: the system roots.
	CAFile string
	// InsecureSkipVerify skips certificate checks: refused unless the
	// base URL's host is a loopback address (or localhost).
	InsecureSkipVerify bool
	// AllowHTTP allows an http:// base URL to a non-loopback host (the
	// token then crosses the network in clear text).
	AllowHTTP bool
	// Timeout bounds each call except Follow and Import (default 30 s).
	Timeout time.Duration
	// HTTPClient, if set, is used as it is (the TLS options are ignored,
	// and it follows redirects as it is set to: the client New makes
	// follows none).
	HTTPClient *http.Client
}

// Client calls one API with one token. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	token   string
	hc      *http.Client
	timeout time.Duration
}

// New returns a client of the API at baseURL (e.g. "https://192.0.2.9:8443").
func New(baseURL, token string, o Options) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("api client: base URL must be https://host:port (or http://host:port on a loopback address), got %q", baseURL)
	}
	if token == "" {
		return nil, errors.New("api client: no token")
	}
	loopback := isLoopback(u.Hostname())
	if u.Scheme == "http" && !loopback && !o.AllowHTTP {
		return nil, fmt.Errorf("api client: %s is not loopback: use https (the token would cross the network in clear text)", u.Host)
	}
	if o.InsecureSkipVerify && !loopback {
		return nil, fmt.Errorf("api client: skipping certificate checks is for loopback only, not %s", u.Host)
	}
	c := &Client{base: u, token: token, hc: o.HTTPClient, timeout: o.Timeout}
	if c.timeout == 0 {
		c.timeout = 30 * time.Second
	}
	if c.hc == nil {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.InsecureSkipVerify}
		if o.CAFile != "" {
			pem, err := os.ReadFile(o.CAFile)
			if err != nil {
				return nil, fmt.Errorf("api client: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("api client: no certificate in %s", o.CAFile)
			}
			tc.RootCAs = pool
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		tr.Proxy = nil
		c.hc = &http.Client{Transport: tr, CheckRedirect: noRedirect}
	}
	return c, nil
}

// noRedirect is the client's CheckRedirect: a redirect is answered as an
// error, not followed. The API never redirects (a path not in canonical
// form is a 404 problem), so a redirect comes from something else that
// answers for it, and net/http would follow it with the bearer token to
// any port of the same host (from https to http too).
func noRedirect(req *http.Request, via []*http.Request) error {
	return fmt.Errorf("api client: the server answered %s with a redirect to %s: not followed (the API never redirects; is --api the API's address?)",
		via[0].URL.Redacted(), req.URL.Redacted())
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// Error is a problem (RFC 9457) the API answered.
type Error struct {
	Status     int
	Type       string // urn:ispmux:problem:<slug>
	Title      string
	Detail     string
	RequestID  string
	RetryAfter time.Duration // rate-limited
	Limit      int           // device-limit
	Devices    []string      // device-limit: the customer's devices
}

func (e *Error) Error() string {
	msg := e.Detail
	if msg == "" {
		msg = e.Title
	}
	if e.RequestID != "" {
		return fmt.Sprintf("%d %s: %s (request %s)", e.Status, e.Slug(), msg, e.RequestID)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Slug(), msg)
}

// Slug is the problem type without its urn:ispmux:problem: prefix.
func (e *Error) Slug() string { return strings.TrimPrefix(e.Type, "urn:ispmux:problem:") }

// Is maps problem types to the tenants errors: errors.Is(err,
// tenants.ErrNotFound) and so on.
func (e *Error) Is(target error) bool {
	switch e.Slug() {
	case "not-found":
		return target == tenants.ErrNotFound
	case "conflict":
		return target == tenants.ErrConflict
	case "device-limit":
		return target == tenants.ErrDeviceLimit || target == tenants.ErrConflict
	case "device-unavailable":
		return target == tenants.ErrDeviceTaken || target == tenants.ErrConflict
	case "device-blocked":
		return target == tenants.ErrBlocked || target == tenants.ErrConflict
	case "invalid":
		return target == tenants.ErrInvalid
	case "forbidden":
		return target == tenants.ErrForbidden
	case "bad-credentials":
		return target == tenants.ErrBadCredentials
	case "rate-limited":
		return target == tenants.ErrRateLimited
	}
	return false
}

type reqIDKey struct{}

// WithRequestID makes the calls made with ctx send id as X-Request-Id
// (1..64 characters of [A-Za-z0-9._:-]; the server makes one otherwise).
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, reqIDKey{}, id)
}

// newRequest builds a request for path, whose wildcard segments are
// already escaped (seg).
func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body io.Reader, ctype string) (*http.Request, error) {
	// A "." or ".." segment (an ID given as such) would be cleaned away by
	// the server's mux and redirected to another resource, whose answer
	// would be decoded as the one asked for.
	for _, s := range strings.Split(path, "/") {
		if s == "." || s == ".." {
			return nil, fmt.Errorf("api client: %q names no ISP, customer or device (a dot-segment cannot be named in a URL path)", s)
		}
	}
	u := *c.base
	u.RawPath = c.base.EscapedPath() + path
	p, err := url.PathUnescape(u.RawPath)
	if err != nil {
		return nil, err
	}
	u.Path = p
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if c.token != "" { // none on the control socket (NewSocket)
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if id, ok := ctx.Value(reqIDKey{}).(string); ok && id != "" {
		req.Header.Set("X-Request-Id", id)
	}
	return req, nil
}

// seg escapes one path segment.
func seg(s string) string { return url.PathEscape(s) }

// do sends a JSON request and decodes a JSON answer into out (nil: none).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	req, err := c.newRequest(ctx, method, path, q, body, ctype)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return plainDialError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return readProblem(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("api client: %s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

func readProblem(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	e := &Error{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id")}
	var p struct {
		Type       string   `json:"type"`
		Title      string   `json:"title"`
		Detail     string   `json:"detail"`
		RequestID  string   `json:"request_id"`
		RetryAfter int      `json:"retry_after"`
		Limit      int      `json:"limit"`
		Devices    []string `json:"devices"`
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") && json.Unmarshal(data, &p) == nil {
		e.Type, e.Title, e.Detail, e.Limit, e.Devices = p.Type, p.Title, p.Detail, p.Limit, p.Devices
		if p.RequestID != "" {
			e.RequestID = p.RequestID
		}
		e.RetryAfter = time.Duration(p.RetryAfter) * time.Second
	} else {
		e.Title = resp.Status
		e.Detail = strings.TrimSpace(string(data))
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && e.RetryAfter == 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

func listQuery(o tenants.ListOptions) url.Values {
	q := url.Values{}
	if o.After != "" {
		q.Set("after", o.After)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	return q
}

func ispPath(isp string) string { return "/v1/isps/" + seg(isp) }

// ISPs lists the ISPs with their counts (an ISP token: its own only).
func (c *Client) ISPs(ctx context.Context) ([]tenants.ISPInfo, error) {
	var out tenants.Page[tenants.ISPInfo]
	err := c.do(ctx, "GET", "/v1/isps", nil, nil, &out)
	return out.Items, err
}

// ISP returns one ISP with its counts.
func (c *Client) ISP(ctx context.Context, isp string) (tenants.ISPInfo, error) {
	var out tenants.ISPInfo
	err := c.do(ctx, "GET", ispPath(isp), nil, nil, &out)
	return out, err
}

// Customers lists one page of an ISP's customers.
func (c *Client) Customers(ctx context.Context, isp string, o tenants.ListOptions) (tenants.Page[tenants.Customer], error) {
	var out tenants.Page[tenants.Customer]
	err := c.do(ctx, "GET", ispPath(isp)+"/customers", listQuery(o), nil, &out)
	return out, err
}

// CreateCustomer creates a customer.
func (c *Client) CreateCustomer(ctx context.Context, isp string, in tenants.CustomerInput) (tenants.Customer, error) {
	var out tenants.Customer
	err := c.do(ctx, "POST", ispPath(isp)+"/customers", nil, in, &out)
	return out, err
}

// Customer returns one customer.
func (c *Client) Customer(ctx context.Context, isp, id string) (tenants.Customer, error) {
	var out tenants.Customer
	err := c.do(ctx, "GET", ispPath(isp)+"/customers/"+seg(id), nil, nil, &out)
	return out, err
}

// UpdateCustomer changes a customer.
func (c *Client) UpdateCustomer(ctx context.Context, isp, id string, p tenants.CustomerPatch) (tenants.Customer, error) {
	var out tenants.Customer
	err := c.do(ctx, "PATCH", ispPath(isp)+"/customers/"+seg(id), nil, p, &out)
	return out, err
}

// DeleteCustomer deletes a customer.
func (c *Client) DeleteCustomer(ctx context.Context, isp, id string) error {
	return c.do(ctx, "DELETE", ispPath(isp)+"/customers/"+seg(id), nil, nil, nil)
}

// Import sends NDJSON customers (one CustomerInput per line) from r and
// calls fn with each line's result as it arrives. It has no timeout of
// its own: ctx bounds it.
func (c *Client) Import(ctx context.Context, isp string, r io.Reader, fn func(tenants.ImportResult) error) error {
	return importNDJSON(c, ctx, ispPath(isp)+"/customers:import", r, fn)
}

// ImportDevices sends NDJSON devices (one DeviceInput per line) from r
// and calls fn with each line's result as it arrives. It has no timeout
// of its own: ctx bounds it.
func (c *Client) ImportDevices(ctx context.Context, isp string, r io.Reader, fn func(tenants.DeviceImportResult) error) error {
	return importNDJSON(c, ctx, ispPath(isp)+"/devices:import", r, fn)
}

// importNDJSON posts the NDJSON body r to path and calls fn with each
// result line of the answer, decoded as Res.
func importNDJSON[Res any](c *Client, ctx context.Context, path string, r io.Reader, fn func(Res) error) error {
	req, err := c.newRequest(ctx, "POST", path, nil, r, "application/x-ndjson")
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return plainDialError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return readProblem(resp)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var res Res
		if err := dec.Decode(&res); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("api client: import answer: %w", err)
		}
		if err := fn(res); err != nil {
			return err
		}
	}
}

// Devices lists one page of devices: of isp ("" = every ISP, operator),
// of one customer if customerID is set.
func (c *Client) Devices(ctx context.Context, isp, customerID string, o tenants.ListOptions) (tenants.Page[tenants.Device], error) {
	var out tenants.Page[tenants.Device]
	q := listQuery(o)
	if customerID != "" {
		q.Set("customer_id", customerID)
	}
	path := "/v1/devices"
	if isp != "" {
		path = ispPath(isp) + "/devices"
	}
	err := c.do(ctx, "GET", path, q, nil, &out)
	return out, err
}

// Device returns one device (isp "" = of any ISP, operator).
func (c *Client) Device(ctx context.Context, isp, mac string) (tenants.Device, error) {
	var out tenants.Device
	path := "/v1/devices/" + seg(mac)
	if isp != "" {
		path = ispPath(isp) + "/devices/" + seg(mac)
	}
	err := c.do(ctx, "GET", path, nil, nil, &out)
	return out, err
}

// AttachDevice attaches a MAC to one of isp's customers.
func (c *Client) AttachDevice(ctx context.Context, isp string, in tenants.DeviceInput) (tenants.Device, error) {
	var out tenants.Device
	err := c.do(ctx, "POST", ispPath(isp)+"/devices", nil, in, &out)
	return out, err
}

// UpdateDevice changes a device's access pin (isp "" = of any ISP,
// operator).
func (c *Client) UpdateDevice(ctx context.Context, isp, mac string, p tenants.DevicePatch) (tenants.Device, error) {
	var out tenants.Device
	path := "/v1/devices/" + seg(mac)
	if isp != "" {
		path = ispPath(isp) + "/devices/" + seg(mac)
	}
	err := c.do(ctx, "PATCH", path, nil, p, &out)
	return out, err
}

// DetachDevice detaches one of isp's devices.
func (c *Client) DetachDevice(ctx context.Context, isp, mac string) error {
	return c.do(ctx, "DELETE", ispPath(isp)+"/devices/"+seg(mac), nil, nil, nil)
}

// Claim attaches a MAC with a customer's credentials.
func (c *Client) Claim(ctx context.Context, r tenants.ClaimRequest) (tenants.Device, error) {
	var out tenants.Device
	err := c.do(ctx, "POST", "/v1/claims", nil, r, &out)
	return out, err
}

// Block blocks a MAC (operator).
func (c *Client) Block(ctx context.Context, mac string) (tenants.Device, error) {
	var out tenants.Device
	err := c.do(ctx, "POST", "/v1/devices/"+seg(mac)+"/block", nil, nil, &out)
	return out, err
}

// PurgeISP removes every customer and device of isp, an ISP the
// configuration no longer has (operator).
func (c *Client) PurgeISP(ctx context.Context, isp string) (tenants.PurgeResult, error) {
	var out tenants.PurgeResult
	err := c.do(ctx, "DELETE", ispPath(isp), nil, nil, &out)
	return out, err
}

// Unblock unblocks a MAC (operator).
func (c *Client) Unblock(ctx context.Context, mac string) (tenants.Device, error) {
	var out tenants.Device
	err := c.do(ctx, "POST", "/v1/devices/"+seg(mac)+"/unblock", nil, nil, &out)
	return out, err
}

// Move moves a device to another customer, of any ISP (operator).
func (c *Client) Move(ctx context.Context, mac string, to tenants.MoveRequest) (tenants.Device, error) {
	var out tenants.Device
	err := c.do(ctx, "POST", "/v1/devices/"+seg(mac)+"/move", nil, to, &out)
	return out, err
}

// Bindings lists one page of DHCP bindings (isp "" = all, operator).
func (c *Client) Bindings(ctx context.Context, isp string, o tenants.ListOptions) (tenants.Page[tenants.Binding], error) {
	var out tenants.Page[tenants.Binding]
	path := "/v1/bindings"
	if isp != "" {
		path = ispPath(isp) + "/bindings"
	}
	err := c.do(ctx, "GET", path, listQuery(o), nil, &out)
	return out, err
}

// BindingsOf returns mac's DHCP bindings (isp "" = of any ISP, operator):
// GET …/bindings?mac=, one lookup per access circuit, no paging.
func (c *Client) BindingsOf(ctx context.Context, isp, mac string) ([]tenants.Binding, error) {
	var out tenants.Page[tenants.Binding]
	path := "/v1/bindings"
	if isp != "" {
		path = ispPath(isp) + "/bindings"
	}
	err := c.do(ctx, "GET", path, url.Values{"mac": {mac}}, nil, &out)
	return out.Items, err
}

// Stats returns the box's counts (operator).
func (c *Client) Stats(ctx context.Context) (tenants.Stats, error) {
	var out tenants.Stats
	err := c.do(ctx, "GET", "/v1/stats", nil, nil, &out)
	return out, err
}
