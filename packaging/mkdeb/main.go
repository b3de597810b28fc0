// Command mkdeb builds ispmux's Debian package (what `make deb` runs) with
// dpkg-deb alone, no debhelper: the binary as /usr/sbin/ispmux, the systemd
// unit (contrib/systemd/ispmux.service) in /lib/systemd/system, the example
// configuration (configs/example.toml) as the conffile
// /etc/ispmux/ispmux.toml, the man page ispmux(8) generated from the
// binary's own help text, the copyright file (ispmux and every Go module
// linked into the binary, with its license text, read from the module
// cache) and the maintainer scripts of packaging/deb.
//
//	go run ./packaging/mkdeb -bin bin/ispmux-deb -out bin [-version V]
//
// The version defaults to 0.0~gitYYYYMMDDhhmmss.REV12 (+dirty) from the
// binary's VCS stamp. It prints the package's path and size.
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"time"
)

func main() {
	bin := flag.String("bin", "bin/ispmux-deb", "the ispmux binary to package (linux/amd64)")
	out := flag.String("out", "bin", "directory for the .deb")
	version := flag.String("version", "", "package version (default from the binary's VCS stamp)")
	root := flag.String("root", ".", "the repository's root")
	flag.Parse()
	path, size, err := build(*bin, *out, *version, *root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
	fmt.Printf("%s (%d bytes, %.1f MiB)\n", path, size, float64(size)/(1<<20))
}

// pkgFile is a file of the package: its path in the installed system,
// its content and mode.
type pkgFile struct {
	path string
	data []byte
	mode fs.FileMode
}

func build(bin, outDir, version, root string) (string, int64, error) {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "", 0, err
	}
	if info.Path != "github.com/ispmux/ispmux/cmd/ispmux" {
		return "", 0, fmt.Errorf("%s is %s, not ispmux", bin, info.Path)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["GOOS"] != "linux" || settings["GOARCH"] != "amd64" {
		return "", 0, fmt.Errorf("%s is %s/%s: the package is linux/amd64", bin, settings["GOOS"], settings["GOARCH"])
	}
	stamp := time.Now().UTC()
	if t, err := time.Parse(time.RFC3339, settings["vcs.time"]); err == nil {
		stamp = t.UTC()
	}
	if version == "" {
		rev := settings["vcs.revision"]
		if rev == "" {
			return "", 0, errors.New("the binary has no VCS stamp: give -version")
		}
		version = "0.0~git" + stamp.Format("20060102150405") + "." + rev[:min(12, len(rev))]
		if settings["vcs.modified"] == "true" {
			version += "+dirty"
		}
	}

	read := func(p string) []byte {
		if err != nil {
			return nil
		}
		var b []byte
		b, err = os.ReadFile(filepath.Join(root, p))
		return b
	}
	binData, err := os.ReadFile(bin)
	if err != nil {
		return "", 0, err
	}
	man, err := manPage(bin, version, stamp)
	if err != nil {
		return "", 0, err
	}
	copyright, err := copyrightFile(info, stamp)
	if err != nil {
		return "", 0, err
	}
	files := []pkgFile{
		{"usr/sbin/ispmux", binData, 0o755},
		{"lib/systemd/system/ispmux.service", read("contrib/systemd/ispmux.service"), 0o644},
		{"etc/ispmux/ispmux.toml", read("configs/example.toml"), 0o644},
		{"usr/share/man/man8/ispmux.8.gz", gz(man), 0o644},
		{"usr/share/doc/ispmux/copyright", copyright, 0o644},
		{"usr/share/doc/ispmux/README.md", read("README.md"), 0o644},
		{"usr/share/doc/ispmux/DEPLOY.md", read("docs/DEPLOY.md"), 0o644},
		{"usr/share/doc/ispmux/ISP-SERVERS.md", read("docs/ISP-SERVERS.md"), 0o644},
		{"usr/share/doc/ispmux/OPERATIONS.md", read("docs/OPERATIONS.md"), 0o644},
		{"usr/share/doc/ispmux/API.md", read("docs/API.md"), 0o644},
		{"usr/share/doc/ispmux/openapi.yaml", read("docs/openapi.yaml"), 0o644},
		{"usr/share/doc/ispmux/ARCHITECTURE.md", read("docs/ARCHITECTURE.md"), 0o644},
		{"usr/share/doc/ispmux/examples/minimal.toml", read("configs/minimal.toml"), 0o644},
		{"usr/share/doc/ispmux/examples/onboarding.toml", read("configs/onboarding.toml"), 0o644},
		{"usr/share/doc/ispmux/examples/ispmux-rules.yml", read("contrib/prometheus/ispmux-rules.yml"), 0o644},
		{"usr/share/doc/ispmux/examples/grafana-dashboard.json", read("contrib/grafana-dashboard.json"), 0o644},
	}
	control := []pkgFile{
		{"conffiles", read("packaging/deb/conffiles"), 0o644},
		{"postinst", read("packaging/deb/postinst"), 0o755},
		{"prerm", read("packaging/deb/prerm"), 0o755},
		{"postrm", read("packaging/deb/postrm"), 0o755},
	}
	if err != nil {
		return "", 0, err
	}

	stage, err := os.MkdirTemp("", "ispmux-deb")
	if err != nil {
		return "", 0, err
	}
	defer os.RemoveAll(stage)
	var md5sums bytes.Buffer
	var installed int64
	for _, f := range files {
		if err := writeFile(filepath.Join(stage, f.path), f.data, f.mode, stamp); err != nil {
			return "", 0, err
		}
		fmt.Fprintf(&md5sums, "%x  %s\n", md5.Sum(f.data), f.path)
		installed += int64(len(f.data))
	}
	control = append(control,
		pkgFile{"md5sums", md5sums.Bytes(), 0o644},
		pkgFile{"control", controlFile(version, (installed+1023)/1024), 0o644})
	for _, f := range control {
		if err := writeFile(filepath.Join(stage, "DEBIAN", f.path), f.data, f.mode, stamp); err != nil {
			return "", 0, err
		}
	}
	// Directories: 0755, the same time stamp.
	err = filepath.WalkDir(stage, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			if err = os.Chmod(p, 0o755); err == nil {
				err = os.Chtimes(p, stamp, stamp)
			}
		}
		return err
	})
	if err != nil {
		return "", 0, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", 0, err
	}
	deb := filepath.Join(outDir, fmt.Sprintf("ispmux_%s_amd64.deb", version))
	cmd := exec.Command("dpkg-deb", "--root-owner-group", "-Zxz", "--build", stage, deb)
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", stamp.Unix()))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", 0, fmt.Errorf("dpkg-deb: %v: %s", err, out)
	}
	fi, err := os.Stat(deb)
	if err != nil {
		return "", 0, err
	}
	return deb, fi.Size(), nil
}

