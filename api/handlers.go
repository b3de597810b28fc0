package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ispmux/ispmux/tenants"
)

// writeJSON answers v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// list is the answer of every list: the items and the next page's cursor.
type list[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

func pageOf[T any](p tenants.Page[T]) list[T] {
	if p.Items == nil {
		p.Items = []T{}
	}
	return list[T]{Items: p.Items, Next: p.Next}
}

// decodeBody reads a JSON object of at most Limits.MaxBody bytes into v,
// refusing unknown fields and trailing data. It answers the problem
// itself and returns false on failure. An empty body is allowed when
// emptyOK (v keeps its zero value).
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && mt != "application/merge-patch+json") {
			s.problem(w, r, "unsupported-media", fmt.Sprintf("send application/json, not %q", ct))
			return false
		}
		if msg := charsetProblem(params); msg != "" {
			s.problem(w, r, "unsupported-media", msg)
			return false
		}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.Limits.MaxBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		s.problem(w, r, "too-large", fmt.Sprintf("request body over %d bytes", mbe.Limit))
		return false
	case err != nil:
		s.problem(w, r, "bad-request", "reading the body: "+oneLine(err.Error()))
		return false
	case !utf8.Valid(raw):
		// encoding/json would replace the bytes with U+FFFD and store
		// an ID the caller never sent (and two such IDs could collide).
		s.problem(w, r, "bad-request", "the body is not valid UTF-8 (JSON text is UTF-8)")
		return false
	case bytes.HasPrefix(bytes.TrimLeft(raw, " \t\r\n"), utf8BOM):
		s.problem(w, r, "bad-request", bomText("the body", "send the JSON object without it"))
		return false
	case string(bytes.TrimSpace(raw)) == "null":
		s.problem(w, r, "bad-request", "the body is JSON null: send a JSON object")
		return false
	}
	if err := checkKeys(raw, v); err != nil {
		s.problem(w, r, "bad-request", err.Error())
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		// One object and nothing after it.
		var extra json.RawMessage
		if err2 := dec.Decode(&extra); err2 != io.EOF {
			if err2 == nil {
				err = errors.New("trailing data after the JSON object")
			} else {
				err = err2
			}
		}
	} else if err == io.EOF && emptyOK {
		return true
	}
	if err == nil {
		return true
	}
	if err == io.EOF {
		s.problem(w, r, "bad-request", "empty body: send a JSON object")
	} else {
		s.problem(w, r, "bad-request", jsonErrorText(err, "the body"))
	}
	return false
}

// charsetProblem says why a body declared in params' charset is refused,
// or "" when it is not: JSON text is UTF-8 (RFC 8259 §8.1), so a charset
// parameter other than UTF-8 (utf-8 in any case, or its common misspelling
// utf8) names bytes the server would misread. Absent is UTF-8. US-ASCII
// (us-ascii, ascii) is taken too: ASCII text is UTF-8 as it stands, and a
// byte above 0x7F in it is judged as UTF-8 like any body's.
func charsetProblem(params map[string]string) string {
	cs, ok := params["charset"]
	if !ok {
		return ""
	}
	for _, utf := range []string{"utf-8", "utf8", "us-ascii", "ascii"} {
		if strings.EqualFold(cs, utf) {
			return ""
		}
	}
	return fmt.Sprintf("charset %q: JSON text is UTF-8 (RFC 8259 §8.1); send the body as UTF-8, with charset=utf-8 or no charset", cs)
}

// jsonErrorText says what is wrong with a JSON value encoding/json
// refused (what is the value's name, "the body" or "the line", for a type
// error at its top), in the API's words rather than Go's (no Go type
// names, no "json: " prefix).
func jsonErrorText(err error, what string) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = what
		}
		return fmt.Sprintf("%s: expected %s, got JSON %s", field, jsonKind(te.Type), te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ") + " (unknown fields are refused)"
	}
	return oneLine(err.Error())
}

// failQuery answers a list's error: a query parameter the model refuses
// (a cursor that is not one, a MAC that is not one) is the caller's
// malformed request, 400 bad-request as docs/API.md says; other errors
// as fail.
func (s *Server) failQuery(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, tenants.ErrInvalid) {
		s.problem(w, r, "bad-request", oneLine(err.Error()))
		return
	}
	s.fail(w, r, err)
}

// jsonKind names the JSON a Go type decodes from, for a type error: "a
// JSON object", not the model's type name.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a JSON object"
	case reflect.Slice, reflect.Array:
		return "a JSON array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return t.String()
}

