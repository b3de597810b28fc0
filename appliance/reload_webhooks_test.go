package appliance

import (
	"path/filepath"
	"testing"

	"github.com/ispmux/ispmux/configs"
)

// A reload moves alpha's webhook to a new URL (applied: the manager sends
// there) while beta's new secret file is missing ("reload incomplete",
// beta's webhook in force stays). A later reload whose file lacks alpha
// must keep alpha's webhook in force (the new URL), not revive the URL
// the operator replaced: reloadedISPs' promise "a running ISP's ... webhook
// [is] never ... turned back to start's".
func TestPartialWebhookReloadKeepsOthersInForce(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string { return writeTestFile(t, dir, name, s) }
	sec := write("a.whsec", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	secB := write("b.whsec", "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX")
	text := func(withAlpha bool, alphaURL, betaSecret string) string {
		s := "version = 1\n[[access]]\ninterface = \"acc0\"\naddress = \"100.64.0.1\"\n"
		if withAlpha {
			s += "[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\ndhcp_servers = [\"192.0.2.1\"]\n" +
				"webhook_url = \"" + alphaURL + "\"\nwebhook_secret_file = \"" + sec + "\"\n"
		}
		s += "[[isp]]\nname = \"beta\"\nuplink = \"upa\"\nvlan = 7\naddress = \"198.51.100.2/24\"\nnext_hop = \"198.51.100.1\"\n" +
			"webhook_url = \"http://127.0.0.1:9/beta\"\nwebhook_secret_file = \"" + betaSecret + "\"\n"
		return s
	}
	parse := func(s string) *configs.Config { return parseTestConfig(t, s) }
	// Told apart by their ports: the status shows a URL's scheme and host
	// only (configs.WebhookShown).
	const old, neu = "http://127.0.0.1:9/old", "http://127.0.0.1:10/new"
	shown := "http://127.0.0.1:10/…"
	a := reloadRig(t, parse(text(true, old, secB)))
	if err := a.Reload(parse(text(true, neu, filepath.Join(dir, "missing.whsec")))); err == nil {
		t.Fatal("beta's missing secret file reloaded without error")
	}
	if st, _ := a.hooks.StatusOf("alpha"); st.URL != shown {
		t.Fatalf("alpha's new URL not applied: %q", st.URL)
	}
	_ = a.Reload(parse(text(false, "", secB)))
	if st, _ := a.hooks.StatusOf("alpha"); st.URL != shown {
		t.Errorf("alpha's webhook went back to %q, the URL the operator replaced; want %q (in force)", st.URL, shown)
	}
}
