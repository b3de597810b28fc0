package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
	"github.com/ispmux/ispmux/webhooks"
)

// openAPIOperations reads the (method, path) pairs of an OpenAPI document's
// paths section: a path is a key indented two spaces under "paths:", an
// operation a key indented four spaces under it (get, post, …). It is a
// parser of the block style docs/openapi.yaml is written in, not of YAML.
func openAPIOperations(data []byte) (map[string]bool, error) {
	ops := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	inPaths, sawVersion := false, false
	path := ""
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if strings.HasPrefix(line, "\t") {
			return nil, fmt.Errorf("line %d: a tab in indentation", n)
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		if indent == 0 {
			if strings.HasPrefix(line, "openapi: 3.") {
				sawVersion = true
			}
			inPaths = strings.TrimSpace(line) == "paths:"
			path = ""
			continue
		}
		if !inPaths {
			continue
		}
		key, _, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok {
			key = strings.TrimSuffix(strings.TrimSpace(line), ":")
		}
		key = strings.Trim(key, `"'`)
		switch indent {
		case 2:
			if !strings.HasPrefix(key, "/") {
				return nil, fmt.Errorf("line %d: path %q does not start with /", n, key)
			}
			path = key
		case 4:
			switch key {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				if path == "" {
					return nil, fmt.Errorf("line %d: operation outside a path", n)
				}
				op := strings.ToUpper(key) + " " + path
				if ops[op] {
					return nil, fmt.Errorf("line %d: %s twice", n, op)
				}
				ops[op] = true
			case "parameters", "summary", "description", "servers":
			default:
				return nil, fmt.Errorf("line %d: unexpected key %q under a path", n, key)
			}
		}
	}
	if !sawVersion {
		return nil, fmt.Errorf("no openapi: 3.x line")
	}
	if len(ops) == 0 {
		return nil, fmt.Errorf("no operations under paths:")
	}
	return ops, sc.Err()
}

// openAPIQueryParams reads the query parameters of each operation of an
// OpenAPI document in docs/openapi.yaml's block style: an operation's
// "parameters:" list (indent 6) of inline "- name: X" with "in: query" or
// "- $ref: …/parameters/Y" resolved in components.parameters.
func openAPIQueryParams(data []byte) map[string][]string {
	type param struct{ name, in string }
	comp := map[string]*param{} // components.parameters by key
	type use struct{ op, ref string }
	var uses []use
	var inline []*struct {
		op string
		p  param
	}
	section, sub, path, op, compKey := "", "", "", "", ""
	var cur *param
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		key, val, _ := strings.Cut(strings.TrimPrefix(t, "- "), ":")
		key, val = strings.Trim(key, `"'`), strings.Trim(strings.TrimSpace(val), `"'`)
		switch {
		case indent == 0:
			section = key
		case section == "paths" && indent == 2:
			path, op = key, ""
		case section == "paths" && indent == 4:
			op = ""
			if key != "parameters" && key != "summary" && key != "description" {
				op = strings.ToUpper(key) + " " + path
			}
		case section == "paths" && indent == 6:
			sub = key
		case section == "paths" && op != "" && sub == "parameters" && indent == 8 && strings.HasPrefix(t, "- "):
			cur = nil
			if key == "$ref" {
				uses = append(uses, use{op, strings.TrimPrefix(val, "#/components/parameters/")})
			} else if key == "name" {
				e := &struct {
					op string
					p  param
				}{op: op, p: param{name: val}}
				inline = append(inline, e)
				cur = &e.p
			}
		case section == "paths" && cur != nil && indent == 10 && key == "in":
			cur.in = val
		case section == "components" && indent == 2:
			sub = key
		case section == "components" && sub == "parameters" && indent == 4:
			compKey = key
			comp[key] = &param{}
		case section == "components" && sub == "parameters" && indent == 6 && key == "name":
			comp[compKey].name = val
		case section == "components" && sub == "parameters" && indent == 6 && key == "in":
			comp[compKey].in = val
		}
	}
	out := map[string][]string{}
	for _, e := range inline {
		if e.p.in == "query" {
			out[e.op] = append(out[e.op], e.p.name)
		}
	}
	for _, u := range uses {
		if p := comp[u.ref]; p != nil && p.in == "query" {
			out[u.op] = append(out[u.op], p.name)
		}
	}
	return out
}