func writeFile(p string, data []byte, mode fs.FileMode, t time.Time) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(p, mode); err != nil { // whatever the umask
		return err
	}
	return os.Chtimes(p, t, t)
}

// gz compresses b as gzip -9n does: no name, no time stamp.
func gz(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

func controlFile(version string, installedKiB int64) []byte {
	return fmt.Appendf(nil, `Package: ispmux
Version: %s
Architecture: amd64
Maintainer: ispmux maintainers <maintainers@ispmux.invalid>
Installed-Size: %d
Depends: adduser
Section: net
Priority: optional
Homepage: https://github.com/ispmux/ispmux
Description: open-access broadband gateway (AF_XDP datapath, DHCP relay to each ISP)
 ispmux lets every subscriber on a shared access network get IP service from
 the ISP of their choice: subscriber frames arrive on AF_XDP sockets, are
 classified by MAC and forwarded to the chosen ISP's uplink in that ISP's VRF;
 DHCP is relayed to the ISP's own servers with Option 82 (circuit-id,
 remote-id, subscriber-id). A tenant API, webhooks and Prometheus metrics
 come with it.
 .
 The binary is static (no shared libraries). It needs Linux 5.8 or later
 (for the unit's CAP_BPF; 4.18 with CAP_SYS_ADMIN instead; 5.18 for the XDP
 fast path) on amd64 and NICs with XDP support; see
 /usr/share/doc/ispmux/DEPLOY.md, "Kernels". The
 service is installed disabled: edit /etc/ispmux/ispmux.toml, check it with
 "ispmux check", then "systemctl enable --now ispmux".
`, version, installedKiB)
}

// manPage is ispmux(8) in roff, made of the binary's help texts.
func manPage(bin, version string, stamp time.Time) ([]byte, error) {
	help := func(args ...string) (string, error) {
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			return "", fmt.Errorf("%s %s: %v", bin, strings.Join(args, " "), err)
		}
		return string(out), nil
	}
	var b bytes.Buffer
	pre := func(text string) {
		b.WriteString(".PP\n.nf\n")
		for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
			b.WriteString(roff(l) + "\n")
		}
		b.WriteString(".fi\n")
	}
	fmt.Fprintf(&b, ".\\\" ispmux(8), generated by packaging/mkdeb from the help of ispmux %s\n", version)
	fmt.Fprintf(&b, ".TH ISPMUX 8 %q %q \"System Administration\"\n", stamp.Format("2006-01-02"), "ispmux "+version)
	b.WriteString(`.SH NAME
ispmux \- open-access broadband gateway: AF_XDP forwarding to each subscriber's ISP, DHCP relayed with Option 82
.SH SYNOPSIS
.B ispmux run
.RB [ \-c
.IR FILE ]
.RB [ \-\-log\-format
.IR text | json ]
.br
.B ispmux check
.RB [ \-c
.IR FILE ]
.br
.B ispmux ctl
.I COMMAND
.RI [ ARGS ]
.RI [ flags ]
.br
.B ispmux version
.SH DESCRIPTION
.B ispmux
forwards every subscriber's traffic to the ISP that subscriber chose: frames
from the access ports arrive on AF_XDP sockets, are classified by source MAC
and sent out of the chosen ISP's uplink in that ISP's VRF; DHCP goes to the
ISP's own servers with Option 82 and the lease is bound before the
subscriber's ACK. The sections below are the command's own help
.RB ( "ispmux \-h" ,
.BR "ispmux run \-h" ,
\&...).
The lab, benchmark and demo commands are for development: they need the
packages listed by the source's lab/deps.sh.
.SH COMMANDS
`)
	top, err := help("--help")
	if err != nil {
		return nil, err
	}
	pre(top)
	for _, c := range []string{"run", "check", "ctl", "version"} {
		h, err := help(c, "-h")
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, ".SS ispmux %s\n", c)
		pre(h)
	}
	b.WriteString(`.SH SIGNALS
.TP
.BR SIGTERM ", " SIGINT
stop cleanly: XDP programs detached, the store closed.
.TP
.B SIGHUP
re-read the configuration's [[subscriber]] entries, token files, TLS
certificates, webhook settings, log_level and [dhcp] (systemctl reload
ispmux); other sections need a restart. A file with errors is refused and the running configuration
stays.
.SH FILES
.TP
.I /etc/ispmux/ispmux.toml
the configuration (every key: /usr/share/doc/ispmux/examples and the
installed file's comments)
.TP
.I /var/lib/ispmux/ispmux.db
the binding store (state_dir)
.TP
.I /var/lib/ispmux/ispmux.sock
the control socket (ispmux ctl as root on the box)
.TP
.I /run/ispmux
interface locks: one ispmux per interface
.TP
.I /lib/systemd/system/ispmux.service
the service, with the capabilities it needs
.SH SEE ALSO
.BR systemctl (1),
.BR journalctl (1);
/usr/share/doc/ispmux/DEPLOY.md (NICs, queues, pinning, memory, capabilities),
/usr/share/doc/ispmux/ISP-SERVERS.md (the ISPs' DHCP servers),
/usr/share/doc/ispmux/OPERATIONS.md (metrics and alerts),
/usr/share/doc/ispmux/API.md and openapi.yaml (the tenant API),
/usr/share/doc/ispmux/ARCHITECTURE.md (the design).
`)
	return b.Bytes(), nil
}