func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}

// listOptions reads ?after= and ?limit=.
func (s *Server) listOptions(w http.ResponseWriter, r *http.Request) (tenants.ListOptions, bool) {
	q := r.URL.Query()
	o := tenants.ListOptions{After: q.Get("after")}
	if len(o.After) > 1024 {
		s.problem(w, r, "bad-request", "after: cursor too long")
		return o, false
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > tenants.MaxLimit {
			s.problem(w, r, "bad-request", fmt.Sprintf("limit must be 1..%d, got %q", tenants.MaxLimit, l))
			return o, false
		}
		o.Limit = n
	}
	return o, true
}

// pathMAC reads the {mac} wildcard as a canonical MAC (lower case, colons).
func (s *Server) pathMAC(w http.ResponseWriter, r *http.Request) (string, bool) {
	m, err := net.ParseMAC(r.PathValue("mac"))
	if err != nil || len(m) != 6 {
		s.problem(w, r, "bad-request", fmt.Sprintf("not a MAC address: %q", r.PathValue("mac")))
		return "", false
	}
	return m.String(), true
}

func (s *Server) listISPs(w http.ResponseWriter, r *http.Request, c *call) {
	all, err := s.svc.ISPs(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []tenants.ISPInfo{}
	for _, i := range all {
		if c.isp == "" || i.Name == c.isp {
			out = append(out, i)
		}
	}
	writeJSON(w, http.StatusOK, list[tenants.ISPInfo]{Items: out})
}

func (s *Server) getISP(w http.ResponseWriter, r *http.Request, c *call) {
	all, err := s.svc.ISPs(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, i := range all {
		if i.Name == c.isp {
			writeJSON(w, http.StatusOK, i)
			return
		}
	}
	s.problem(w, r, "not-found", "not found")
}

// purgeISP serves DELETE /v1/isps/{isp}: an ISP the configuration no
// longer has, its customers and devices removed (tenants.PurgeISP).
func (s *Server) purgeISP(w http.ResponseWriter, r *http.Request, c *call) {
	res, err := s.svc.PurgeISP(r.Context(), c.actor, r.PathValue("isp"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) listCustomers(w http.ResponseWriter, r *http.Request, c *call) {
	o, ok := s.listOptions(w, r)
	if !ok {
		return
	}
	p, err := s.svc.Customers(r.Context(), c.isp, o)
	if err != nil {
		s.failQuery(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, pageOf(p))
}

func customerPath(isp, id string) string {
	return "/v1/isps/" + url.PathEscape(isp) + "/customers/" + url.PathEscape(id)
}

func (s *Server) createCustomer(w http.ResponseWriter, r *http.Request, c *call) {
	var in tenants.CustomerInput
	if !s.decodeBody(w, r, &in, false) {
		return
	}
	cu, err := s.svc.CreateCustomer(r.Context(), c.actor, c.isp, in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", customerPath(cu.ISP, cu.ID))
	writeJSON(w, http.StatusCreated, cu)
}

func (s *Server) getCustomer(w http.ResponseWriter, r *http.Request, c *call) {
	cu, err := s.svc.Customer(r.Context(), c.isp, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, cu)
}

func (s *Server) updateCustomer(w http.ResponseWriter, r *http.Request, c *call) {
	var p tenants.CustomerPatch
	if !s.decodeBody(w, r, &p, false) {
		return
	}
	cu, err := s.svc.UpdateCustomer(r.Context(), c.actor, c.isp, r.PathValue("id"), p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, cu)
}

func (s *Server) deleteCustomer(w http.ResponseWriter, r *http.Request, c *call) {
	if err := s.svc.DeleteCustomer(r.Context(), c.actor, c.isp, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listDevices serves /v1/isps/{isp}/devices (c.isp set) and /v1/devices
// (operator, every ISP); ?customer_id= narrows to one customer.
func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, c *call) {
	o, ok := s.listOptions(w, r)
	if !ok {
		return
	}
	p, err := s.svc.Devices(r.Context(), c.isp, r.URL.Query().Get("customer_id"), o)
	if err != nil {
		s.failQuery(w, r, err)
		return
	}
	if c.isp != "" { // the Service scopes; never show another ISP's device anyway
		p.Items = keep(p.Items, func(d tenants.Device) bool { return d.ISP == c.isp })
	}
	writeJSON(w, http.StatusOK, pageOf(p))
}

func keep[T any](items []T, ok func(T) bool) []T {
	out := items[:0]
	for _, it := range items {
		if ok(it) {
			out = append(out, it)
		}
	}
	return out
}

func (s *Server) attachDevice(w http.ResponseWriter, r *http.Request, c *call) {
	var in tenants.DeviceInput
	if !s.decodeBody(w, r, &in, false) {
		return
	}
	d, err := s.svc.AttachDevice(r.Context(), c.actor, c.isp, in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/isps/"+url.PathEscape(c.isp)+"/devices/"+url.PathEscape(d.MAC))
	if d.Unchanged {
		// Attached to that customer already: nothing created (a trial's
		// retried attaches all answered 201).
		writeJSON(w, http.StatusOK, d)
		return
	}
	writeJSON(w, http.StatusCreated, d)
}

// getDevice serves /v1/isps/{isp}/devices/{mac} and /v1/devices/{mac}.
func (s *Server) getDevice(w http.ResponseWriter, r *http.Request, c *call) {
	mac, ok := s.pathMAC(w, r)
	if !ok {
		return
	}
	d, err := s.svc.Device(r.Context(), c.isp, mac)
	if err == nil && c.isp != "" && d.ISP != c.isp {
		err = tenants.ErrNotFound
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// updateDevice serves PATCH /v1/isps/{isp}/devices/{mac} and
// /v1/devices/{mac} (operator, any ISP): the device's access pin.
func (s *Server) updateDevice(w http.ResponseWriter, r *http.Request, c *call) {
	mac, ok := s.pathMAC(w, r)
	if !ok {
		return
	}
	var p tenants.DevicePatch
	if !s.decodeBody(w, r, &p, false) {
		return
	}
	d, err := s.svc.UpdateDevice(r.Context(), c.actor, c.isp, mac, p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) detachDevice(w http.ResponseWriter, r *http.Request, c *call) {
	mac, ok := s.pathMAC(w, r)
	if !ok {
		return
	}
	if err := s.svc.DetachDevice(r.Context(), c.actor, c.isp, mac); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) claim(w http.ResponseWriter, r *http.Request, c *call) {
	var in tenants.ClaimRequest
	if !s.decodeBody(w, r, &in, false) {
		return
	}
	d, err := s.svc.Claim(r.Context(), c.actor, in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) setBlock(w http.ResponseWriter, r *http.Request, c *call, blocked bool) {
	mac, ok := s.pathMAC(w, r)
	if !ok {
		return
	}
	var none struct{}
	if !s.decodeBody(w, r, &none, true) {
		return
	}
	d, err := s.svc.Block(r.Context(), c.actor, mac, blocked)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) block(w http.ResponseWriter, r *http.Request, c *call) { s.setBlock(w, r, c, true) }

func (s *Server) unblock(w http.ResponseWriter, r *http.Request, c *call) {
	s.setBlock(w, r, c, false)
}

func (s *Server) move(w http.ResponseWriter, r *http.Request, c *call) {
	mac, ok := s.pathMAC(w, r)
	if !ok {
		return
	}
	var in tenants.MoveRequest
	if !s.decodeBody(w, r, &in, false) {
		return
	}
	d, err := s.svc.Move(r.Context(), c.actor, mac, in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) listBindings(w http.ResponseWriter, r *http.Request, c *call) {
	o, ok := s.listOptions(w, r)
	if !ok {
		return
	}
	if mac := r.URL.Query().Get("mac"); mac != "" {
		// One MAC's bindings (one lookup per circuit): one page.
		if o.After != "" {
			s.problem(w, r, "bad-request", "after does not go with mac: one MAC's bindings are one page")
			return
		}
		bs, err := s.svc.BindingsOf(r.Context(), c.isp, mac)
		if err != nil {
			s.failQuery(w, r, err)
			return
		}
		if c.isp != "" {
			bs = keep(bs, func(b tenants.Binding) bool { return b.ISP == c.isp })
		}
		writeJSON(w, http.StatusOK, pageOf(tenants.Page[tenants.Binding]{Items: bs}))
		return
	}
	p, err := s.svc.Bindings(r.Context(), c.isp, o)
	if err != nil {
		s.failQuery(w, r, err)
		return
	}
	if c.isp != "" {
		p.Items = keep(p.Items, func(b tenants.Binding) bool { return b.ISP == c.isp })
	}
	writeJSON(w, http.StatusOK, pageOf(p))
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request, c *call) {
	st, err := s.svc.Stats(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}
