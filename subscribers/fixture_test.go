package subscribers

import (
	"bytes"
	"net/netip"
	"reflect"
	"time"
)

// v1Fixture is what testdata/v1.db holds (see testdata/README.md): the
// registrations, the bindings (each with its expiry index entry) and the
// events written by the schema-1 store. TestMigrateV1 checks that a schema-2
// store reads exactly these back from a copy of the file.
func v1Fixture() ([]Registration, []Binding, []Event) {
	t0 := time.Date(2026, 4, 1, 12, 0, 0, 123456789, time.UTC)
	regs := []Registration{
		{MAC: MAC{0x02, 0, 0, 0, 0, 1}, CustomerID: "cust-1", ISP: "alpha", Source: SourceConfig, Updated: t0},
		{MAC: MAC{0x02, 0, 0, 0, 0, 2}, CustomerID: "cust-2", ISP: "beta", Access: "acc1", Source: SourceAPI, Updated: t0.Add(time.Second)},
		{MAC: MAC{0x02, 0, 0, 0, 0, 3}, ISP: "alpha", Blocked: true, Source: SourceConfig, Updated: t0.Add(2 * time.Second)},
	}
	binds := []Binding{
		{MAC: MAC{0x02, 0, 0, 0, 0, 1}, Access: "acc0", VLAN: 100, ISP: "alpha", IP: netip.MustParseAddr("100.64.0.10"),
			Circuit: "acc0:100", ServerID: netip.MustParseAddr("192.0.2.1"), Relay: netip.MustParseAddr("192.0.2.1"),
			Expires: t0.Add(time.Hour), Updated: t0},
		{MAC: MAC{0x02, 0, 0, 0, 0, 2}, Access: "acc1", VLAN: 0, ISP: "beta", IP: netip.MustParseAddr("10.1.0.20"),
			Circuit: "acc1", ServerID: netip.MustParseAddr("198.51.100.1"), Relay: netip.MustParseAddr("fe80::1%eth1"),
			Expires: t0.Add(30 * time.Minute), Updated: t0.Add(time.Second)},
		{MAC: MAC{0x02, 0, 0, 0, 0, 4}, Access: "acc0", VLAN: 101, ISP: "alpha", IP: netip.MustParseAddr("100.64.0.11"),
			Expires: t0.Add(-time.Minute), Updated: t0.Add(2 * time.Second)}, // already expired, no server id
	}
	evs := []Event{
		{Seq: 1, Time: t0, Kind: EventBound, MAC: binds[0].MAC, ISP: "alpha", IP: binds[0].IP, Reason: "granted by 192.0.2.1"},
		{Seq: 2, Time: t0.Add(time.Second), Kind: EventBound, MAC: binds[1].MAC, ISP: "beta", IP: binds[1].IP},
		{Seq: 3, Time: t0.Add(2 * time.Second), Kind: EventUnknown, MAC: MAC{0x02, 0, 0, 0, 0, 9}, Reason: "not registered (DISCOVER)"},
		{Seq: 4, Time: t0.Add(3 * time.Second), Kind: EventBlocked, MAC: regs[2].MAC, ISP: "alpha", Reason: "blocked"},
		{Seq: 5, Time: t0.Add(4 * time.Second), Kind: EventReleased, MAC: MAC{0x02, 0, 0, 0, 0, 5}, ISP: "beta", IP: netip.MustParseAddr("10.1.0.21"), Reason: "DHCPRELEASE"},
	}
	return regs, binds, evs
}

// bindingEqual compares bindings field by field (times with ==, so
// normalise them first; nil and empty byte fields are equal).
func bindingEqual(a, b Binding) bool {
	return bytes.Equal(a.ClientID, b.ClientID) && bytes.Equal(a.Option82, b.Option82) && bytes.Equal(a.Options, b.Options) &&
		a.MAC == b.MAC && a.Access == b.Access && a.VLAN == b.VLAN && a.ISP == b.ISP && a.IP == b.IP &&
		a.Circuit == b.Circuit && a.ServerID == b.ServerID && a.Relay == b.Relay && a.Expires == b.Expires &&
		a.Updated == b.Updated && a.LeaseTime == b.LeaseTime && a.Customer == b.Customer && bytes.Equal(a.Boot, b.Boot) &&
		a.Since == b.Since
}

func reflectNumField(v any) int { return reflect.TypeOf(v).NumField() }