// roff escapes a line of preformatted text.
func roff(l string) string {
	l = strings.ReplaceAll(l, `\`, `\e`)
	l = strings.ReplaceAll(l, "-", `\-`)
	if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
		l = `\&` + l
	}
	return l
}

// copyrightFile is /usr/share/doc/ispmux/copyright: ispmux, then the Go
// standard library and every module linked into the binary, each with the
// license text found in the module cache (and its NOTICE file when there
// is one).
func copyrightFile(info *buildinfo.BuildInfo, stamp time.Time) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, `ispmux
Source: https://github.com/ispmux/ispmux
Copyright: %d the ispmux authors
License: the ispmux repository states no license.

/usr/sbin/ispmux is a static binary: it contains the Go standard library and
the Go modules below. Their licenses follow, each as the module ships it.
`, stamp.Year())
	modCache, err := goEnv("GOMODCACHE")
	if err != nil {
		return nil, err
	}
	goroot, err := goEnv("GOROOT")
	if err != nil {
		return nil, err
	}
	type mod struct{ path, version, dir string }
	mods := []mod{{"the Go standard library", info.GoVersion, goroot}}
	deps := append([]*debug.Module(nil), info.Deps...)
	sort.Slice(deps, func(i, j int) bool { return deps[i].Path < deps[j].Path })
	for _, d := range deps {
		if d.Replace != nil {
			if p := d.Replace.Path; strings.HasPrefix(p, "./") || strings.HasPrefix(p, "../") || filepath.IsAbs(p) {
				// A copy kept in the repository (third_party/): its
				// license is there, relative to the module root (where
				// make runs this).
				mods = append(mods, mod{d.Path, d.Version + " as patched in " + p, p})
				continue
			}
			d = d.Replace
		}
		mods = append(mods, mod{d.Path, d.Version, filepath.Join(modCache, escapeModPath(d.Path)+"@"+d.Version)})
	}
	for _, m := range mods {
		text, name, err := licenseText(m.dir)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", m.path, m.version, err)
		}
		fmt.Fprintf(&b, "\n%s\n%s %s (%s)\n\n%s\n", strings.Repeat("-", 76), m.path, m.version, name, strings.TrimRight(text, "\n"))
	}
	return b.Bytes(), nil
}

// licenseText reads a module's license (and NOTICE) and names it.
func licenseText(dir string) (text, name string, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", "", fmt.Errorf("%w (go mod download first)", err)
	}
	var lic []byte
	for _, e := range ents {
		n := strings.ToLower(e.Name())
		if !e.IsDir() && (strings.HasPrefix(n, "license") || strings.HasPrefix(n, "licence") || strings.HasPrefix(n, "copying")) {
			if lic, err = os.ReadFile(filepath.Join(dir, e.Name())); err != nil {
				return "", "", err
			}
			break
		}
	}
	if lic == nil {
		return "", "", fmt.Errorf("no license file in %s", dir)
	}
	t := string(lic)
	switch {
	case strings.Contains(t, "Apache License") && strings.Contains(t, "Version 2.0"):
		name = "Apache-2.0"
	case strings.Contains(t, "Permission is hereby granted, free of charge"):
		name = "Expat"
	case strings.Contains(t, "Redistribution and use in source and binary forms") && strings.Contains(t, "Neither the name"):
		name = "BSD-3-clause"
	case strings.Contains(t, "Redistribution and use in source and binary forms"):
		name = "BSD-2-clause"
	case strings.Contains(t, "Mozilla Public License"):
		name = "MPL-2.0"
	default:
		name = "other"
	}
	if notice, err := os.ReadFile(filepath.Join(dir, "NOTICE")); err == nil {
		t += "\nNOTICE:\n" + string(notice)
	}
	return t, name, nil
}

// escapeModPath is the module cache's spelling of a module path: each
// upper-case letter as "!" and its lower case.
func escapeModPath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func goEnv(k string) (string, error) {
	out, err := exec.Command("go", "env", k).Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", k, err)
	}
	return strings.TrimSpace(string(out)), nil
}
