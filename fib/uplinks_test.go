package fib

import "testing"

func testUplink(gw uint32) Uplink {
	return Uplink{
		Configured: true, Port: 4, VLAN: 100, MAC: 0x02_00_00_00_01_01,
		Addr: 0x64400002, PrefixLen: 24, Gateway: gw,
	}
}

func TestUplinksZeroValue(t *testing.T) {
	var u Uplinks
	s := u.Load()
	if s == nil {
		t.Fatal("Load of the zero value = nil")
	}
	for i := range MaxISPs {
		if s.Get(uint8(i)).Configured {
			t.Fatalf("ISP %d configured in the zero value", i)
		}
	}
	if s.Get(255) != nil {
		t.Fatal("Get(255) != nil")
	}
	u.SetGatewayMAC(3, 0x1234) // unconfigured: no-op
	if u.Load().Get(3).Resolved {
		t.Fatal("SetGatewayMAC resolved an unconfigured ISP")
	}
}

func TestUplinksSnapshots(t *testing.T) {
	var u Uplinks
	const gw, gwMAC = 0x64400001, 0x00_1b_21_00_00_01

	up := testUplink(gw)
	up.GatewayMAC, up.Resolved = 0xdead, true // ignored: resolution is SetGatewayMAC's
	u.Configure(7, up)
	s1 := u.Load()
	if got := *s1.Get(7); got != testUplink(gw) {
		t.Fatalf("after Configure: %+v", got)
	}

	u.SetGatewayMAC(7, gwMAC)
	s2 := u.Load()
	if s2 == s1 {
		t.Fatal("SetGatewayMAC did not publish a new snapshot")
	}
	if s1.Get(7).Resolved || s1.Get(7).GatewayMAC != 0 {
		t.Fatal("the old snapshot changed")
	}
	if g := s2.Get(7); !g.Resolved || g.GatewayMAC != gwMAC {
		t.Fatalf("after SetGatewayMAC: %+v", *g)
	}
	u.SetGatewayMAC(7, gwMAC)
	if u.Load() != s2 {
		t.Fatal("a no-op SetGatewayMAC published a snapshot")
	}

	// Same port, VLAN and gateway: the resolved MAC is kept.
	up = testUplink(gw)
	up.Addr, up.PrefixLen = 0x64400003, 30
	u.Configure(7, up)
	if g := u.Load().Get(7); !g.Resolved || g.GatewayMAC != gwMAC || g.Addr != 0x64400003 {
		t.Fatalf("reconfigure, same gateway: %+v", *g)
	}
	// Another VLAN: the MAC was learnt elsewhere, so it goes.
	up.VLAN = 200
	u.Configure(7, up)
	if g := u.Load().Get(7); g.Resolved || g.GatewayMAC != 0 {
		t.Fatalf("reconfigure, other VLAN: %+v", *g)
	}
	u.SetGatewayMAC(7, gwMAC)
	// Another gateway: likewise.
	up.Gateway = gw + 1
	u.Configure(7, up)
	if g := u.Load().Get(7); g.Resolved || g.GatewayMAC != 0 {
		t.Fatalf("reconfigure, other gateway: %+v", *g)
	}
	u.SetGatewayMAC(7, gwMAC)
	u.SetGatewayMAC(7, 0)
	if g := u.Load().Get(7); g.Resolved || g.GatewayMAC != 0 {
		t.Fatalf("after withdrawing: %+v", *g)
	}

	// Removal clears everything; other ISPs are untouched.
	u.Configure(8, testUplink(gw))
	u.Configure(7, Uplink{Port: 9})
	if g := u.Load().Get(7); *g != (Uplink{}) {
		t.Fatalf("after removal: %+v", *g)
	}
	if !u.Load().Get(8).Configured {
		t.Fatal("removing ISP 7 touched ISP 8")
	}
}

func TestUplinksLoadAllocs(t *testing.T) {
	var u Uplinks
	u.Configure(1, testUplink(1))
	var sink uint64
	if a := testing.AllocsPerRun(1000, func() {
		s := u.Load()
		sink += s.Get(1).GatewayMAC + s.ISP[2].MAC
	}); a != 0 {
		t.Fatalf("%v allocations", a)
	}
}

// TestUplinksL2 checks the prebuilt Ethernet header against WriteL2 of the
// published fields after every kind of change, and that it is absent (L2Len
// 0) while the uplink is not both configured and resolved: withdrawn, its
// gateway changed, removed.
func TestUplinksL2(t *testing.T) {
	var u Uplinks
	const gw, gwMAC = 0x64400001, 0x00_1b_21_00_00_01
	check := func(what string) {
		t.Helper()
		g := u.Load().Get(7)
		if !g.Configured || !g.Resolved {
			if g.L2Len != 0 || g.L2 != ([18]byte{}) {
				t.Fatalf("%s: unresolved uplink has a header %d % x", what, g.L2Len, g.L2)
			}
			return
		}
		var want [18]byte
		n := WriteL2(want[:], g.GatewayMAC, g.MAC, g.VLAN, g.VLAN != 0, EtherTypeIPv4)
		if int(g.L2Len) != n || g.L2 != want {
			t.Fatalf("%s: header %d % x, want %d % x", what, g.L2Len, g.L2, n, want)
		}
	}
	up := testUplink(gw)
	up.L2, up.L2Len = [18]byte{1, 2, 3}, 18 // ignored
	u.Configure(7, up)
	check("configured")
	u.SetGatewayMAC(7, gwMAC)
	check("resolved")
	if u.Load().Get(7).L2Len != 18 {
		t.Fatal("tagged uplink: header not 18 bytes")
	}
	up.MAC = 0x02_00_00_00_02_02 // same gateway: resolution kept, our MAC changed
	u.Configure(7, up)
	check("our MAC changed")
	if g := u.Load().Get(7); !g.Resolved {
		t.Fatal("resolution not kept")
	}
	up.VLAN = 0
	u.Configure(7, up)
	u.SetGatewayMAC(7, gwMAC+1)
	check("untagged")
	if u.Load().Get(7).L2Len != 14 {
		t.Fatal("untagged uplink: header not 14 bytes")
	}
	u.SetGatewayMAC(7, 0)
	check("withdrawn")
	u.SetGatewayMAC(7, gwMAC)
	check("resolved again")
	up.Gateway = gw + 1
	u.Configure(7, up)
	check("gateway changed")
	if u.Load().Get(7).Resolved {
		t.Fatal("resolution kept across a gateway change")
	}
	u.SetGatewayMAC(7, gwMAC)
	check("new gateway resolved")
	u.Configure(7, Uplink{})
	check("removed")
	u.SetGatewayMAC(7, gwMAC)
	check("removed, then a MAC")
	if g := u.Load().Get(7); g.Configured || g.Resolved {
		t.Fatalf("removed uplink configured %v resolved %v", g.Configured, g.Resolved)
	}
}
