package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ispmux/ispmux/lab"
)

// browser is a headless Chromium running inside a subscriber's namespace
// (so its DNS, HTTP and TLS go through the walled garden like a real
// device's), trusting the lab CA through its own NSS database. chromedp
// starts it through a wrapper script (`ip netns exec`) and drives it over
// the DevTools pipe (file descriptors 3 and 4, which the wrapper passes on).
type browser struct {
	Ctx    context.Context
	cancel []func()
	out    syncBuffer
}

// startBrowser starts Chromium in sub's namespace with resolver dns; hosts,
// if set, maps host names to addresses instead (what public DNS would
// answer a bound subscriber through its ISP's resolver).
func (r *rig) startBrowser(sub lab.Sub, dns string, hosts ...[2]string) *browser {
	r.t.Helper()
	if _, err := exec.LookPath("chromium"); err != nil {
		r.t.Fatalf("chromium is not installed (lab/deps.sh installs it): %v", err)
	}
	home := filepath.Join(r.dir, "browser-"+sub.Name)
	nss := filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(nss, 0o700); err != nil {
		r.t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-d", "sql:" + nss, "-N", "--empty-password"},
		{"-d", "sql:" + nss, "-A", "-t", "C,,", "-n", "ispmux-lab-ca", "-i", r.topo.Portal.CAFile},
	} {
		if out, err := exec.Command("certutil", args...).CombinedOutput(); err != nil {
			r.t.Fatalf("certutil %v: %v: %s", args, err, out)
		}
	}
	if err := r.topo.SetResolver(sub, dns); err != nil {
		r.t.Fatal(err)
	}
	wrapper := filepath.Join(home, "chromium-in-ns")
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s env HOME=%s chromium \"$@\"\n", sub.NS, home)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		r.t.Fatal(err)
	}
	b := &browser{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(wrapper), chromedp.NoSandbox, chromedp.UserDataDir(filepath.Join(home, "profile")),
		chromedp.WindowSize(1000, 900), chromedp.CombinedOutput(&b.out),
		// Navigations stay what the test asks for: no automatic https://
		// upgrade, no DNS over HTTPS (the garden's DNS is the point).
		chromedp.Flag("disable-features", "HttpsUpgrades,HttpsFirstBalancedModeAutoEnable,DnsOverHttps,MediaRouter"),
		chromedp.Flag("disable-component-update", true),
	)
	if len(hosts) > 0 {
		var rules []string
		for _, h := range hosts {
			rules = append(rules, "MAP "+h[0]+" "+h[1])
		}
		opts = append(opts, chromedp.Flag("host-resolver-rules", strings.Join(rules, ", ")))
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b.Ctx, b.cancel = ctx, []func(){cancel, acancel}
	r.t.Cleanup(b.close)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil { // starts the browser
		r.t.Fatalf("chromium in %s: %v\n%s", sub.NS, err, b.String())
	}
	// Every step after the start fails rather than waits for ever.
	tctx, tcancel := context.WithTimeout(ctx, 3*time.Minute)
	b.Ctx, b.cancel = tctx, []func(){tcancel, cancel, acancel}
	return b
}

// screenshot saves the page as name.png in the test's artefacts.
func (r *rig) screenshot(b *browser, name string) {
	r.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(b.Ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		r.t.Errorf("screenshot %s: %v after %v", name, err, time.Since(start).Round(time.Millisecond))
		return
	}
	f := filepath.Join(r.artifacts(), name+".png")
	if err := os.WriteFile(f, png, 0o644); err != nil {
		r.t.Error(err)
		return
	}
	r.t.Logf("screenshot: %s", f)
}

func (b *browser) close() {
	for _, c := range b.cancel {
		c()
	}
}

// String is Chromium's output (for failures).
func (b *browser) String() string { return fmt.Sprintf("chromium output:\n%s", b.out.String()) }
