package api

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	const how = "install them: apt-get install nodejs npm (if missing), then sh api/testdata/openapi/install.sh (make tools and .ci/run do both)"
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
