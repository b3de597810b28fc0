package appliance

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ispmux/ispmux/configs"
)

// A reload whose webhooks partly fail (webhooks.Manager.Reload applies
// each ISP's on its own: beta's fails, alpha's is applied) recorded none
// of them in force: ispsInForce kept alpha's webhook settings from before.
// A later reload whose file lacks alpha (renamed or taken out: "its API
// tokens and webhook stay as they are until a restart") gave alpha those
// old settings back: its webhook, added by the first reload and running,
// was removed (or a rotated URL/secret reverted). The case
// TestReloadPartialKeepsTokensInForce fixed for tokens, for webhooks.
func TestReloadPartialWebhooksKeepInForce(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret := write("alpha.whsec", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	alpha := "[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\ndhcp_servers = [\"192.0.2.1\"]\n"
	beta := "[[isp]]\nname = \"beta\"\nuplink = \"upa\"\nvlan = 7\naddress = \"198.51.100.2/24\"\nnext_hop = \"198.51.100.1\"\n"
	head := "version = 1\n[[access]]\ninterface = \"acc0\"\naddress = \"100.64.0.1\"\n"
	parse := func(s string) *configs.Config {
		c, err := configs.Parse("t.toml", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := reloadRig(t, parse(head+alpha+beta))
	alphaHook := "webhook_url = \"http://127.0.0.1:9/alpha\"\nwebhook_secret_file = \"" + secret + "\"\n"
	betaHook := "webhook_url = \"http://127.0.0.1:9/beta\"\nwebhook_secret_file = \"" + filepath.Join(dir, "missing.whsec") + "\"\n"
	if err := a.Reload(parse(head + alpha + alphaHook + beta + betaHook)); err == nil {
		t.Fatal("beta's webhook with a missing secret file reloaded without error")
	}
	if _, ok := a.hooks.StatusOf("alpha"); !ok {
		t.Fatal("alpha's webhook was not applied by the partly failed reload")
	}
	// alpha taken out of the file (a change that needs a restart).
	if err := a.Reload(parse(head + beta)); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.hooks.StatusOf("alpha"); !ok {
		t.Error("alpha's webhook, in force since the first reload, was removed by a reload whose file lacks alpha")
	}
}
