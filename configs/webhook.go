package configs

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// DefaultWebhookRetryMax is the back-off cap of an [[isp]] that sets no
// webhook_retry_max.
const DefaultWebhookRetryMax = 5 * time.Minute

// webhooks checks the [[isp]] webhook keys: webhook_url is an absolute
// http or https URL, https unless its host is loopback or
// webhook_insecure = true (the events name customers and addresses, and
// the signature does not hide them); with it webhook_secret_file (an
// absolute path, not a token file) is required; webhook_ca_file (absolute)
// only goes with https; webhook_retry_max is 1s..1h. The files are read
// when the webhooks start (package webhooks).
func (v *validator) webhooks() {
	tokens := map[string]string{} // token file → the key that names it
	if f := v.cfg.API.OperatorTokenFile; f != "" {
		tokens[filepath.Clean(f)] = "api.operator_token_file"
	}
	for i, f := range v.cfg.API.ClaimTokenFiles {
		tokens[filepath.Clean(f)] = fmt.Sprintf("api.claim_token_files[%d]", i)
	}
	for i, p := range v.cfg.ISPs {
		for j, f := range p.TokenFiles {
			tokens[filepath.Clean(f)] = fmt.Sprintf("%s.token_files[%d]", indexKey("isp", i), j)
		}
	}
	secrets := map[string]string{}
	for i := range v.cfg.ISPs {
		p := &v.cfg.ISPs[i]
		key := indexKey("isp", i)
		p.WebhookRetryMaxDur = DefaultWebhookRetryMax
		if p.WebhookRetryMax != "" {
			if d, err := time.ParseDuration(p.WebhookRetryMax); err != nil {
				v.errorf(key+".webhook_retry_max", "not a duration (e.g. \"5m\"): %q", p.WebhookRetryMax)
			} else if d < time.Second || d > time.Hour {
				v.errorf(key+".webhook_retry_max", "must be 1s..1h, got %s", d)
			} else {
				p.WebhookRetryMaxDur = d
			}
		}
		if p.WebhookURL == "" {
			if v.c.failed(key + ".webhook_url") {
				continue
			}
			for _, k := range []struct {
				name string
				set  bool
			}{
				{"webhook_secret_file", p.WebhookSecretFile != ""},
				{"webhook_ca_file", p.WebhookCAFile != ""},
				{"webhook_insecure", p.WebhookInsecure},
				{"webhook_retry_max", p.WebhookRetryMax != ""},
			} {
				if k.set {
					v.errorf(key+"."+k.name, "webhook_url is not set (this key belongs to a webhook)")
				}
			}
			continue
		}
		https := false
		// The errors name the URL as WebhookShown does, never whole:
		// its user info, path or query may hold the receiver's
		// credential, and check's output is pasted into tickets.
		if u, err := url.Parse(p.WebhookURL); err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // *url.Error quotes the whole URL
			}
			v.errorf(key+".webhook_url", "not a URL: %v", err)
		} else {
			switch {
			case len(p.WebhookURL) > 2048:
				v.errorf(key+".webhook_url", "longer than 2048 bytes")
			case u.Scheme != "https" && u.Scheme != "http":
				v.errorf(key+".webhook_url", "must be an https:// (or http://) URL, got scheme %q", u.Scheme)
			case u.Host == "" || u.Hostname() == "":
				v.errorf(key+".webhook_url", "has no host: %q", WebhookShown(u))
			case u.Fragment != "":
				v.errorf(key+".webhook_url", "has a #fragment: %q", WebhookShown(u)+"#…")
			case u.Scheme == "http" && !p.WebhookInsecure && !IsLoopbackHost(u.Hostname()):
				v.errorf(key+".webhook_url", "%q is http and its host is not loopback: use https (webhook_ca_file for a private CA), or webhook_insecure = true to send the events in clear text", WebhookShown(u))
			default:
				https = u.Scheme == "https"
			}
		}
		file := func(name, f string) bool {
			k := key + "." + name
			switch {
			case v.c.failed(k):
				return false
			case f == "":
				v.errorf(k, "missing (required with webhook_url)")
			case !filepath.IsAbs(f):
				v.errorf(k, "must be an absolute path, got %q", f)
			default:
				return true
			}
			return false
		}
		if file("webhook_secret_file", p.WebhookSecretFile) {
			c := filepath.Clean(p.WebhookSecretFile)
			if other, ok := tokens[c]; ok {
				v.errorf(key+".webhook_secret_file", "%s is already named by %s (a webhook secret is not an API token)", p.WebhookSecretFile, other)
			} else if other, ok := secrets[c]; ok {
				v.errorf(key+".webhook_secret_file", "%s is already the webhook secret of %s (one secret per ISP)", p.WebhookSecretFile, other)
			} else {
				secrets[c] = key
			}
		}
		if p.WebhookCAFile != "" && file("webhook_ca_file", p.WebhookCAFile) && !https && !v.c.failed(key+".webhook_url") {
			if u, err := url.Parse(p.WebhookURL); err == nil && u.Scheme == "http" {
				v.errorf(key+".webhook_ca_file", "only used with an https:// webhook_url")
			}
		}
	}
}

// WebhookShown is webhook URL u as ispmux shows it everywhere (check's
// errors and summary, the webhooks' log, status and errors): its scheme
// and host, then "/…" for a path other than "/" and "?…" for a query.
// Its user info, path and query are left out: a receiver may take a
// credential in any of them (https://hooks.example/T0/B0/secret,
// ?token=), and what ispmux prints is pasted into tickets.
func WebhookShown(u *url.URL) string {
	s := u.Scheme + "://" + u.Host
	if u.Opaque != "" || (u.Path != "" && u.Path != "/") {
		s += "/…"
	}
	if u.RawQuery != "" || u.ForceQuery {
		s += "?…"
	}
	return s
}

// webhookSummary is the ISP's webhook for Summary (", webhook to
// https://hooks.example/… (retry max 5m0s)"; "" without one): where its
// events go, its back-off cap, its CA file and webhook_insecure if set.
// The URL is shown as WebhookShown shows it: a receiver's path or query
// may hold a credential of its own.
func (p *ISP) webhookSummary() string {
	if p.WebhookURL == "" {
		return ""
	}
	to := "(not a URL)"
	if u, err := url.Parse(p.WebhookURL); err == nil {
		to = WebhookShown(u)
	}
	var b strings.Builder
	fmt.Fprintf(&b, ", webhook to %s (retry max %s", to, p.WebhookRetryMaxDur)
	if p.WebhookCAFile != "" {
		fmt.Fprintf(&b, ", ca %s", p.WebhookCAFile)
	}
	if p.WebhookInsecure {
		b.WriteString(", insecure")
	}
	b.WriteString(")")
	return b.String()
}
