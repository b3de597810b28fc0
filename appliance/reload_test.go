package appliance

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/api"
	"github.com/ispmux/ispmux/auth"
	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/dhcpproxy"
	"github.com/ispmux/ispmux/engine"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
	"github.com/ispmux/ispmux/webhooks"
)

// writeTestFile writes s and a newline to dir/name (mode 0600) and
// returns its path.
func writeTestFile(t *testing.T, dir, name, s string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// parseTestConfig parses the configuration text s.
func parseTestConfig(t *testing.T, s string) *configs.Config {
	t.Helper()
	c, err := configs.Parse("t.toml", []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// betaConfig is a configuration of one access (acc0) and one ISP (beta, on
// upa), the last line beta's: a test adds beta's keys after it.
const betaConfig = "version = 1\n[[access]]\ninterface = \"acc0\"\naddress = \"100.64.0.1\"\n" +
	"[[isp]]\nname = \"beta\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\n"

// reloadRig is the control plane of an Appliance built from cfg, as
// Start builds it, without ports (what Reload touches).
func reloadRig(t *testing.T, cfg *configs.Config) *Appliance {
	t.Helper()
	return reloadRigFor(t, cfg, 64)
}

// reloadRigFor is reloadRig with tables (MAC table, FIB, devices) for
// capacity subscribers.
func reloadRigFor(t *testing.T, cfg *configs.Config, capacity int) *Appliance {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st, err := subscribers.Open(filepath.Join(t.TempDir(), "s.db"), subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	state, err := engine.NewState([]engine.PortConfig{{Name: "acc0", AccessVLANs: []uint16{0}}, {Name: "upa", Uplinks: map[uint16]uint8{0: 0}}}, capacity, 1)
	if err != nil {
		t.Fatal(err)
	}
	a := &Appliance{cfg: cfg, log: log, names: []string{"acc0", "upa"}, state: state, started: time.Now(), subs: cfg.Subscribers, store: st}
	a.reg = registry.New()
	a.ctl = engine.NewControl(state, nil, log)
	var isps []string
	for _, p := range cfg.ISPs {
		isps = append(isps, p.Name)
	}
	a.ten = tenants.New(tenants.Config{ISPs: isps, MaxDevices: capacity}, st, a.reg, nil, a.ctl, log)
	a.dhcp = dhcpproxy.New(dhcpproxy.Config{Limits: dhcpLimits(cfg.DHCP)}, st, a.reg, a.ctl, nil, log)
	setDHCPBudget(a.ctl, cfg.DHCP)
	if _, err := a.syncRegistrations(); err != nil {
		t.Fatal(err)
	}
	if a.hooks, err = webhooks.New(cfg, st, log); err != nil {
		t.Fatal(err)
	}
	if a.tokens, err = auth.LoadTokens(auth.TokenFilesFromConfig(cfg)); err != nil {
		t.Fatal(err)
	}
	a.api = api.New(cfg.API, a.ten, a.tokens, log)
	return a
}

// TestReloadKeepsRemovedISPsAccess: the [[isp]] list is read at start
// only ("isp" is reported as a change that needs a restart, not applied).
// A SIGHUP after an [[isp]] was taken out of the file (or renamed) dropped
// that running ISP's API tokens and stopped its webhook, while the ISP was
// still served; they now stay until a restart. The ISP's token files are
// still re-read when the file has it (rotation).
func TestReloadKeepsRemovedISPsAccess(t *testing.T) {
	dir := t.TempDir()
	tok := "0123456789abcdefghijklmnopqrstuvwxyz"
	write := func(name, s string) string { return writeTestFile(t, dir, name, s) }
	tokFile := write("beta.token", tok)
	tok2 := "zyxwvutsrqponmlkjihgfedcba9876543210"
	tokFile2 := write("beta2.token", tok2)
	secret := write("beta.whsec", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	text := func(withBeta bool, tokFile string) string {
		s := "version = 1\n[[access]]\ninterface = \"acc0\"\naddress = \"100.64.0.1\"\n" +
			"[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\ndhcp_servers = [\"192.0.2.1\"]\n"
		if withBeta {
			s += "[[isp]]\nname = \"beta\"\nuplink = \"upa\"\nvlan = 7\naddress = \"198.51.100.2/24\"\nnext_hop = \"198.51.100.1\"\n" +
				"token_files = [\"" + tokFile + "\"]\nwebhook_url = \"http://127.0.0.1:9/hook\"\nwebhook_secret_file = \"" + secret + "\"\n"
		}
		return s
	}
	cfg, err := configs.Parse("t.toml", []byte(text(true, tokFile)))
	if err != nil {
		t.Fatal(err)
	}
	a := reloadRig(t, cfg)
	if p, ok := a.tokens.Lookup(tok); !ok || p.ISP != "beta" {
		t.Fatalf("before: beta's token: %+v %v", p, ok)
	}
	if _, ok := a.hooks.StatusOf("beta"); !ok {
		t.Fatalf("before: beta has no webhook")
	}
	next, err := configs.Parse("t.toml", []byte(text(false, tokFile)))
	if err != nil {
		t.Fatal(err)
	}
	if got := restartOnly(a.cfg, next); len(got) == 0 {
		t.Fatalf("restartOnly reports nothing")
	}
	if err := a.Reload(next); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if len(a.cfg.ISPs) != 2 {
		t.Fatalf("running ISPs changed: %d", len(a.cfg.ISPs))
	}
	// What needs a restart stays visible (ctl status) after the log line.
	if pr := a.restartPending.Load(); pr == nil || !slices.Equal(pr.sections, restartOnly(a.cfg, next)) {
		t.Errorf("restart pending %+v, want %v", pr, restartOnly(a.cfg, next))
	}
	if _, ok := a.tokens.Lookup(tok); !ok {
		t.Errorf("the running ISP beta's API token stopped working, though the isp change was reported as not applied (needs a restart)")
	}
	if _, ok := a.hooks.StatusOf("beta"); !ok {
		t.Errorf("the running ISP beta's webhook was removed, though the isp change was reported as not applied (needs a restart)")
	}
	// beta back in the file with another token file: rotated.
	rot, err := configs.Parse("t.toml", []byte(text(true, tokFile2)))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(rot); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if pr := a.restartPending.Load(); pr == nil || len(pr.sections) != 0 {
		t.Errorf("restart pending %+v after a reload of a file the running configuration matches", pr)
	}
	if p, ok := a.tokens.Lookup(tok2); !ok || p.ISP != "beta" {
		t.Errorf("rotated token: %+v %v", p, ok)
	}
	if _, ok := a.tokens.Lookup(tok); ok {
		t.Error("the token file taken out of the file still works")
	}
}

// TestReloadWarnsAPIListener: an appliance started without token files
// serves no API listener; a reload that adds some reads them but cannot
// open the listener, and says so (before, it logged nothing and the API
// stayed closed).
func TestReloadWarnsAPIListener(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "op.token")
	if err := os.WriteFile(tok, []byte("0123456789abcdefghijklmnopqrstuvwxyz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "version = 1\n[[access]]\ninterface = \"acc0\"\naddress = \"100.64.0.1\"\n" +
		"[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\ndhcp_servers = [\"192.0.2.1\"]\n"
	cfg, err := configs.Parse("t.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServesAPI() {
		t.Fatal("no token files, yet ServesAPI")
	}
	a := reloadRig(t, cfg)
	var logs bytes.Buffer
	a.log = slog.New(slog.NewTextHandler(&logs, nil))
	next, err := configs.Parse("t.toml", []byte(base+"[api]\noperator_token_file = \""+tok+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(next); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if !strings.Contains(logs.String(), "listener opens at the next restart") {
		t.Errorf("no warning that the API listener needs a restart:\n%s", logs.String())
	}
}

// TestReloadRemovedISPKeepsTokensInForce: beta's token file is rotated by
// a reload (tok -> tok2, the old one retired, say leaked), then a later
// reload's file lacks beta: beta keeps the settings in force (tok2), not
// start's (before, reloadedISPs started from a.cfg.ISPs and the retired
// token came back).
func TestReloadRemovedISPKeepsTokensInForce(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string { return writeTestFile(t, dir, name, s) }
	tok := "0123456789abcdefghijklmnopqrstuvwxyz"
	tok2 := "zyxwvutsrqponmlkjihgfedcba9876543210"
	tokFile, tokFile2 := write("beta.token", tok), write("beta2.token", tok2)
	text := func(withBeta bool, tf string) string {
		s := "version = 1\n[[access]]\ninterface = \"acc0\"\naddress = \"100.64.0.1\"\n" +
			"[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\ndhcp_servers = [\"192.0.2.1\"]\n"
		if withBeta {
			s += "[[isp]]\nname = \"beta\"\nuplink = \"upa\"\nvlan = 7\naddress = \"198.51.100.2/24\"\nnext_hop = \"198.51.100.1\"\n" +
				"token_files = [\"" + tf + "\"]\n"
		}
		return s
	}
	parse := func(s string) *configs.Config { return parseTestConfig(t, s) }
	a := reloadRig(t, parse(text(true, tokFile)))
	if err := a.Reload(parse(text(true, tokFile2))); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.tokens.Lookup(tok); ok {
		t.Fatal("rotation did not retire tok")
	}
	if err := a.Reload(parse(text(false, ""))); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.tokens.Lookup(tok2); !ok {
		t.Error("beta's token in force (tok2) stopped working")
	}
	if _, ok := a.tokens.Lookup(tok); ok {
		t.Error("beta's retired token (tok, from the start-time file) works again")
	}
}

// TestReloadBadTokenFileReportedOnce: a token file broken by an edit is
// refused by a reload, the tokens in force stay, and the error names the
// file once (the API's own re-read of the same files reported it a second
// time: "api tokens: … token file F: …\napi: … token file F: …").
func TestReloadBadTokenFileReportedOnce(t *testing.T) {
	dir := t.TempDir()
	tok := "0123456789abcdefghijklmnopqrstuvwxyz"
	tokFile := writeTestFile(t, dir, "beta.token", tok)
	text := betaConfig + "token_files = [\"" + tokFile + "\"]\n"
	a := reloadRig(t, parseTestConfig(t, text))
	writeTestFile(t, dir, "beta.token", "short")
	err := a.Reload(parseTestConfig(t, text))
	if err == nil {
		t.Fatal("a reload with a broken token file succeeded")
	}
	if n := strings.Count(err.Error(), tokFile); n != 1 {
		t.Errorf("the reload's error names the token file %d times, want once:\n%v", n, err)
	}
	if _, ok := a.tokens.Lookup(tok); !ok {
		t.Error("the token in force stopped working after a refused reload")
	}
}

// TestReloadRotatesInPlaceDespiteBrokenNewFile: a token rewritten in its
// file (retired, say leaked) stops working at the reload even when the
// same reload's new token file is broken, and the error names that file.
func TestReloadRotatesInPlaceDespiteBrokenNewFile(t *testing.T) {
	dir := t.TempDir()
	tok, tok2 := "0123456789abcdefghijklmnopqrstuvwxyz", "zyxwvutsrqponmlkjihgfedcba9876543210"
	tokFile := writeTestFile(t, dir, "beta.token", tok)
	text := func(files string) string {
		return betaConfig + "token_files = [" + files + "]\n"
	}
	a := reloadRig(t, parseTestConfig(t, text(`"`+tokFile+`"`)))
	writeTestFile(t, dir, "beta.token", tok2)
	broken := writeTestFile(t, dir, "beta-2.token", "short")
	err := a.Reload(parseTestConfig(t, text(`"`+tokFile+`", "`+broken+`"`)))
	if err == nil || strings.Count(err.Error(), broken) != 1 {
		t.Errorf("reload with a broken new token file: %v, want its error naming %s once", err, broken)
	}
	if _, ok := a.tokens.Lookup(tok); ok {
		t.Error("the token retired in its file still works")
	}
	if _, ok := a.tokens.Lookup(tok2); !ok {
		t.Error("the token written in its place does not work")
	}
}

// TestReloadRefusedShows: a refused reload (a broken file the reload
// cannot apply, or one that does not load) is in ctl status ("last
// reload") and the metrics (ispmux_config_last_reload_successful 0) until
// a reload applies the file; before, only the log said it, and systemctl
// reload succeeds either way (a trial).
func TestReloadRefusedShows(t *testing.T) {
	dir := t.TempDir()
	tok := "0123456789abcdefghijklmnopqrstuvwxyz"
	tokFile := writeTestFile(t, dir, "beta.token", tok)
	text := betaConfig + "token_files = [\"" + tokFile + "\"]\n"
	a := reloadRig(t, parseTestConfig(t, text))
	if c := a.configState(); !c.LastReloadOK || c.LastSuccess.IsZero() {
		t.Fatalf("at start: %+v", c)
	}
	writeTestFile(t, dir, "beta.token", "short")
	if err := a.Reload(parseTestConfig(t, text)); err == nil {
		t.Fatal("a reload with a broken token file succeeded")
	}
	if c := a.configState(); c.LastReloadOK {
		t.Errorf("after a refused reload: %+v, want LastReloadOK false", c)
	}
	if o := a.lastReload.Load(); o == nil || !strings.Contains(o.err, tokFile) {
		t.Errorf("the refused reload's error kept: %+v", o)
	}
	writeTestFile(t, dir, "beta.token", tok)
	if err := a.Reload(parseTestConfig(t, text)); err != nil {
		t.Fatal(err)
	}
	if c := a.configState(); !c.LastReloadOK {
		t.Errorf("after a reload applied the file: %+v", c)
	}
	a.NoteReloadRefused(errors.New("t.toml:3: isp.name: expected a string"))
	if c := a.configState(); c.LastReloadOK || c.LastReloadPartial {
		t.Errorf("after a file that does not load: %+v, want refused, not in part", c)
	}
}

// TestReloadMissingTokenFileInPart: a reload whose token file is missing
// applies the rest of the file, and ctl status says "APPLIED IN PART";
// the metrics say so too (ispmux_config_last_reload_partial 1, which the
// suggested IspmuxReloadAppliedInPart alerts on), and so does the error
// the log line is chosen by (AppliedInPart). Before, the metrics could
// only say 0 (not successful), and the one alert on it, and its summary,
// said "refused". ctl status shows, after the error (which names the
// key), where the key is in the file (NoteReloadWhere, as check names it):
// it named no file or line.
func TestReloadMissingTokenFileInPart(t *testing.T) {
	dir := t.TempDir()
	tokFile := writeTestFile(t, dir, "beta.token", "0123456789abcdefghijklmnopqrstuvwxyz")
	text := betaConfig + "token_files = [\"" + tokFile + "\"]\n"
	a := reloadRig(t, parseTestConfig(t, text))
	if err := os.Remove(tokFile); err != nil {
		t.Fatal(err)
	}
	err := a.Reload(parseTestConfig(t, text))
	if err == nil || !AppliedInPart(err) {
		t.Fatalf("reload with its token file missing: %v, want applied in part", err)
	}
	if o := a.lastReload.Load(); o == nil || !o.partial {
		t.Errorf("status: %+v, want applied in part", o)
	}
	if c := a.configState(); c.LastReloadOK || !c.LastReloadPartial {
		t.Errorf("metrics: %+v, want LastReloadOK false and LastReloadPartial true", c)
	}
	where := "/etc/ispmux/ispmux.toml:12: isp[0].token_files[0]"
	a.NoteReloadWhere([]string{where})
	var st ctlsock.Status
	if a.reloadStatus(&st); !st.ReloadPartial || !strings.HasPrefix(st.ReloadRefused, err.Error()+"\n") || !strings.HasSuffix(st.ReloadRefused, "\nat "+where) {
		t.Errorf("ctl status: %q, want the error, then %q", st.ReloadRefused, "at "+where)
	}
	if AppliedInPart(errors.New("reload refused: x")) {
		t.Error("a refused reload's error taken for one applied in part")
	}
}

// TestReloadWarnsRenamedAccess: a reload of a file where a running access
// (or ISP) has another name warns that its bindings end at the restart:
// a binding is stored under its access's name (a trial gave acc0 a name
// and lost every binding on it at the restart, warned of nothing).
func TestReloadWarnsRenamedAccess(t *testing.T) {
	base := betaConfig
	a := reloadRig(t, parseTestConfig(t, base))
	for _, id := range []string{"b-1", "b-2"} {
		if _, err := a.ten.CreateCustomer(context.Background(), tenants.Actor{Kind: tenants.ActorOperator, Name: "test"}, "beta", tenants.CustomerInput{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	a.log = slog.New(slog.NewTextHandler(&logs, nil))
	renamed := strings.Replace(base, "interface = \"acc0\"\n", "name = \"main\"\ninterface = \"acc0\"\n", 1)
	renamed = strings.Replace(renamed, "name = \"beta\"", "name = \"betanet\"", 1)
	_ = a.Reload(parseTestConfig(t, renamed))
	// The ISP's with what the restart strands (a trial's said bindings=0
	// of an ISP with 200k customers).
	for _, want := range []string{"access acc0 is not in the file", "ISP beta is not in the file", "customers=2 devices=0"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no warning %q:\n%s", want, logs.String())
		}
	}
}

// TestReloadLogLevelNeedsNoRestart: a reload that changes only
// [appliance] log_level reports nothing pending a restart (ispmux run
// applies it on SIGHUP; it needed a restart, so debug could not be turned
// on while a subscriber was on the phone: a trial).
func TestReloadLogLevelNeedsNoRestart(t *testing.T) {
	base := strings.Replace(betaConfig, "version = 1\n", "version = 1\n[appliance]\nlog_level = \"info\"\n", 1)
	a := reloadRig(t, parseTestConfig(t, base))
	next := parseTestConfig(t, strings.Replace(base, "log_level = \"info\"", "log_level = \"debug\"", 1))
	if got := restartOnly(a.cfg, next); len(got) != 0 {
		t.Errorf("a log_level change: restart pending %v, want nothing", got)
	}
	other := parseTestConfig(t, strings.Replace(base, "log_level = \"info\"", "log_level = \"debug\"\nevent_retention = 5000", 1))
	if got := restartOnly(a.cfg, other); !slices.Equal(got, []string{"appliance"}) {
		t.Errorf("log_level and event_retention changed: restart pending %v, want [appliance]", got)
	}
}

// TestReloadDHCP: a reload applies [dhcp] (a trial's operator, in an
// outage's recovery, could not raise the rate limits without a restart
// that would end every transaction): the proxy's limits, the datapath's
// DHCP budget kept above the per-MAC limit, and no restart pending for
// it; a [datapath] change beside it is still pending.
func TestReloadDHCP(t *testing.T) {
	a := reloadRig(t, parseTestConfig(t, betaConfig))
	before := a.dhcp.Limits()
	if before.MACRate != 4 || before.Timeout != 4*time.Second {
		t.Fatalf("limits before %+v, want the defaults", before)
	}
	text := betaConfig + "[dhcp]\ntimeout = \"9s\"\nmac_rate = 50\nmac_burst = 100\ncircuit_rate = 2000\nmax_bindings_per_circuit = 7\nclient_lease_max = \"2m\"\n"
	if err := a.Reload(parseTestConfig(t, text)); err != nil {
		t.Fatal(err)
	}
	want := before
	want.Timeout, want.MACRate, want.MACBurst, want.CircuitRate, want.MaxBindingsPerCircuit, want.ClientLeaseMax = 9*time.Second, 50, 100, 2000, 7, 2*time.Minute
	if got := a.dhcp.Limits(); got != want {
		t.Errorf("limits after the reload %+v, want %+v", got, want)
	}
	if rate, burst := a.ctl.DHCPBudget(); rate != 100 || burst != 200 {
		t.Errorf("datapath DHCP budget %v/s burst %v, want twice the per-MAC limit (100, 200)", rate, burst)
	}
	if pr := a.restartPending.Load(); pr == nil || len(pr.sections) != 0 {
		t.Errorf("restart pending %+v after a [dhcp] change, want nothing", pr)
	}
	if got := restartOnly(a.cfg, parseTestConfig(t, text+"[datapath]\nbatch = 32\n")); !slices.Equal(got, []string{"datapath"}) {
		t.Errorf("[dhcp] and [datapath] changed: restart pending %v, want [datapath]", got)
	}
}
