package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/privtest"
	"github.com/ispmux/ispmux/lab"
)

// TestFinishDir: the demo's directory is removed at the end unless kept on
// request or because the demo failed, and the demo says which.
func TestFinishDir(t *testing.T) {
	for _, tt := range []struct {
		name         string
		keep, failed bool
		gone         bool
		want         string
	}{
		{"normal end", false, false, true, "demo: removed DIR (ispmux's config, log and state; --keep keeps them)"},
		{"--keep", true, false, false, "demo: kept DIR (ispmux.toml, ispmux.log, state/); the token files and portal certificate its ispmux.toml names were the lab's and went with it"},
		{"failure", false, true, false, "demo: kept DIR (ispmux.toml, ispmux.log, state/) to see what went wrong"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ispmux-demo-1")
			if err := os.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"ispmux.toml", "ispmux.log", "state/ispmux.db"} {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			finishDir(&out, dir, tt.keep, tt.failed)
			_, err := os.Stat(dir)
			if gone := os.IsNotExist(err); gone != tt.gone {
				t.Errorf("directory gone: %v, want %v (%v)", gone, tt.gone, err)
			}
			if want := strings.ReplaceAll(tt.want, "DIR", dir); !strings.Contains(out.String(), want) {
				t.Errorf("said %q, want %q", out.String(), want)
			}
		})
	}
}

// TestParseDhclientLease: the last lease block of a dhclient lease file,
// its address and options (quotes removed), as the onboarding step prints
// them.
func TestParseDhclientLease(t *testing.T) {
	const file = `lease {
  interface "eth0";
  fixed-address 100.72.0.2;
  option subnet-mask 255.255.255.0;
  option dhcp-lease-time 20;
}
lease {
  interface "eth0";
  fixed-address 100.72.0.3;
  option subnet-mask 255.255.255.0;
  option routers 100.72.0.1;
  option dhcp-lease-time 20;
  option dhcp-server-identifier 100.72.0.1;
  option domain-name-servers 203.0.113.80;
  option captive-portal "https://portal.ispmux.test/api/captive";
  renew 4 2026/09/03 05:05:42;
}
`
	l := parseDhclientLease(file)
	if l.Address != "100.72.0.3" {
		t.Errorf("address %q", l.Address)
	}
	for k, v := range map[string]string{"routers": "100.72.0.1", "domain-name-servers": "203.0.113.80",
		"captive-portal": "https://portal.ispmux.test/api/captive", "dhcp-lease-time": "20"} {
		if l.Options[k] != v {
			t.Errorf("option %s = %q, want %q", k, l.Options[k], v)
		}
	}
	if l := parseDhclientLease(""); l.Address != "" || l.Options == nil {
		t.Errorf("empty file: %+v", l)
	}
}

// TestPortalPage: the ISP choices, form token and heading read off the
// portal's page (the shape of portal/templates/page.html).
func TestPortalPage(t *testing.T) {
	const page = `<main>
<h1>Choose your Internet provider</h1>
<form method="post" action="/claim">
<input type="hidden" name="token" value="tok&#43;1">
<fieldset>
<legend>Internet provider</legend>
<div class="choice">
<input type="radio" id="isp-0" name="isp" value="alpha" required>
<label for="isp-0"><span class="isp-name">Alpha Broadband</span> <span class="isp-desc">Fibre to the home, 1 Gbit/s both ways.</span></label>
</div>
<div class="choice">
<input type="radio" id="isp-1" name="isp" value="beta" required checked>
<label for="isp-1"><span class="isp-name">Beta &amp; Co</span></label>
</div>
</fieldset>`
	got := portalISPs(page)
	want := []portalISP{{"alpha", "Alpha Broadband", "Fibre to the home, 1 Gbit/s both ways."}, {"beta", "Beta & Co", ""}}
	if !slices.Equal(got, want) {
		t.Errorf("ISPs %+v, want %+v", got, want)
	}
	if tok := formToken(page); tok != "tok+1" {
		t.Errorf("token %q", tok)
	}
	if h := heading(page); h != "Choose your Internet provider" {
		t.Errorf("heading %q", h)
	}
	if a := alert(page); a != "Choose your Internet provider" {
		t.Errorf("alert of a page without one %q", a)
	}
	const refused = `<h1>Choose your Internet provider</h1>
<div class="error-summary" role="alert" aria-labelledby="error-summary-title">
<h2 id="error-summary-title">There is a problem</h2>
<ul>
<li><a href="#customer_id">The customer ID or password is not right. Check them and try again.</a></li>
</ul>`
	if a := alert(refused); a != "The customer ID or password is not right. Check them and try again." {
		t.Errorf("alert %q", a)
	}
}

