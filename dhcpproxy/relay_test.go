package dhcpproxy

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

var (
	testMAC   = net.HardwareAddr{0x02, 0, 0, 0, 1, 1}
	giaddr    = netip.MustParseAddr("192.0.2.2")
	ourSID    = netip.MustParseAddr("100.64.0.1")
	ispSID    = netip.MustParseAddr("192.0.2.1")
	testRelay = relayInfo{
		CircuitID: []byte("acc0:0"), RemoteID: []byte(testMAC), SubscriberID: []byte("c-s1"),
		ServerIDOverride: ourSID, LinkSelection: ourSID, VSS: "vpn-a",
	}
)

// rawOptions returns each option instance (code, payload) in a DHCP
// message's options area, as on the wire (no concatenation).
func rawOptions(t testing.TB, msg []byte) [][2][]byte {
	t.Helper()
	if len(msg) < 240 {
		t.Fatalf("message too short: %d", len(msg))
	}
	var out [][2][]byte
	b := msg[240:]
	for len(b) > 0 {
		c := b[0]
		if c == 0 {
			b = b[1:]
			continue
		}
		if c == 255 {
			break
		}
		if len(b) < 2 || int(b[1]) > len(b)-2 {
			t.Fatalf("option %d overruns the message", c)
		}
		n := 2 + int(b[1])
		out = append(out, [2][]byte{{c}, b[2:n]})
		b = b[n:]
	}
	return out
}

func discover(t testing.TB, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.NewDiscovery(testMAC, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCheckClient(t *testing.T) {
	other := net.HardwareAddr{0x02, 0, 0, 0, 9, 9}
	cases := []struct {
		name string
		m    *dhcpv4.DHCPv4
		src  net.HardwareAddr
		want error
	}{
		{"ok", discover(t), testMAC, nil},
		{"reply from a client", discover(t, dhcpv4.WithReply(discover(t))), testMAC, errNotRequest},
		{"chaddr is not the source MAC", discover(t), other, errChaddr},
		{"client option 82", discover(t, dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("x"))))), testMAC, errClientOption82},
		{"giaddr set", discover(t, dhcpv4.WithGatewayIP(net.IPv4(10, 0, 0, 1))), testMAC, errClientGiaddr},
		{"option overload", discover(t, dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionOptionOverload, []byte{3}))), testMAC, errOverload},
		{"hops", discover(t, func(d *dhcpv4.DHCPv4) { d.HopCount = 16 }), testMAC, errHops},
	}
	for _, c := range cases {
		if got := checkClient(c.m, c.src); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestRelayUp(t *testing.T) {
	m := discover(t, func(d *dhcpv4.DHCPv4) { d.HopCount = 1 })
	// A SELECTING REQUEST names our server identifier; the ISP must see its
	// own.
	m.UpdateOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice())))
	out := relayUp(m.ToBytes(), m, giaddr, ourSID, ispSID, &testRelay)
	got, err := dhcpv4.FromBytes(out)
	if err != nil {
		t.Fatal(err)
	}
	if !got.GatewayIPAddr.Equal(net.IP(giaddr.AsSlice())) || got.HopCount != 2 {
		t.Errorf("giaddr %v hops %d", got.GatewayIPAddr, got.HopCount)
	}
	if !got.ServerIdentifier().Equal(net.IP(ispSID.AsSlice())) {
		t.Errorf("server id %v, want the ISP's %v", got.ServerIdentifier(), ispSID)
	}
	n82 := 0
	for _, o := range rawOptions(t, out) {
		if o[0][0] == 82 {
			n82++
			sub, err := parseOption82(o[1])
			if err != nil {
				t.Fatal(err)
			}
			want := map[byte]string{1: "acc0:0", 2: string(testMAC), 6: "c-s1", 5: string(ourSID.AsSlice()), 11: string(ourSID.AsSlice()), 151: "\x00vpn-a"}
			for k, v := range want {
				if string(sub[k]) != v {
					t.Errorf("sub-option %d = %q, want %q", k, sub[k], v)
				}
			}
		}
	}
	if n82 != 1 {
		t.Errorf("%d option 82 instances, want 1", n82)
	}
	// The rest of the client's options are kept.
	if !bytes.Equal(got.Options.Get(dhcpv4.OptionParameterRequestList), m.Options.Get(dhcpv4.OptionParameterRequestList)) {
		t.Error("parameter request list changed")
	}
}

