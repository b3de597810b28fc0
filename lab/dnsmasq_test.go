package lab

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestISPServersDoc: the configurations docs/ISP-SERVERS.md shows are the
// lab's, byte for byte (ISPServerConfig): the block after each
// "<!-- lab isp-config KIND -->" marker.
func TestISPServersDoc(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "ISP-SERVERS.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, server := range []string{ServerKea, ServerDnsmasq} {
		want, err := ISPServerConfig(server)
		if err != nil {
			t.Fatal(err)
		}
		marker := "<!-- lab isp-config " + server + " -->\n"
		_, after, ok := strings.Cut(string(doc), marker)
		if !ok {
			t.Errorf("docs/ISP-SERVERS.md has no %q", strings.TrimSpace(marker))
			continue
		}
		fence, rest, ok := strings.Cut(after, "\n")
		if !ok || !strings.HasPrefix(fence, "```") {
			t.Errorf("%s: no code block right after the marker", server)
			continue
		}
		got, _, ok := strings.Cut(rest, "```\n")
		if !ok {
			t.Errorf("%s: unterminated code block", server)
			continue
		}
		if got != string(want) {
			t.Errorf("docs/ISP-SERVERS.md's %s configuration differs from the lab's (ispmux lab isp-config %s):\n--- doc\n%s\n--- lab\n%s", server, server, got, want)
		}
	}
}

func TestDnsmasqConfig(t *testing.T) {
	tp, err := plan(Options{ID: "dq", DHCP: true, Subscribers: 6, ISPServer: ServerDnsmasq,
		KeaKnown: map[string][]string{"beta": {"c-api-1"}}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := tp.DnsmasqConfig(0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tp.DnsmasqConfig(1)
	if err != nil {
		t.Fatal(err)
	}
	lines := func(c []byte) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(string(c), "\n") {
			if l != "" && !strings.HasPrefix(l, "#") {
				m[l] = true
			}
		}
		return m
	}
	la, lb := lines(a), lines(b)
	for _, l := range []string{
		"port=0", "interface=eth0", "dhcp-range=100.64.0.100,100.64.0.199,255.255.255.0,120s",
		"shared-network=192.0.2.2,100.64.0.1", "dhcp-option=option:router,100.64.0.1", "no-ping",
		"dhcp-ignore=tag:!valid",
		"dhcp-subscrid=set:valid,c-s1", "dhcp-remoteid=set:valid,02:00:00:00:01:01",
		"dhcp-subscrid=set:valid,c-s6", "dhcp-remoteid=set:valid,02:00:00:00:01:06",
	} {
		if !la[l] {
			t.Errorf("alpha's config lacks %q:\n%s", l, a)
		}
	}
	// s4 is alpha's refused subscriber; s2, s3 are beta's; s5 nobody's.
	for _, l := range []string{"dhcp-subscrid=set:valid,c-s4", "dhcp-remoteid=set:valid,02:00:00:00:01:04", "dhcp-subscrid=set:valid,c-s2"} {
		if la[l] {
			t.Errorf("alpha's config has %q", l)
		}
	}
	for _, l := range []string{"dhcp-subscrid=set:valid,c-s2", "dhcp-subscrid=set:valid,c-s3", "dhcp-subscrid=set:valid,c-api-1", "dhcp-remoteid=set:valid,02:00:00:00:01:03"} {
		if !lb[l] {
			t.Errorf("beta's config lacks %q:\n%s", l, b)
		}
	}
	if strings.Contains(string(a)+string(b), tp.StateDir) {
		t.Errorf("the config names the lab's files (they go on the command line)")
	}
	f := tp.Dnsmasq(1)
	if f.Config != filepath.Join(tp.StateDir, "dnsmasq-ispb.conf") || f.Leases != filepath.Join(tp.StateDir, "dnsmasq-ispb.leases") {
		t.Errorf("files %+v", f)
	}
}

func TestISPServerOptions(t *testing.T) {
	for _, c := range []struct {
		o  Options
		ok bool
	}{
		{Options{DHCP: true}, true},
		{Options{DHCP: true, ISPServer: ServerKea}, true},
		{Options{DHCP: true, ISPServer: ServerDnsmasq}, true},
		{Options{DHCP: true, ISPServer: ServerDnsmasq, LeaseTime: 5 * time.Minute}, true},
		{Options{DHCP: true, ISPServer: ServerDnsmasq, LeaseTime: 10 * time.Second}, false},
		{Options{DHCP: true, ISPServer: ServerDnsmasq, KeaOpen: true}, false},
		{Options{DHCP: true, ISPServer: ServerDnsmasq, KeaNotAuthoritative: true}, false},
		{Options{ISPServer: ServerDnsmasq}, false},
		{Options{DHCP: true, ISPServer: "isc-dhcpd"}, false},
	} {
		tp, err := plan(c.o)
		if (err == nil) != c.ok {
			t.Errorf("%+v: err %v, want ok %v", c.o, err, c.ok)
		}
		if err == nil && tp.ISPServer != c.o.ISPServer {
			t.Errorf("%+v: topology server %q", c.o, tp.ISPServer)
		}
	}
}

func TestDnsmasqLeases(t *testing.T) {
	f := filepath.Join(t.TempDir(), "leases")
	text := "1796188569 02:00:00:00:01:01 100.64.0.162 * *\n" +
		"0 02:00:00:00:01:02 100.64.0.110 host2 01:02:00:00:00:01:02\n" +
		"duid 00:01:00:01:2e:00:00:00:02:00:00:00:00:01\n"
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ls, err := DnsmasqLeases(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[0].MAC != "02:00:00:00:01:01" || ls[0].Address != netip.MustParseAddr("100.64.0.162") ||
		ls[0].Expire.Unix() != 1796188569 || !ls[1].Expire.IsZero() || ls[1].Hostname != "host2" {
		t.Errorf("leases %+v", ls)
	}
	if err := os.WriteFile(f, []byte("12 02:00:00:00:01:01\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := DnsmasqLeases(f); err == nil {
		t.Errorf("a short line parsed")
	}
}
