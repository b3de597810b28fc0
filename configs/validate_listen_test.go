package configs

import (
	"net/netip"
	"strings"
	"testing"
)

// TestListenElsewhere: a management listener on an address the file gives
// to the portal's namespace or to the datapath is refused at its key (a
// trial's check accepted [metrics] listen on the portal's address, and run
// failed with "bind: cannot assign requested address").
func TestListenElsewhere(t *testing.T) {
	const tls = "tls_cert = \"/etc/ispmux/m.crt\"\ntls_key = \"/etc/ispmux/m.key\"\n"
	portal := head + acc0 + onboard + isp0 + portalTbl
	bad := []struct {
		name, text string
		want       []string
	}{
		{"api on the portal's address", portal + "[api]\nlisten = \"203.0.113.80:8443\" #!A\n" + tls,
			[]string{`A api.listen: "203.0.113.80:8443" is the portal's address (portal.address), which lives in the portal's own network namespace: ispmux cannot listen there (run fails with "bind: cannot assign requested address"); give [api] listen an address of the management interface (or 127.0.0.1)`}},
		{"metrics on the portal's address", portal + "[metrics]\nlisten = \"203.0.113.80:9400\" #!A\ninsecure = true\n",
			[]string{`A metrics.listen: "203.0.113.80:9400" is the portal's address (portal.address)`}},
		{"the portal's address v4-mapped", portal + "[metrics]\nlisten = \"[::ffff:203.0.113.80]:9400\" #!A\ninsecure = true\n",
			[]string{`A metrics.listen: "[::ffff:203.0.113.80]:9400" is the portal's address`}},
		{"ispmux's end of the portal link", portal + "[api]\nlisten = \"169.254.80.1:8443\" #!A\ninsecure = true\n",
			[]string{`A api.listen: "169.254.80.1:8443" is ispmux's end of the portal's link (portal.link)`}},
		{"the portal's end of its link", portal + "link = \"169.254.9.0/30\"\n[api]\nlisten = \"169.254.9.2:8443\" #!A\ninsecure = true\n",
			[]string{`A api.listen: "169.254.9.2:8443" is the portal's end of its link (portal.link)`}},
		{"both", portal + "[api]\nlisten = \"169.254.80.2:8443\" #!A\ninsecure = true\n[metrics]\nlisten = \"203.0.113.80:9400\" #!B\ninsecure = true\n",
			[]string{`A api.listen: "169.254.80.2:8443" is the portal's end of its link`, `B metrics.listen: "203.0.113.80:9400" is the portal's address`}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) { wantParseErrors(t, tt.text, tt.want) })
	}
	// What may bind stays allowed: ispmux's own addresses in its VRFs
	// (an access gateway, an onboarding router, an ISP uplink: a
	// management interface may have the same address where plans
	// overlap: the host check says when it does not, TestDataAddr), an address inside an ISP's uplink subnet or an onboarding
	// pool, another machine's address the file names (a next hop), and the
	// portal link's default addresses with the portal off.
	ok := []struct{ name, text string }{
		{"an access gateway", portal + "[api]\nlisten = \"100.64.0.1:8443\"\ninsecure = true\n"},
		{"an onboarding router", portal + "[metrics]\nlisten = \"100.72.0.1:9400\"\ninsecure = true\n"},
		{"an isp uplink", portal + "[metrics]\nlisten = \"192.0.2.2:9400\"\ninsecure = true\n"},
		{"inside an isp subnet", portal + "[api]\nlisten = \"192.0.2.9:8443\"\ninsecure = true\n"},
		{"an isp's next hop", portal + "[api]\nlisten = \"192.0.2.1:8443\"\ninsecure = true\n"},
		{"inside an onboarding pool", portal + "[metrics]\nlisten = \"100.72.0.9:9400\"\ninsecure = true\n"},
		{"link addresses without a portal", base + "[api]\nlisten = \"169.254.80.1:8443\"\ninsecure = true\n"},
		{"a name", portal + "[api]\nlisten = \"mgmt.example:8443\"\ninsecure = true\n"},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse("t.toml", []byte(tt.text)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDataAddr: the addresses ispmux answers in its datapath are named by
// their keys, for the host check's message; others are not.
func TestDataAddr(t *testing.T) {
	c, err := Parse("t.toml", []byte(head+acc0+onboard+isp0+isp1+portalTbl))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ addr, want string }{
		{"100.64.0.1", "access acc0's gateway address (access[0].address)"},
		{"::ffff:100.64.0.1", "access acc0's gateway address (access[0].address)"},
		{"100.72.0.1", "access acc0's onboarding router (the first address of access[0].onboarding.pool)"},
		{"198.51.100.2", "isp beta's uplink address (isp[1].address)"},
		{"198.51.100.1", ""}, // beta's next hop: another machine's
		{"100.72.0.2", ""},   // an onboarding lease
		{"203.0.113.80", ""}, // the portal's: refused by Parse
	} {
		got := c.DataAddr(netip.MustParseAddr(tt.addr))
		if tt.want == "" && got != "" || !strings.HasPrefix(got, tt.want) {
			t.Errorf("DataAddr(%s) = %q, want %q…", tt.addr, got, tt.want)
		}
	}
}
