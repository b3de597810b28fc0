package configs

import (
	"strings"
	"testing"
	"time"
)

// TestWebhookURLErrorsHideCredentials: check's errors for a bad
// webhook_url name it without its user info, path or query (shown as
// "/…" and "?…"), where a receiver may take a credential: check's output
// is pasted into tickets, and its summary already left them out. They
// quoted the whole URL (url.Parse's error too).
func TestWebhookURLErrorsHideCredentials(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"http://u:s3cret@203.0.113.5/s3cret?key=s3cret", `"http://203.0.113.5/…?…" is http and its host is not loopback`},
		{"ftp://u:s3cret@hooks.example/s3cret?key=s3cret", `must be an https:// (or http://) URL, got scheme "ftp"`},
		{"https://u:s3cret@/s3cret?key=s3cret", `has no host: "https:///…?…"`},
		{"https://hooks.example/s3cret?key=s3cret#s3cret", `has a #fragment: "https://hooks.example/…?…#…"`},
		{"https://u:s3cret@hooks example/s3cret", `not a URL: invalid character " " in host name`},
	} {
		text := base + "webhook_url = \"" + c.url + "\"\nwebhook_secret_file = \"/s\"\n"
		_, err := Parse("t.toml", []byte(text))
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %v\nwant %s, without s3cret", c.url, err, c.want)
		}
	}
}

func TestWebhookErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string
	}{
		{"http to a non-loopback host", base + "webhook_url = \"http://203.0.113.5/hook\" #!A\nwebhook_secret_file = \"/etc/ispmux/alpha.whsec\"\n",
			[]string{`A isp[0].webhook_url: "http://203.0.113.5/…" is http and its host is not loopback`}},
		{"http to a name", base + "webhook_url = \"http://hooks.example/x\" #!A\nwebhook_secret_file = \"/s\"\n",
			[]string{`A isp[0].webhook_url: "http://hooks.example/…" is http and its host is not loopback`}},
		{"not http", base + "webhook_url = \"ftp://hooks.example/x\" #!A\nwebhook_secret_file = \"/s\"\n",
			[]string{`A isp[0].webhook_url: must be an https:// (or http://) URL`}},
		{"relative url", base + "webhook_url = \"/hook\" #!A\nwebhook_secret_file = \"/s\"\n",
			[]string{`A isp[0].webhook_url: must be an https:// (or http://) URL`}},
		{"no host", base + "webhook_url = \"https:///hook\" #!A\nwebhook_secret_file = \"/s\"\n",
			[]string{`A isp[0].webhook_url: has no host`}},
		{"secret missing", head + acc0 + strings.Replace(isp0, "[[isp]]", "[[isp]] #!A", 1) + "webhook_url = \"https://hooks.example/x\"\n",
			[]string{`A isp[0].webhook_secret_file: missing (required with webhook_url)`}},
		{"secret relative, ca with http", base + "webhook_url = \"http://127.0.0.1:9/x\"\nwebhook_secret_file = \"s.txt\" #!A\nwebhook_ca_file = \"/ca.pem\" #!B\n",
			[]string{
				`A isp[0].webhook_secret_file: must be an absolute path, got "s.txt"`,
				`B isp[0].webhook_ca_file: only used with an https:// webhook_url`,
			}},
		{"keys without url", base + "webhook_secret_file = \"/s\" #!A\nwebhook_insecure = true #!B\n",
			[]string{
				`A isp[0].webhook_secret_file: webhook_url is not set`,
				`B isp[0].webhook_insecure: webhook_url is not set`,
			}},
		{"secret is a token file", base + "token_files = [\"/t/a\"]\nwebhook_url = \"https://h.example/\"\nwebhook_secret_file = \"/t/a\" #!A\n",
			[]string{`A isp[0].webhook_secret_file: /t/a is already named by isp[0].token_files[0]`}},
		{"one secret for two isps", base + "webhook_url = \"https://h.example/\"\nwebhook_secret_file = \"/s\"\n" + isp1 + "webhook_url = \"https://h.example/\"\nwebhook_secret_file = \"/s\" #!A\n",
			[]string{`A isp[1].webhook_secret_file: /s is already the webhook secret of isp[0]`}},
		{"retry max", base + "webhook_url = \"https://h.example/\"\nwebhook_secret_file = \"/s\"\nwebhook_retry_max = \"2h\" #!A\n" + isp1 + "webhook_url = \"https://h.example/\"\nwebhook_secret_file = \"/s2\"\nwebhook_retry_max = \"soon\" #!B\n",
			[]string{
				`A isp[0].webhook_retry_max: must be 1s..1h, got 2h0m0s`,
				`B isp[1].webhook_retry_max: not a duration`,
			}},
		{"wrong type", base + "webhook_insecure = \"yes\" #!A\n",
			[]string{`A isp[0].webhook_insecure: expected a boolean`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantParseErrors(t, tt.text, tt.want) })
	}
}