// openAPITools returns the node binary and the node_modules directory
// api/testdata/openapi/install.sh installs the checker's packages in
// ($ISPMUX_OPENAPI_TOOLS, by default the user's cache directory), or fails
// the test saying how to install them.
func openAPITools(t *testing.T) (node, modules string) {
	t.Helper()
	const how = "install them: apt-get install nodejs npm (if missing), then sh api/testdata/openapi/install.sh (make tools runs it; .ci/run does both)"
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: the OpenAPI checks run under node; %s", how)
	}
	dir := os.Getenv("ISPMUX_OPENAPI_TOOLS")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			t.Fatalf("no cache directory (%v): set ISPMUX_OPENAPI_TOOLS; %s", err, how)
		}
		dir = filepath.Join(cache, "ispmux", "openapi-tools")
	}
	want, err := os.ReadFile("testdata/openapi/package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "installed.lock")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the OpenAPI checker's node packages are not installed in %s as testdata/openapi/package-lock.json pins them; %s", dir, how)
	}
	return node, filepath.Join(dir, "node_modules")
}

// openAPICheck runs testdata/openapi/check.js with args and returns what
// it printed and whether it found nothing wrong; a checker that did not
// run (exit status other than 0 and 1) fails the test.
func openAPICheck(t *testing.T, args ...string) (string, bool) {
	t.Helper()
	node, modules := openAPITools(t)
	cmd := exec.Command(node, append([]string{"testdata/openapi/check.js"}, args...)...)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), true
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return out.String(), false
	}
	t.Fatalf("check.js %s: %v\n%s", strings.Join(args, " "), err, out.String())
	return "", false
}