// TestRelayUpDropsSubnetSelection: a subscriber's option 118 (RFC 3011
// subnet selection, which servers honour ahead of giaddr) was passed to the
// ISP, so a subscriber could pick the subnet or pool it is served from. It
// is left out; the other options stay.
func TestRelayUpDropsSubnetSelection(t *testing.T) {
	m := discover(t)
	m.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionSubnetSelection, []byte{10, 9, 8, 0}))
	out := relayUp(m.ToBytes(), m, giaddr, ourSID, ispSID, &testRelay)
	for _, o := range rawOptions(t, out) {
		if o[0][0] == 118 {
			t.Errorf("option 118 %v relayed to the ISP", o[1])
		}
	}
	got, err := dhcpv4.FromBytes(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Options.Get(dhcpv4.OptionParameterRequestList), m.Options.Get(dhcpv4.OptionParameterRequestList)) {
		t.Error("parameter request list changed")
	}
}

func TestRelayDown(t *testing.T) {
	d := discover(t)
	offer, err := dhcpv4.NewReplyFromRequest(d,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer),
		dhcpv4.WithServerIP(net.IP(ispSID.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispSID.AsSlice()))),
		dhcpv4.WithYourIP(net.IPv4(100, 64, 0, 100)),
		dhcpv4.WithGatewayIP(net.IP(giaddr.AsSlice())),
		// A VSS server's echo: ours without VSS-Control (RFC 6607).
		dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionRelayAgentInformation, Value: dhcpv4.OptionGeneric{Data: withoutSubOption(testRelay.encode(), subVSSControl)}}),
	)
	if err != nil {
		t.Fatal(err)
	}
	if !hasSubOption(testRelay.encode(), subVSSControl) {
		t.Fatal("VSS sent without VSS-Control")
	}
	if err := checkServer(offer, testRelay.encode()); err != nil {
		t.Fatalf("checkServer: %v", err)
	}
	// A server without VSS echoes everything, VSS-Control included: its
	// answer comes from the wrong address space and is not used.
	verbatim := *offer
	verbatim.Options = dhcpv4.Options{}
	for k, v := range offer.Options {
		verbatim.Options[k] = v
	}
	verbatim.Options.Update(dhcpv4.Option{Code: dhcpv4.OptionRelayAgentInformation, Value: dhcpv4.OptionGeneric{Data: testRelay.encode()}})
	if err := checkServer(&verbatim, testRelay.encode()); err != errVSSUnsupported {
		t.Errorf("an echo with VSS-Control: %v, want %v", err, errVSSUnsupported)
	}
	other := testRelay
	other.SubscriberID = []byte("c-s2")
	if err := checkServer(offer, other.encode()); err != errOption82 {
		t.Errorf("an echo that is not ours: %v, want %v", err, errOption82)
	}
	// dnsmasq answers ispmux's link selection with subnet selection
	// (118), which the subscriber never sent (RFC 3011: returned only to a
	// client that sent it).
	offer.Options.Update(dhcpv4.OptGeneric(dhcpv4.OptionSubnetSelection, []byte{100, 64, 0, 1}))
	out := relayDown(offer.ToBytes(), ourSID, time.Minute)
	for _, o := range rawOptions(t, out) {
		if o[0][0] == 82 {
			t.Fatal("option 82 sent to the subscriber")
		}
		if o[0][0] == 118 {
			t.Fatal("option 118 (subnet selection, the ISP's answer to ispmux's link selection) sent to the subscriber")
		}
	}
	got, _ := dhcpv4.FromBytes(out)
	if !got.ServerIdentifier().Equal(net.IP(ourSID.AsSlice())) || !got.GatewayIPAddr.IsUnspecified() {
		t.Errorf("server id %v giaddr %v", got.ServerIdentifier(), got.GatewayIPAddr)
	}
}

