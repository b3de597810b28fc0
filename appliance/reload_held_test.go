package appliance

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/engine"
	"github.com/ispmux/ispmux/tenants"
)

// TestReloadStaticHeldByAPI: a [[subscriber]] entry with an ip for a
// MAC the API attached to another ISP is a conflict: "A reload never
// overrides a device the API or a claim attached: the conflict is logged,
// the API's choice stays" (docs/ARCHITECTURE.md), and the sync reports
// "the configuration's alpha/... is not applied". Yet the reload bound the
// file's static address at the file's ISP: the datapath forwarded the
// device to alpha while its registration (the store, the API, beta's
// view) said beta. The held entry's address is not bound now.
func TestReloadStaticHeldByAPI(t *testing.T) {
	const mac = "02:00:00:00:00:09"
	text := "version = 1\n[[access]]\ninterface = \"acc0\"\naddress = \"100.64.0.1\"\n" +
		"[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\ndhcp_servers = [\"192.0.2.1\"]\n" +
		"[[isp]]\nname = \"beta\"\nuplink = \"upa\"\nvlan = 7\naddress = \"198.51.100.2/24\"\nnext_hop = \"198.51.100.1\"\ndhcp_servers = [\"198.51.100.1\"]\n"
	cfg, err := configs.Parse("t.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	a := reloadRig(t, cfg)
	ctx := context.Background()
	op := tenants.Actor{Kind: tenants.ActorOperator, Name: "test"}
	if _, err := a.ten.CreateCustomer(ctx, op, "beta", tenants.CustomerInput{ID: "c-1", Password: "correct horse battery", DeviceLimit: 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ten.AttachDevice(ctx, op, "beta", tenants.DeviceInput{MAC: mac, CustomerID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	next, err := configs.Parse("t.toml", []byte(text+"[[subscriber]]\nmac = \""+mac+"\"\nisp = \"alpha\"\nip = \"192.0.2.50\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(next); err != nil {
		t.Fatalf("reload: %v", err)
	}
	m := next.Subscribers[0].HWAddr
	if reg, ok := a.reg.Lookup(engine.MAC48(m)); !ok || reg.ISP != "beta" {
		t.Fatalf("the API's choice did not stay: %+v %v", reg, ok)
	}
	for _, b := range a.ctl.Bindings() {
		if b.MAC == engine.MAC48(m) {
			t.Errorf("the conflicting config entry was applied anyway: binding %s at ISP %s (%v, static %v), while the registration says beta",
				engine.MACString(b.MAC), a.cfg.ISPs[b.ISP].Name, b.IP, b.Static)
		}
	}
}

// TestReloadPartialKeepsTokensInForce: a reload rotates beta's token
// (tok retired, tok2 in force: the token files were applied) while beta's
// new webhook fails to start (its secret file is missing: "reload
// incomplete", the webhook in force stays). The settings in force
// (ispsInForce) were then not updated at all, so a later reload whose file
// lacked beta gave beta start's token files back: the retired token worked
// again (the case TestReloadRemovedISPKeepsTokensInForce fixed, reached
// through a partly failed reload). Tokens and webhooks are recorded in
// force each when applied.
func TestReloadPartialKeepsTokensInForce(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string { return writeTestFile(t, dir, name, s) }
	tok := "0123456789abcdefghijklmnopqrstuvwxyz"
	tok2 := "zyxwvutsrqponmlkjihgfedcba9876543210"
	tokFile, tokFile2 := write("beta.token", tok), write("beta2.token", tok2)
	text := func(withBeta bool, tf, extra string) string {
		s := "version = 1\n[[access]]\ninterface = \"acc0\"\naddress = \"100.64.0.1\"\n" +
			"[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\ndhcp_servers = [\"192.0.2.1\"]\n"
		if withBeta {
			s += "[[isp]]\nname = \"beta\"\nuplink = \"upa\"\nvlan = 7\naddress = \"198.51.100.2/24\"\nnext_hop = \"198.51.100.1\"\n" +
				"token_files = [\"" + tf + "\"]\n" + extra
		}
		return s
	}
	parse := func(s string) *configs.Config { return parseTestConfig(t, s) }
	a := reloadRig(t, parse(text(true, tokFile, "")))
	hook := "webhook_url = \"http://127.0.0.1:9/hook\"\nwebhook_secret_file = \"" + filepath.Join(dir, "missing.whsec") + "\"\n"
	if err := a.Reload(parse(text(true, tokFile2, hook))); err == nil {
		t.Fatal("a webhook with a missing secret file reloaded without error")
	}
	if _, ok := a.tokens.Lookup(tok); ok {
		t.Fatal("the rotation did not retire tok")
	}
	if _, ok := a.tokens.Lookup(tok2); !ok {
		t.Fatal("the rotation did not apply tok2")
	}
	if err := a.Reload(parse(text(false, "", ""))); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.tokens.Lookup(tok2); !ok {
		t.Error("beta's token in force (tok2) stopped working")
	}
	if _, ok := a.tokens.Lookup(tok); ok {
		t.Error("beta's retired token (tok) works again")
	}
}