// TestOpenAPIValid holds docs/openapi.yaml to OpenAPI 3.1: every $ref
// resolves, the document validates against the OpenAPI 3.1 schema, each
// Schema Object is valid JSON Schema under Ajv's strict mode (a YAML slip
// such as an unquoted comma in a flow mapping's description is a keyword
// of its own there), defaults are valid, operation ids unique, path
// parameters those of the path (check.js says what it checks). A copy
// with a $ref to no schema must be refused, or the checker checks nothing.
func TestOpenAPIValid(t *testing.T) {
	if out, ok := openAPICheck(t, "validate", "../docs/openapi.yaml"); !ok {
		t.Errorf("docs/openapi.yaml is not a valid OpenAPI document:\n%s", out)
	}
	data, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, bytes.Replace(data, []byte(`schemas/Device"}`), []byte(`schemas/NoSuchSchema"}`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, ok := openAPICheck(t, "validate", bad); ok || !strings.Contains(out, "NoSuchSchema") {
		t.Errorf("a document with a $ref to no schema passed the check: %q", out)
	}
}

// openAPIAnswer is one answer of the API for check.js answers: the route
// that served it, its status, media type ("" without a body) and body.
type openAPIAnswer struct {
	Op     string `json:"op"`
	Status int    `json:"status"`
	Type   string `json:"type"`
	Body   any    `json:"body"`
}

// answerLog runs requests through a fixture and keeps their answers, each
// with the route pattern that served it.
type answerLog struct {
	t       *testing.T
	f       *fixture
	mux     *http.ServeMux
	answers []openAPIAnswer
}

func newAnswerLog(t *testing.T, f *fixture) *answerLog {
	mux := http.NewServeMux()
	for _, rt := range Routes() {
		mux.HandleFunc(rt.Method+" "+rt.Path, func(http.ResponseWriter, *http.Request) {})
	}
	return &answerLog{t: t, f: f, mux: mux}
}

// do runs the request as f.do does, keeps its answer (one per line of an
// NDJSON body) and returns it; want is the status it must have.
func (l *answerLog) do(want int, method, path, who, body string, hdr ...string) *httptest.ResponseRecorder {
	l.t.Helper()
	w := l.f.do(method, path, who, body, hdr...)
	if w.Code != want {
		l.t.Fatalf("%s %s as %s: %d %s, want %d", method, path, who, w.Code, w.Body, want)
	}
	_, op := l.mux.Handler(httptest.NewRequest(method, path, nil))
	if op == "" {
		l.t.Fatalf("%s %s: no route", method, path)
	}
	l.add(op, w)
	return w
}

// add keeps w as an answer of op.
func (l *answerLog) add(op string, w *httptest.ResponseRecorder) {
	l.t.Helper()
	mt := ""
	if ct := w.Header().Get("Content-Type"); ct != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(ct); err != nil {
			l.t.Fatalf("%s: Content-Type %q: %v", op, ct, err)
		}
	}
	lines := [][]byte{w.Body.Bytes()}
	if mt == "application/x-ndjson" {
		lines = bytes.Split(bytes.TrimSpace(w.Body.Bytes()), []byte("\n"))
	}
	for _, line := range lines {
		a := openAPIAnswer{Op: op, Status: w.Code, Type: mt}
		if mt != "" {
			if err := json.Unmarshal(line, &a.Body); err != nil {
				l.t.Fatalf("%s: %d %s: %v", op, w.Code, line, err)
			}
		} else if len(line) > 0 {
			l.t.Fatalf("%s: %d with a body and no Content-Type: %s", op, w.Code, line)
		}
		l.answers = append(l.answers, a)
	}
}

// check validates every answer kept against docs/openapi.yaml, and that
// the check refuses a device with a field the document does not name and
// an event of a kind it does not list (else it checks nothing).
func (l *answerLog) check() {
	l.t.Helper()
	if out, ok := checkAnswers(l.t, l.answers); !ok {
		l.t.Errorf("the API's answers do not match docs/openapi.yaml:\n%s", out)
	}
	forged := []openAPIAnswer{
		{Op: "GET /v1/devices/{mac}", Status: 200, Type: "application/json", Body: map[string]any{"mac": "02:00:00:00:00:01",
			"isp": "alpha", "customer_id": "c-1", "source": "api", "blocked": false, "updated": "2026-01-02T03:04:05Z", "colour": "red"}},
		{Op: "GET /v1/events", Status: 200, Type: "application/json", Body: map[string]any{"next": "1", "oldest": 1, "newest": 1,
			"items": []any{map[string]any{"seq": 1, "time": "2026-01-02T03:04:05Z", "kind": "no-such-kind"}}}},
	}
	if out, ok := checkAnswers(l.t, forged); ok || !strings.Contains(out, "colour") || !strings.Contains(out, "no-such-kind") {
		l.t.Errorf("forged answers passed the check: %q", out)
	}
}

// checkAnswers runs check.js answers on answers.
func checkAnswers(t *testing.T, answers []openAPIAnswer) (string, bool) {
	t.Helper()
	data, err := json.Marshal(answers)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "answers.json")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return openAPICheck(t, "answers", "../docs/openapi.yaml", file)
}

// eventKinds returns the event kinds subscribers/events.go declares (its
// EventKind constants): every kind an event of the log can have.
func eventKinds(t *testing.T) []subscribers.EventKind {
	t.Helper()
	file, err := parser.ParseFile(token.NewFileSet(), "../subscribers/events.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []subscribers.EventKind
	for _, d := range file.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "EventKind" {
				continue
			}
			for _, v := range vs.Values {
				if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					k, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					kinds = append(kinds, subscribers.EventKind(k))
				}
			}
		}
	}
	if len(kinds) < 20 {
		t.Fatalf("read %d event kinds from subscribers/events.go: %v", len(kinds), kinds)
	}
	return kinds
}