// FuzzRelayUp: whatever a subscriber sends, what goes to the ISP carries
// exactly one option 82, and it is ours.
func FuzzRelayUp(f *testing.F) {
	f.Add(discover(f).ToBytes())
	f.Add(discover(f, dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("spoof"))))).ToBytes())
	req, _ := dhcpv4.NewRequestFromOffer(discover(f))
	f.Add(req.ToBytes())
	noEnd := discover(f).ToBytes()
	f.Add(append(noEnd[:bytes.LastIndexByte(noEnd, optEnd):bytes.LastIndexByte(noEnd, optEnd)], 0, 0)) // no END, padding
	ours := testRelay.encode()
	f.Fuzz(func(t *testing.T, payload []byte) {
		// As fromClient parses it: without END, one is added.
		m, payload, err := parseMessage(payload)
		if err != nil || len(m.ClientHWAddr) != 6 {
			return
		}
		if checkClient(m, m.ClientHWAddr) != nil {
			return
		}
		out := relayUp(payload, m, giaddr, ourSID, ispSID, &testRelay)
		n := 0
		for _, o := range rawOptions(t, out) {
			if o[0][0] == 82 {
				n++
				if !bytes.Equal(o[1], ours) {
					t.Fatalf("option 82 upstream is not ours: %x", o[1])
				}
			}
		}
		if n != 1 {
			t.Fatalf("%d option 82 instances upstream", n)
		}
		got, err := dhcpv4.FromBytes(out)
		if err != nil {
			t.Fatalf("relayUp produced an unparsable message: %v", err)
		}
		for code, v := range m.Options {
			if code != 82 && code != 54 && !bytes.Equal(got.Options[code], v) {
				t.Fatalf("option %d changed: %x → %x", code, v, got.Options[code])
			}
		}
		if got.HopCount != m.HopCount+1 || !got.GatewayIPAddr.Equal(net.IP(giaddr.AsSlice())) {
			t.Fatalf("hops %d giaddr %v", got.HopCount, got.GatewayIPAddr)
		}
	})
}

// FuzzRelayDown: whatever a server sends, nothing that reaches a subscriber
// carries option 82, and the server identifier is ours.
func FuzzRelayDown(f *testing.F) {
	d := discover(f)
	offer, _ := dhcpv4.NewReplyFromRequest(d, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer),
		dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionRelayAgentInformation, Value: dhcpv4.OptionGeneric{Data: testRelay.encode()}}))
	f.Add(offer.ToBytes())
	f.Fuzz(func(t *testing.T, payload []byte) {
		// As fromServer parses it: without END, one is added.
		m, payload, err := parseMessage(payload)
		if err != nil {
			return
		}
		for _, lease := range []uint32{0, 600} {
			checkRelayDown(t, payload, m, lease)
		}
	})
}

// checkRelayDown checks relayDown(payload, lease) of the server message m
// (FuzzRelayDown).
func checkRelayDown(t *testing.T, payload []byte, m *dhcpv4.DHCPv4, lease uint32) {
	out := relayDown(payload, ourSID, time.Duration(lease)*time.Second)
	for _, o := range rawOptions(t, out) {
		if o[0][0] == 82 {
			t.Fatalf("option 82 towards the subscriber: %x", o[1])
		}
	}
	got, err := dhcpv4.FromBytes(out)
	if err != nil {
		t.Fatalf("relayDown produced an unparsable message: %v", err)
	}
	if got.MessageType() != dhcpv4.MessageTypeNone && !got.ServerIdentifier().Equal(net.IP(ourSID.AsSlice())) {
		t.Fatalf("server identifier %v, want ours", got.ServerIdentifier())
	}
	// The lease options are ispmux's (none without a lease), never
	// the server's.
	if lease == 0 {
		for _, c := range []uint8{51, 58, 59} {
			if got.Options.Has(dhcpv4.GenericOptionCode(c)) {
				t.Fatalf("option %d passed on without a lease", c)
			}
		}
	} else if got.IPAddressLeaseTime(0) != time.Duration(lease)*time.Second || got.IPAddressRenewalTime(0) != time.Duration(lease/2)*time.Second ||
		got.IPAddressRebindingTime(0) != time.Duration(uint64(lease)*7/8)*time.Second {
		t.Fatalf("lease options %v %v %v, want %d s, half, 7/8", got.IPAddressLeaseTime(0), got.IPAddressRenewalTime(0), got.IPAddressRebindingTime(0), lease)
	}
	// Everything else the server said reaches the subscriber as it was:
	// all but ispmux's own (ispOwned: 82, the lease options, 108, 118)
	// and the server identifier (ours). The property left 108 out of
	// ispOwned's list, which it had for stops: a fuzz run found it.
	for code, v := range m.Options {
		if !ispOwned(code) && code != 54 && !bytes.Equal(got.Options[code], v) {
			t.Fatalf("option %d changed: %x → %x", code, v, got.Options[code])
		}
	}
	if !got.YourIPAddr.Equal(m.YourIPAddr) || got.TransactionID != m.TransactionID || !bytes.Equal(got.ClientHWAddr, m.ClientHWAddr) {
		t.Fatalf("header changed")
	}
}

