package subscribers

import (
	"net/netip"
	"time"
)

// v2Fixture is what testdata/v2.db holds (see testdata/README.md): a file
// written by the schema-2 store (format version 2 values) with
// registrations of two ISPs, bindings with the fields schema 2 added, an
// intent and events of both ISPs (and one of none). TestMigrateV2 checks
// that the current store reads all of it back and builds the schema-3
// indexes (devices by customer, events by ISP) from it.
func v2Fixture() ([]Registration, []Binding, Intent, []Event) {
	t0 := time.Date(2026, 6, 1, 8, 0, 0, 987654321, time.UTC)
	regs := []Registration{
		{MAC: MAC{0x02, 0, 0, 0, 1, 1}, CustomerID: "c-1", ISP: "alpha", Source: SourceConfig, Updated: t0},
		{MAC: MAC{0x02, 0, 0, 0, 1, 2}, CustomerID: "c-1", ISP: "alpha", Access: "acc1", Source: SourceAPI, Updated: t0.Add(time.Second)},
		{MAC: MAC{0x02, 0, 0, 0, 1, 3}, CustomerID: "c-2", ISP: "alpha", Blocked: true, Source: SourceConfig, Updated: t0.Add(2 * time.Second)},
		{MAC: MAC{0x02, 0, 0, 0, 1, 4}, CustomerID: "c-77", ISP: "beta", Source: SourceAPI, Updated: t0.Add(3 * time.Second)},
	}
	binds := []Binding{
		{MAC: regs[0].MAC, Access: "acc0", VLAN: 100, ISP: "alpha", IP: netip.MustParseAddr("100.64.0.10"),
			Circuit: "acc0:100", ServerID: netip.MustParseAddr("192.0.2.1"), Relay: netip.MustParseAddr("192.0.2.1"),
			Expires: t0.Add(time.Hour), Updated: t0, ClientID: []byte{1, 2, 0, 0, 0, 1, 1}, Option82: []byte{1, 4, 'a', 'c', 'c', '0'},
			Options: []byte{51, 4, 0, 0, 0x0e, 0x10}, LeaseTime: time.Hour, Customer: "c-1"},
		{MAC: regs[3].MAC, Access: "acc1", VLAN: 0, ISP: "beta", IP: netip.MustParseAddr("10.1.0.20"),
			Circuit: "acc1", ServerID: netip.MustParseAddr("198.51.100.1"), Relay: netip.MustParseAddr("198.51.100.1"),
			Expires: t0.Add(30 * time.Minute), Updated: t0.Add(time.Second), LeaseTime: 30 * time.Minute, Customer: "c-77"},
	}
	intent := Intent{ID: 1, Kind: IntentRelease, ISP: "alpha", MAC: regs[1].MAC, Access: "acc1", VLAN: 7,
		IP: netip.MustParseAddr("100.64.0.12"), Message: []byte{1, 1, 6, 0, 0xde, 0xad}, Created: t0.Add(4 * time.Second)}
	evs := []Event{
		{Seq: 1, Time: t0, Kind: EventBound, MAC: binds[0].MAC, ISP: "alpha", IP: binds[0].IP, Customer: "c-1", Access: "acc0"},
		{Seq: 2, Time: t0.Add(time.Second), Kind: EventBound, MAC: binds[1].MAC, ISP: "beta", IP: binds[1].IP, Customer: "c-77", Access: "acc1"},
		{Seq: 3, Time: t0.Add(2 * time.Second), Kind: EventUnknown, MAC: MAC{0x02, 0, 0, 0, 1, 9}, Reason: "not registered (DISCOVER)", Access: "acc0"},
		{Seq: 4, Time: t0.Add(4 * time.Second), Kind: EventReleased, MAC: regs[1].MAC, ISP: "alpha", IP: intent.IP, Reason: "DHCPRELEASE", Customer: "c-1", Access: "acc1"},
		{Seq: 5, Time: t0.Add(5 * time.Second), Kind: EventBlocked, MAC: regs[2].MAC, ISP: "alpha", Reason: "blocked", Customer: "c-2"},
	}
	return regs, binds, intent, evs
}