// TestOpenAPIAnswers serves the real API (the real tenants.Service over a
// store) and holds what it answers to docs/openapi.yaml: ISPs, customers,
// an import's result lines, devices (pinned, claimed, blocked with no ISP,
// moved), bindings, event pages holding an event of every kind the store
// has, stats, a webhook state, and problems of every type. Each answer's
// body must match the schema the document gives its operation and status,
// and name no field the document does not (check.js answers).
func TestOpenAPIAnswers(t *testing.T) {
	f, _, st := newRealFixture(t)
	now := time.Now().UTC().Truncate(time.Second)
	f.srv.SetWebhookStatus(func(isp string) (webhooks.Status, bool) {
		return webhooks.Status{ISP: isp, URL: "https://hooks.example/" + isp, Cursor: 7, Lag: 2, Attempts: 3,
			LastError: "HTTP 503", LastErrorTime: now, NextAttempt: now.Add(time.Second), LastSuccess: now.Add(-time.Minute),
			Delivered: 7, Failures: 3}, isp == "alpha"
	})
	l := newAnswerLog(t, f)
	const ct, app = "Content-Type", "application/json"

	// Customers, an import.
	l.do(201, "POST", "/v1/isps/alpha/customers", "alpha", `{"customer_id":"c-1","password":"pw one","device_limit":3}`, ct, app)
	l.do(201, "POST", "/v1/isps/alpha/customers", "operator", `{"customer_id":"c-2","status":"suspended","device_limit":2}`, ct, app)
	l.do(201, "POST", "/v1/isps/beta/customers", "beta", `{"customer_id":"b-1","password":"pw b"}`, ct, app)
	l.do(201, "POST", "/v1/isps/beta/customers", "beta", `{"customer_id":"b-2"}`, ct, app)
	l.do(200, "GET", "/v1/isps/alpha/customers?limit=1", "alpha", "")
	l.do(200, "GET", "/v1/isps/alpha/customers", "alpha", "")
	l.do(200, "GET", "/v1/isps/alpha/customers/c-1", "alpha", "")
	l.do(200, "PATCH", "/v1/isps/alpha/customers/c-2", "alpha", `{"status":"active","device_limit":3}`, ct, app)
	l.do(200, "POST", "/v1/isps/alpha/customers:import", "alpha",
		`{"customer_id":"c-3","password":"pw3"}`+"\n"+`{"customer_id":"c-1","password":"pw one","device_limit":3}`+"\n"+
			`{"customer_id":"c-3","password":"pw3"}`+"\n"+`{"customer_id":"c-4","nope":1}`+"\n"+`{"customer_id":"c-2","status":"suspended"}`+"\n",
		ct, "application/x-ndjson")

	// Devices: attached with a pin, the pin cleared, claimed, at the
	// device limit, blocked with no ISP, moved.
	l.do(201, "POST", "/v1/isps/alpha/devices", "alpha", `{"mac":"02:00:00:00:00:01","customer_id":"c-1","access":"acc0"}`, ct, app)
	l.do(200, "GET", "/v1/isps/alpha/devices/02:00:00:00:00:01", "alpha", "")
	l.do(200, "PATCH", "/v1/isps/alpha/devices/02:00:00:00:00:01", "alpha", `{"access":""}`, ct, app)
	l.do(200, "PATCH", "/v1/devices/02:00:00:00:00:01", "operator", `{"access":"acc1"}`, ct, app)
	l.do(200, "POST", "/v1/claims", "claim", `{"isp":"beta","customer_id":"b-1","password":"pw b","mac":"02:00:00:00:00:02","access":"acc1"}`, ct, app)
	l.do(409, "POST", "/v1/claims", "claim", `{"isp":"beta","customer_id":"b-1","password":"pw b","mac":"02:00:00:00:00:03"}`, ct, app)
	l.do(403, "POST", "/v1/claims", "claim", `{"isp":"beta","customer_id":"b-1","password":"wrong","mac":"02:00:00:00:00:03"}`, ct, app)
	l.do(409, "POST", "/v1/isps/alpha/devices", "alpha", `{"mac":"02:00:00:00:00:02","customer_id":"c-1"}`, ct, app)
	l.do(409, "POST", "/v1/isps/alpha/devices", "operator", `{"mac":"02:00:00:00:00:02","customer_id":"c-1"}`, ct, app)
	l.do(200, "POST", "/v1/devices/02:00:00:00:00:66/block", "operator", "")
	l.do(409, "POST", "/v1/isps/alpha/devices", "alpha", `{"mac":"02:00:00:00:00:66","customer_id":"c-1"}`, ct, app)
	l.do(200, "GET", "/v1/devices/02:00:00:00:00:66", "operator", "")
	l.do(200, "GET", "/v1/devices", "operator", "")
	l.do(200, "GET", "/v1/devices?limit=1", "operator", "")
	l.do(200, "GET", "/v1/isps/beta/devices?customer_id=b-1", "beta", "")
	l.do(200, "POST", "/v1/devices/02:00:00:00:00:66/unblock", "operator", "")
	l.do(201, "POST", "/v1/isps/alpha/devices", "alpha", `{"mac":"02:00:00:00:00:04","customer_id":"c-1"}`, ct, app)
	l.do(200, "POST", "/v1/devices/02:00:00:00:00:04/block", "operator", "")
	l.do(200, "POST", "/v1/devices/02:00:00:00:00:04/move", "operator", `{"isp":"beta","customer_id":"b-2","immediate":true}`, ct, app)
	l.do(204, "DELETE", "/v1/isps/beta/devices/02:00:00:00:00:04", "beta", "")
	l.do(204, "DELETE", "/v1/isps/alpha/customers/c-3", "alpha", "")

	// Bindings, one with a VLAN.
	for _, b := range []subscribers.Binding{
		{MAC: subscribers.MAC{2, 0, 0, 0, 0, 1}, Access: "acc1", VLAN: 7, ISP: "alpha", IP: netip.MustParseAddr("100.64.0.1"), Expires: now.Add(time.Hour)},
		{MAC: subscribers.MAC{2, 0, 0, 0, 0, 2}, Access: "acc0", ISP: "beta", IP: netip.MustParseAddr("100.64.0.2"), Expires: now.Add(time.Hour)},
	} {
		if err := st.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	l.do(200, "GET", "/v1/bindings", "operator", "")
	l.do(200, "GET", "/v1/bindings?mac=02:00:00:00:00:01", "operator", "")
	l.do(200, "GET", "/v1/isps/alpha/bindings", "alpha", "")
	l.do(200, "GET", "/v1/isps/beta/bindings?mac=02-00-00-00-00-02", "beta", "")

	// An event of every kind the store has, of an ISP and of none, with
	// every field set.
	for _, k := range eventKinds(t) {
		for _, isp := range []string{"alpha", ""} {
			e := subscribers.Event{Kind: k, MAC: subscribers.MAC{2, 0, 0, 0, 0, 1}, ISP: isp, IP: netip.MustParseAddr("100.64.0.1"),
				Reason: "why", Customer: "c-1", Access: "acc0", LeaseEnd: now.Add(time.Hour), Actor: "alpha-1", RequestID: "req-1"}
			if _, err := st.AddEvent(e); err != nil {
				t.Fatal(err)
			}
		}
	}
	l.do(200, "GET", "/v1/events?limit=1000", "operator", "")
	l.do(200, "GET", "/v1/events?after=3&limit=2", "operator", "")
	l.do(200, "GET", "/v1/isps/alpha/events?limit=1000", "alpha", "")
	l.do(200, "GET", "/v1/isps/alpha/events?after=100000", "alpha", "")
	l.do(200, "GET", "/v1/events?mac=02:00:00:00:00:01&limit=3", "operator", "")
	l.do(200, "GET", "/v1/isps/alpha/events?mac=02-00-00-00-00-01&after=0&limit=2", "alpha", "")
	l.do(400, "GET", "/v1/events?mac=nonsense", "operator", "")

	// The rest.
	l.do(200, "GET", "/v1/isps", "operator", "")
	l.do(200, "GET", "/v1/isps", "beta", "")
	l.do(200, "GET", "/v1/isps/beta", "beta", "")
	l.do(200, "GET", "/v1/stats", "operator", "")
	l.do(200, "GET", "/v1/isps/alpha/webhook", "alpha", "")
	l.do(404, "GET", "/v1/isps/beta/webhook", "beta", "")
	l.do(401, "GET", "/v1/isps", "bad", "")
	l.do(400, "GET", "/v1/isps", "none", "", "Authorization", "Bearer")
	l.do(403, "GET", "/v1/stats", "alpha", "")
	l.do(404, "GET", "/v1/isps/alpha/customers/nobody", "alpha", "")
	l.do(400, "GET", "/v1/isps/alpha/customers?afer=x", "alpha", "")
	l.do(415, "POST", "/v1/isps/alpha/customers", "alpha", `{"customer_id":"c-9"}`, ct, "text/plain")
	l.do(422, "POST", "/v1/isps/alpha/customers", "alpha", `{"customer_id":"c-9","device_limit":1000}`, ct, app)

	// A problem of every type, as the server writes it.
	for slug := range ProblemTypes() {
		w := httptest.NewRecorder()
		w.Header().Set("X-Request-Id", "req-1")
		p := newProblem(slug, "detail")
		if slug == "rate-limited" {
			p.RetryAfter = 2
		}
		if slug == "device-limit" {
			p.Limit, p.Devices = 1, []string{"02:00:00:00:00:01"}
		}
		writeProblem(w, httptest.NewRequest("GET", "/v1/isps", nil), p)
		l.add("GET /v1/isps", w)
	}
	l.check()
}

// openAPISchema is what TestOpenAPISchemasMatchTypes reads of a Schema
// Object of docs/openapi.yaml.
type openAPISchema struct {
	Type       any                       `json:"type"` // a name, or a list of them
	Ref        string                    `json:"$ref"`
	Required   []string                  `json:"required"`
	Properties map[string]*openAPISchema `json:"properties"`
	Enum       []any                     `json:"enum"`
	AnyOf      []*openAPISchema          `json:"anyOf"`
}

// types returns the schema's type names, its anyOf branches' included
// (anyOf: [{type: string, enum: [...]}, {type: "null"}] is a nullable enum).
func (s *openAPISchema) types() []string {
	var out []string
	switch v := s.Type.(type) {
	case string:
		out = append(out, v)
	case []any:
		for _, x := range v {
			if n, ok := x.(string); ok {
				out = append(out, n)
			}
		}
	}
	for _, b := range s.AnyOf {
		out = append(out, b.types()...)
	}
	return out
}

// enum returns the schema's enum values, its anyOf branches' included.
func (s *openAPISchema) enum() []any {
	out := slices.Clone(s.Enum)
	for _, b := range s.AnyOf {
		out = append(out, b.enum()...)
	}
	return out
}

// omitted reports whether encoding/json leaves the field out when empty
// (omitempty or omitzero).
func omitted(sf reflect.StructField) bool {
	_, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
	for o := range strings.SplitSeq(opts, ",") {
		if o == "omitempty" || o == "omitzero" {
			return true
		}
	}
	return false
}

// jsonType is the JSON Schema type Go's encoding/json gives t.
func jsonType(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeFor[time.Time](), t == reflect.TypeFor[netip.Addr]():
		return "string"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "integer"
	case t.Kind() == reflect.Slice:
		return "array"
	}
	return "object"
}