// TestDemo runs the whole demo (--exit) in a lab of its own, as root: the
// subscribers at their ISPs, then the onboarding of s6 through the portal
// with a Go HTTP client and its handover to beta; the lab is gone after.
func TestDemo(t *testing.T) {
	privtest.Lab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if ids, err := lab.Sweep(ctx, "demo[0-9a-f]{4}"); len(ids) > 0 {
		t.Logf("removed stale labs %v (%v)", ids, err)
	}
	bin := filepath.Join(t.TempDir(), "ispmux")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../cmd/ispmux").CombinedOutput(); err != nil {
		t.Fatalf("build ispmux: %v\n%s", err, out)
	}
	executable = func() (string, error) { return bin, nil }
	defer func() { executable = os.Executable }()
	var b [2]byte
	_, _ = rand.Read(b[:])
	id := "demo" + hex.EncodeToString(b[:])

	var out, errOut bytes.Buffer
	start := time.Now()
	err := Main(ctx, []string{"--id", id, "--exit"}, &out, &errOut)
	t.Logf("demo took %v", time.Since(start).Round(100*time.Millisecond))
	if err != nil {
		t.Fatalf("demo: %v\n%s%s", err, out.String(), errOut.String())
	}
	s := out.String()
	for _, re := range []string{
		`(?m)^s1 +02:00:00:00:01:01 +c-s1 +alpha +100\.64\.0\.1\d\d/24 +ok `,
		`(?m)^s2 +02:00:00:00:01:02 +c-s2 +beta +100\.64\.0\.1\d\d/24 +ok `,
		`(?m)^s4 +02:00:00:00:01:04 .* - +refused`,
		`(?m)^s6 +02:00:00:00:01:06 +- +\(none yet\) +100\.72\.0\.\d+/24 \(onboarding`,
		`option 114 \(captive-portal\): https://portal\.ispmux\.test/api/captive`,
		`DNS 203\.0\.113\.80 \(the portal\)`,
		`garden DNS: www\.beta\.example asked of 8\.8\.8\.8 → 203\.0\.113\.80 \(the portal\)`,
		`ping 198\.51\.100\.10 \(the ISP host\) → no answer`,
		`GET http://example\.com/ → 302 Found, Location: https://portal\.ispmux\.test/`,
		`(?m)^ +beta +Beta Telecom `,
		`POST /claim isp=beta customer_id=c-new password=… → 303 See Other`,
		`handover: s6 on beta with 100\.64\.0\.1\d\d`,
		`(?m)^ +s6 +02:00:00:00:01:06 +beta +100\.64\.0\.1\d\d +\S+ +ok$`,
		`(?m)onboarding-ended +02:00:00:00:01:06 .*handover`,
		`demo: management API on http://127\.0\.0\.1:8080 in ` + id + `-app \(GET /v1/isps: alpha \(\d+ customers\), beta \(\d+ customers\)\); tokens: \S+operator\.token`,
		`demo: lab "` + id + `" removed`,
	} {
		if !regexp.MustCompile(re).MatchString(s) {
			t.Errorf("output lacks %s", re)
		}
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", s)
	}
	nss, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(nss), id+"-") {
		t.Errorf("namespaces of lab %s left:\n%s", id, nss)
	}
}
