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
