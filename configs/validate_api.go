package configs

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
)

// Validation of the [api] table, and of the token files it and the [[isp]]
// entries name (apiFiles).

func (v *validator) api() {
	a := &v.cfg.API
	v.apiFiles()
	if a.MaxConnections < 1 || a.MaxConnections > 65536 {
		v.errorf("api.max_connections", "must be 1..65536, got %d", a.MaxConnections)
	}
	if a.MaxStreamsPerToken < 1 || a.MaxStreamsPerToken > 1024 {
		v.errorf("api.max_streams_per_token", "must be 1..1024, got %d", a.MaxStreamsPerToken)
	}
	l := a.Listen
	host, port, err := net.SplitHostPort(l)
	if err != nil {
		v.errorf("api.listen", "must be host:port (e.g. \"127.0.0.1:8080\"), got %q", l)
		return
	}
	if strings.ContainsAny(host, " \t") {
		v.errorf("api.listen", "bad host %q", host)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.errorf("api.listen", "port must be a number in 1..65535, got %q", port)
		return
	}
	if a.TLSCert == "" && !a.Insecure && !IsLoopbackHost(host) && !v.c.failed("api.tls_cert") && !v.c.failed("api.tls_key") {
		v.errorf("api.listen", "%q is not a loopback address: serving the API there needs tls_cert and tls_key (or insecure = true to send tokens in clear text)", l)
	}
}

// IsLoopbackHost reports whether host (of a listen address) is "localhost"
// or a loopback IP address. An empty host (all addresses) and other names
// are not.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	h, _, _ := strings.Cut(host, "%")
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

// apiFiles checks the paths of the TLS and token files: absolute, TLS both
// or neither, at most two token files per ISP, no file named twice, no
// two files of an ISP (or two claim files) with one token name. The
// files themselves are read when the API starts (package auth, api).
func (v *validator) apiFiles() {
	a := &v.cfg.API
	paths := map[string]string{} // path → key that named it first
	file := func(key, p string) bool {
		switch {
		case p == "":
			v.errorf(key, "empty path")
		case !filepath.IsAbs(p):
			v.errorf(key, "must be an absolute path, got %q", p)
		default:
			c := filepath.Clean(p)
			if other, dup := paths[c]; dup {
				v.errorf(key, "%s is already named by %s (one file, one token)", p, other)
				return false
			}
			paths[c] = key
			return true
		}
		return false
	}
	switch {
	case a.TLSCert != "" && a.TLSKey == "":
		v.errorf("api.tls_key", "missing: tls_cert is set, tls_key must be too")
	case a.TLSCert == "" && a.TLSKey != "":
		v.errorf("api.tls_cert", "missing: tls_key is set, tls_cert must be too")
	}
	if a.TLSCert != "" {
		file("api.tls_cert", a.TLSCert)
	}
	if a.TLSKey != "" {
		file("api.tls_key", a.TLSKey)
	}
	if v.defined["api.operator_token_file"] || a.OperatorTokenFile != "" {
		file("api.operator_token_file", a.OperatorTokenFile)
	}
	for i, p := range v.cfg.ISPs {
		key := indexKey("isp", i) + ".token_files"
		if len(p.TokenFiles) > 2 {
			v.errorf(key, "at most two token files per ISP (the current one and the next, for rotation), got %d", len(p.TokenFiles))
		}
		names := map[string]string{}
		for j, f := range p.TokenFiles {
			if k := fmt.Sprintf("%s[%d]", key, j); file(k, f) {
				v.tokenName(names, k, f)
			}
		}
	}
	names := map[string]string{}
	for i, f := range a.ClaimTokenFiles {
		if k := fmt.Sprintf("api.claim_token_files[%d]", i); file(k, f) {
			v.tokenName(names, k, f)
		}
	}
}

// tokenName refuses a token file whose name (auth.TokenName: the base
// name without its extension) another file of the same principals has
// (names: name → key): the name is the actor of the token's changes, and
// two tokens of one name are one actor in the events (the old and the new
// token of a rotation could not be told apart).
func (v *validator) tokenName(names map[string]string, key, path string) {
	b := filepath.Base(path)
	n := strings.TrimSuffix(b, filepath.Ext(b))
	if n == "" {
		n = b
	}
	if other, dup := names[n]; dup {
		v.errorf(key, "%s has the name %q of %s: a token's name is the actor of its changes in the events; rename one", path, n, other)
		return
	}
	names[n] = key
}