func TestWebhookOK(t *testing.T) {
	text := base + "webhook_url = \"https://hooks.alpha.example/ispmux\"\nwebhook_secret_file = \"/etc/ispmux/alpha.whsec\"\nwebhook_ca_file = \"/etc/ispmux/alpha-ca.pem\"\n" +
		isp1 + "webhook_url = \"http://192.0.2.80:9000/hook\"\nwebhook_insecure = true\nwebhook_secret_file = \"/etc/ispmux/beta.whsec\"\nwebhook_retry_max = \"10s\"\n" +
		"[[isp]]\nname = \"gamma\"\nuplink = \"upc\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\nwebhook_url = \"http://[::1]:8000/\"\nwebhook_secret_file = \"/g\"\n" +
		"[[isp]]\nname = \"delta\"\nuplink = \"upd\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\n"
	c, err := Parse("t.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	a, b, g, d := c.ISPs[0], c.ISPs[1], c.ISPs[2], c.ISPs[3]
	if a.WebhookURL != "https://hooks.alpha.example/ispmux" || a.WebhookCAFile != "/etc/ispmux/alpha-ca.pem" || a.WebhookRetryMaxDur != DefaultWebhookRetryMax {
		t.Errorf("alpha %+v", a)
	}
	if !b.WebhookInsecure || b.WebhookRetryMaxDur != 10*time.Second || b.WebhookSecretFile != "/etc/ispmux/beta.whsec" {
		t.Errorf("beta %+v", b)
	}
	if g.WebhookURL != "http://[::1]:8000/" {
		t.Errorf("gamma %+v", g)
	}
	if d.WebhookURL != "" || d.WebhookRetryMaxDur != DefaultWebhookRetryMax {
		t.Errorf("delta %+v", d)
	}
	// check's summary names each ISP's webhook by its scheme and host, "/…"
	// for a path (a path or query may hold the receiver's own credential), with its
	// back-off cap, CA file and insecure flag; it said nothing of them.
	sum := c.Summary()
	for _, want := range []string{
		`, webhook to https://hooks.alpha.example/… (retry max 5m0s, ca /etc/ispmux/alpha-ca.pem), 0 subscriber(s)`,
		`, webhook to http://192.0.2.80:9000/… (retry max 10s, insecure), 0 subscriber(s)`,
		`, webhook to http://[::1]:8000 (retry max 5m0s), 0 subscriber(s)`,
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	if strings.Contains(sum, "hooks.alpha.example/ispmux") || strings.Contains(sum, ":9000/hook") {
		t.Errorf("summary shows a webhook's path:\n%s", sum)
	}
	if line := strings.SplitAfter(sum, "isp delta")[1]; strings.Contains(strings.SplitN(line, "\n", 2)[0], "webhook") {
		t.Errorf("delta has no webhook, its summary line names one: %s", line)
	}
}
