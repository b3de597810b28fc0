package configs

import (
	"net/netip"
	"testing"
	"time"
)

const portalTbl = "[portal]\nhostname = \"portal.example.net\"\naddress = \"203.0.113.80\"\ntls_cert = \"/etc/ispmux/portal.crt\"\ntls_key = \"/etc/ispmux/portal.key\"\n"

// onboard is an [access.onboarding] for the last [[access]] (acc0).
const onboard = "[access.onboarding]\npool = \"100.72.0.0/22\"\n"

func TestPortalOK(t *testing.T) {
	text := head + acc0 + onboard + "lease_time = \"30s\"\n" + isp0 + "display_name = \"Alpha Fibre\"\ndescription = \"Fast.\"\n" + isp1 + portalTbl
	c, err := Parse("t.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Portal
	if !p.Enabled || p.Addr != netip.MustParseAddr("203.0.113.80") || p.Interface != DefaultPortalInterface ||
		p.LinkPrefix != netip.MustParsePrefix(DefaultPortalLink) || p.MaxOnboarding != DefaultMaxOnboarding {
		t.Errorf("portal = %+v", p)
	}
	if got := p.CaptiveURI(); got != "https://portal.example.net/api/captive" {
		t.Errorf("CaptiveURI = %q", got)
	}
	o := c.Access[0].Onboarding
	if !o.Enabled || o.PoolPrefix != netip.MustParsePrefix("100.72.0.0/22") || o.LeaseTimeDur != 30*time.Second ||
		o.MaxLeases != 1021 || o.Router() != netip.MustParseAddr("100.72.0.1") {
		t.Errorf("onboarding = %+v", o)
	}
	if c.ISPs[0].DisplayName != "Alpha Fibre" || c.ISPs[0].Description != "Fast." || c.ISPs[1].DisplayName != "beta" {
		t.Errorf("display names %q %q", c.ISPs[0].DisplayName, c.ISPs[1].DisplayName)
	}

	// Without the tables: nothing enabled, the default lease unused.
	c, err = Parse("t.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.Portal.Enabled || c.Access[0].Onboarding.Enabled {
		t.Errorf("portal/onboarding enabled without their tables")
	}
	// One circuit with onboarding, another without.
	c, err = Parse("t.toml", []byte(head+acc0+onboard+"[[access]]\ninterface = \"acc1\"\n"+isp0+portalTbl))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Access[0].Onboarding.Enabled || c.Access[1].Onboarding.Enabled || c.Access[0].Onboarding.LeaseTimeDur != DefaultOnboardingLease {
		t.Errorf("per-access onboarding wrong: %+v / %+v", c.Access[0].Onboarding, c.Access[1].Onboarding)
	}
}

func TestPortalErrors(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string
	}{
		{"onboarding without portal", head + acc0 + "[access.onboarding] #!A\npool = \"100.72.0.0/22\"\n" + isp0,
			[]string{"A access[0].onboarding: needs a [portal] table"}},
		{"onboarding without access address", head + "[[access]]\ninterface = \"acc0\"\n[access.onboarding] #!A\npool = \"100.72.0.0/22\"\n" + isp0 + portalTbl,
			[]string{"A access[0].onboarding: access acc0 needs an address"}},
		{"pool missing", head + acc0 + "[access.onboarding] #!A\nlease_time = \"20s\"\n" + isp0 + portalTbl,
			[]string{"A access[0].onboarding.pool: missing"}},
		{"pool host bits", head + acc0 + "[access.onboarding]\npool = \"100.72.0.5/22\" #!A\n" + isp0 + portalTbl,
			[]string{"A access[0].onboarding.pool: host bits set: write 100.72.0.0/22"}},
		{"pool too small", head + acc0 + "[access.onboarding]\npool = \"100.72.0.0/30\" #!A\n" + isp0 + portalTbl,
			[]string{"A access[0].onboarding.pool: must be /8../29"}},
		{"pool overlaps an isp", head + acc0 + "[access.onboarding]\npool = \"192.0.2.0/25\" #!A\n" + isp0 + portalTbl,
			[]string{"A access[0].onboarding.pool: 192.0.2.0/25 overlaps 192.0.2.0/24 (isp[0].address)"}},
		{"pool holds the access address", head + acc0 + "[access.onboarding]\npool = \"100.64.0.0/24\" #!A\n" + isp0 + portalTbl,
			[]string{"A access[0].onboarding.pool: 100.64.0.0/24 contains access acc0's address"}},
		{"two pools overlap", head + acc0 + onboard + "[[access]]\ninterface = \"acc1\"\naddress = \"100.64.0.2\"\n[access.onboarding]\npool = \"100.72.1.0/24\" #!A\n" + isp0 + portalTbl,
			[]string{"A access[1].onboarding.pool: 100.72.1.0/24 overlaps 100.72.0.0/22 (access[0].onboarding.pool)"}},
		{"lease time", head + acc0 + onboard + "lease_time = \"5s\" #!A\n" + isp0 + portalTbl,
			[]string{"A access[0].onboarding.lease_time: must be 10s..1h"}},
		{"max leases", head + acc0 + onboard + "max_leases = 5000 #!A\n" + isp0 + portalTbl,
			[]string{"A access[0].onboarding.max_leases: must be 1..1021"}},
		{"hostname is an address", base + "[portal]\nhostname = \"203.0.113.80\" #!A\naddress = \"203.0.113.80\"\ntls_cert = \"/c\"\ntls_key = \"/k\"\n",
			[]string{"A portal.hostname: must be a DNS name, not an IP address"}},
		{"portal inside an isp plan", base + "[portal]\nhostname = \"portal.example.net\"\naddress = \"192.0.2.80\" #!A\ntls_cert = \"/c\"\ntls_key = \"/k\"\n",
			[]string{"A portal.address: 192.0.2.80 is inside isp alpha's uplink subnet"}},
		{"portal without tls", base + "[portal] #!A\nhostname = \"portal.example.net\"\naddress = \"203.0.113.80\"\n",
			[]string{"A portal.tls_cert: missing", "A portal.tls_key: missing"}},
		{"wildcard api listen", base + "[api]\nlisten = \"0.0.0.0:8080\" #!A\ninsecure = true\n" + portalTbl,
			[]string{"A api.listen: \"0.0.0.0:8080\" listens on every address, which the portal forbids"}},
		{"empty-host api listen", base + "[api]\nlisten = \":8080\" #!A\ninsecure = true\n" + portalTbl,
			[]string{"A api.listen: \":8080\" listens on every address"}},
		{"dns names without hostname", base + portalTbl + "dns_names = [\"example.com\"] #!A\n",
			[]string{"A portal.dns_names: must include the portal's hostname"}},
		{"link", base + portalTbl + "link = \"169.254.80.1/30\" #!A\n",
			[]string{"A portal.link: must be an IPv4 /30 with host bits zero"}},
		{"portal interface is an uplink", base + portalTbl + "interface = \"upa\" #!A\n",
			[]string{"A portal.interface: upa is isp[0]'s uplink"}},
		{"unknown onboarding key", head + acc0 + onboard + "pol = 1 #!A\n" + isp0 + portalTbl,
			[]string{"A access[0].onboarding.pol: unknown key (did you mean \"pool\"?)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantParseErrors(t, tt.text, tt.want) })
	}
}
