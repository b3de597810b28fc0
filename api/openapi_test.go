package api

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
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