func TestCircuitID(t *testing.T) {
	c := &Circuit{Name: "acc1.100", Interface: "acc1", VLAN: 100}
	for tmpl, want := range map[string]string{
		"{interface}:{vlan}":      "acc1:100",
		"olt-7/{access}/{mac}":    "olt-7/acc1.100/02:00:00:00:01:01",
		"fixed":                   "fixed",
		"{interface}{vlan}{nope}": "acc1100{nope}",
	} {
		if got := circuitID(tmpl, c, 0x020000000101); got != want {
			t.Errorf("%q → %q, want %q", tmpl, got, want)
		}
	}
}

// TestLongOptions: options of 254 and 255 bytes (where 2+length overflows a
// byte) are walked, kept and stripped correctly.
func TestLongOptions(t *testing.T) {
	long := bytes.Repeat([]byte{'x'}, 254)
	m := discover(t, dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(224), long),
		dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(225), bytes.Repeat([]byte{'y'}, 255)))
	up, err := dhcpv4.FromBytes(relayUp(m.ToBytes(), m, giaddr, ourSID, ispSID, &testRelay))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(up.Options.Get(dhcpv4.GenericOptionCode(224)), long) || len(up.Options.Get(dhcpv4.GenericOptionCode(225))) != 255 {
		t.Error("long options not kept upstream")
	}
	down, err := dhcpv4.FromBytes(relayDown(up.ToBytes(), ourSID, 0))
	if err != nil {
		t.Fatal(err)
	}
	if down.Options.Has(dhcpv4.OptionRelayAgentInformation) || !bytes.Equal(down.Options.Get(dhcpv4.GenericOptionCode(224)), long) {
		t.Error("long options mishandled downstream")
	}
	if _, err := parseOption82(append([]byte{1, 254}, long...)); err != nil {
		t.Errorf("254-byte sub-option: %v", err)
	}
}

// TestNakBytes: ispmux's own NAK is what RFC 2131 table 3 says, and the
// library reads it back.
func TestNakBytes(t *testing.T) {
	req, err := dhcpv4.NewRequestFromOffer(&dhcpv4.DHCPv4{OpCode: dhcpv4.OpcodeBootReply, HWType: 1,
		ClientHWAddr: mac("02:00:00:00:01:01"), TransactionID: dhcpv4.TransactionID{1, 2, 3, 4},
		YourIPAddr: net.IPv4(100, 64, 0, 9), ServerIPAddr: net.IPv4zero, GatewayIPAddr: net.IPv4zero, ClientIPAddr: net.IPv4zero,
		Options: dhcpv4.OptionsFromList(dhcpv4.OptMessageType(dhcpv4.MessageTypeOffer), dhcpv4.OptServerIdentifier(net.IPv4(192, 0, 2, 1)))})
	if err != nil {
		t.Fatal(err)
	}
	req.Flags = 0x8000
	req.ClientIPAddr = net.IPv4(100, 64, 0, 9)
	n, err := dhcpv4.FromBytes(nakBytes(req, ourSID, strings.Repeat("x", 300)))
	if err != nil {
		t.Fatal(err)
	}
	if n.OpCode != dhcpv4.OpcodeBootReply || n.MessageType() != dhcpv4.MessageTypeNak || n.TransactionID != req.TransactionID ||
		n.Flags != 0x8000 || n.ClientHWAddr.String() != "02:00:00:00:01:01" || !n.ClientIPAddr.IsUnspecified() ||
		!n.YourIPAddr.IsUnspecified() || !n.GatewayIPAddr.IsUnspecified() || !n.ServerIdentifier().Equal(net.IP(ourSID.AsSlice())) ||
		len(n.Message()) != 255 {
		t.Errorf("NAK %v", n)
	}
}