// TestOpenAPISchemasMatchTypes holds docs/openapi.yaml's component schemas
// to the Go types the API encodes and decodes: the same property names and
// JSON types; for an answer, required lists exactly the fields always
// sent (a generated client makes the others optional); for a request, a
// field that may be null ("absent or null: left alone") admits null; and
// the enums list exactly the values the code has: every event kind of
// subscribers/events.go, every problem type, statuses, sources, import
// results.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	out, ok := openAPICheck(t, "json", "../docs/openapi.yaml")
	if !ok {
		t.Fatalf("check.js json: %s", out)
	}
	var doc struct {
		Components struct {
			Schemas map[string]*openAPISchema `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	schemas := doc.Components.Schemas
	answers := map[string]reflect.Type{
		"Problem": reflect.TypeFor[Problem](), "ISPInfo": reflect.TypeFor[tenants.ISPInfo](), "PurgeResult": reflect.TypeFor[tenants.PurgeResult](),
		"Customer": reflect.TypeFor[tenants.Customer](), "CustomerPage": reflect.TypeFor[list[tenants.Customer]](),
		"ImportResult": reflect.TypeFor[tenants.ImportResult](), "DeviceImportResult": reflect.TypeFor[tenants.DeviceImportResult](), "Device": reflect.TypeFor[tenants.Device](),
		"DevicePage": reflect.TypeFor[list[tenants.Device]](), "Binding": reflect.TypeFor[tenants.Binding](),
		"BindingPage": reflect.TypeFor[list[tenants.Binding]](), "Event": reflect.TypeFor[tenants.Event](),
		"EventList": reflect.TypeFor[EventList](), "WebhookStatus": reflect.TypeFor[webhooks.Status](),
		"StreamReset": reflect.TypeFor[StreamReset](), "Stats": reflect.TypeFor[tenants.Stats](),
	}
	requests := map[string]reflect.Type{
		"CustomerInput": reflect.TypeFor[tenants.CustomerInput](), "CustomerPatch": reflect.TypeFor[tenants.CustomerPatch](),
		"DeviceInput": reflect.TypeFor[tenants.DeviceInput](), "DevicePatch": reflect.TypeFor[tenants.DevicePatch](),
		"ClaimRequest": reflect.TypeFor[tenants.ClaimRequest](), "MoveRequest": reflect.TypeFor[tenants.MoveRequest](),
	}
	for name := range schemas {
		if answers[name] == nil && requests[name] == nil {
			t.Errorf("components.schemas.%s: no Go type to hold it to (add it here)", name)
		}
	}
	check := func(name string, gt reflect.Type, answer bool) {
		s := schemas[name]
		if s == nil {
			t.Errorf("components.schemas.%s: missing (the API sends or takes %s)", name, gt)
			return
		}
		fields := jsonFields(gt)
		for p := range s.Properties {
			if _, ok := fields[p]; !ok {
				t.Errorf("components.schemas.%s.%s: %s has no such field", name, p, gt)
			}
		}
		for f, sf := range fields {
			ps := s.Properties[f]
			if ps == nil {
				t.Errorf("components.schemas.%s: no property %s (%s.%s)", name, f, gt, sf.Name)
				continue
			}
			if want := jsonType(sf.Type); ps.Ref == "" && !slices.Contains(ps.types(), want) {
				t.Errorf("components.schemas.%s.%s: type %v, %s.%s encodes as %s", name, f, ps.Type, gt, sf.Name, want)
			}
			if answer && slices.Contains(s.Required, f) == omitted(sf) {
				if omitted(sf) {
					t.Errorf("components.schemas.%s: %s is required, but %s.%s is left out when empty", name, f, gt, sf.Name)
				} else {
					t.Errorf("components.schemas.%s: %s is not required, but %s.%s is always sent", name, f, gt, sf.Name)
				}
			}
			if !answer && sf.Type.Kind() == reflect.Pointer && ps.Ref == "" && !slices.Contains(ps.types(), "null") {
				t.Errorf("components.schemas.%s.%s: null is taken (left alone), the schema does not admit it", name, f)
			}
		}
	}
	for name, gt := range answers {
		check(name, gt, true)
	}
	for name, gt := range requests {
		check(name, gt, false)
	}

	var kinds, problems []string
	for _, k := range eventKinds(t) {
		kinds = append(kinds, string(k))
	}
	for slug := range ProblemTypes() {
		problems = append(problems, ProblemTypePrefix+slug)
	}
	statuses := []string{string(tenants.StatusActive), string(tenants.StatusSuspended)}
	enums := map[string][]string{
		"Event.kind":           kinds,
		"Problem.type":         problems,
		"Customer.status":      statuses,
		"CustomerInput.status": statuses,
		"CustomerPatch.status": statuses,
		"Customer.source":      {tenants.SourceAPI, tenants.SourceConfig},
		"Device.source":        {tenants.SourceConfig, tenants.SourceAPI, tenants.SourceClaim},
		"ImportResult.result":  {"created", "updated", "unchanged", "error"},
	}
	for at, want := range enums {
		name, prop, _ := strings.Cut(at, ".")
		var got []string
		if s := schemas[name]; s != nil && s.Properties[prop] != nil {
			for _, v := range s.Properties[prop].enum() {
				if v, ok := v.(string); ok {
					got = append(got, v)
				}
			}
		}
		if missing, extra := setDiff(want, got), setDiff(got, want); len(missing)+len(extra) > 0 {
			t.Errorf("components.schemas.%s: enum lacks %v, has %v that the code does not", at, missing, extra)
		}
	}
}

// setDiff returns the strings of a that b lacks, sorted.
func setDiff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	slices.Sort(out)
	return out
}
