package dhcpproxy

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/subscribers"
)

// A REQUEST whose option 54 or 50 is not four bytes (RFC 2132 §9.7, §9.8)
// is dropped (option_length), not relayed: the decisions read the parsed
// values, which are unset for any other length, so a REQUEST for a
// neighbour's address with a 0- or 5-byte option 54 skipped the NAK rule
// and the check of the server chosen, and reached the ISP as sent (a
// review). Each of them fails without checkClient's length check.
func TestClientOptionLengths(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  dhcpv4.Modifier
	}{
		{"empty server id", dhcpv4.WithGeneric(dhcpv4.OptionServerIdentifier, nil)},
		{"5-byte server id", dhcpv4.WithGeneric(dhcpv4.OptionServerIdentifier, []byte{192, 0, 2, 1, 0})},
		{"5-byte requested address", dhcpv4.WithGeneric(dhcpv4.OptionRequestedIPAddress, []byte{100, 64, 0, 7, 0})},
		{"1-byte client id", dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, []byte{1})},
	} {
		r, _ := newSRig(t)
		r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil)
		r.p.committing.Wait()
		r.snd.take()
		m := clientMsg(t, s1, dhcpv4.MessageTypeRequest,
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("100.64.0.7"))), c.mod)
		r.fromClient(m)
		sent := r.toPorts()
		if len(sent[upPort]) != 0 {
			t.Errorf("%s: REQUEST relayed to the ISP", c.name)
		}
		if n := r.p.Counters()["option_length"]; n != 1 {
			t.Errorf("%s: option_length %d, want 1", c.name, n)
		}
	}
}

// A subscriber's option 221 (RFC 6607 VSS: which VPN's addresses) is not
// relayed, as its option 118 is not: the address space is ispmux's to
// name (a review).
func TestClientVSSOptionNotRelayed(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)),
		dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(optVSS), []byte{0, 'v', 'r', 'f', '2'}),
		dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(optSubnetSelection), []byte{10, 0, 0, 0})))
	sent := r.snd.take()
	if len(sent) != 1 {
		t.Fatalf("sent %d, want the relayed DISCOVER", len(sent))
	}
	m := dhcpOf(sent[0].frame)
	for _, o := range []uint8{optVSS, optSubnetSelection} {
		if m.Options.Has(dhcpv4.GenericOptionCode(o)) {
			t.Errorf("the client's option %d relayed to the ISP: %x", o, m.Options.Get(dhcpv4.GenericOptionCode(o)))
		}
	}
}

// An ISP's ACK to a DISCOVER that did not ask for rapid commit (RFC 4039
// §4: a server MUST NOT send it) binds nothing and is not delivered (the
// client, SELECTING, would ignore it: a review found ispmux forwarding
// for a lease the client never took); the lease is released to the
// server. With option 80 in the DISCOVER, the ACK binds as before.
func TestRapidACKUnasked(t *testing.T) {
	for _, asked := range []bool{false, true} {
		r := newPRig(t)
		mods := []dhcpv4.Modifier{dhcpv4.WithHwAddr(mac(s1))}
		if asked {
			mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionRapidCommit, nil))
		}
		r.fromClient(discover(t, mods...))
		got := r.serve(func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
			rep := kea(t, time.Minute)(m)
			rep.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeAck))
			rep.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRapidCommit, nil))
			return rep
		})
		r.p.committing.Wait()
		if bound := r.tab.isBound(s1MAC); bound != asked {
			t.Errorf("rapid commit asked %v: bound %v", asked, bound)
		}
		if asked {
			if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
				t.Errorf("asked: client got %v, want the ACK", got)
			}
			continue
		}
		if len(got) != 0 {
			t.Errorf("not asked: client got %v", got)
		}
		r.p.notes.wait()
		if c := r.p.Counters(); c["ack_to_discover_unasked"] != 1 || c["rapid_commit_released"] != 1 {
			t.Errorf("not asked: counters %v", c)
		}
		// Its end is a rejected event naming the server, not a
		// timeout blaming the ISP's silence (a review).
		r.p.expire(time.Now().Add(2 * time.Second))
		r.p.notes.wait()
		if c := r.p.Counters(); c["timeout"] != 0 {
			t.Errorf("not asked: timeout counted %d after the ISP's ACK", c["timeout"])
		}
		evs, _ := r.store.Events(0, 100)
		if e := evs[len(evs)-1]; e.Kind != subscribers.EventRejected || !strings.Contains(e.Reason, "without rapid commit") {
			t.Errorf("not asked: last event %+v", e)
		}
	}
}

// A message type (option 53) that is not one byte, empty or two (two
// instances, concatenated by RFC 3396), is counted option_length, as
// docs/OPERATIONS.md says ("message type 1 byte"), not no_message_type,
// which it names a BOOTP message, one without option 53: a trial's
// crafted DISCOVERs showed an operator no_message_type for both. Neither
// is relayed; a message without option 53 is still no_message_type.
func TestClientMessageTypeLength(t *testing.T) {
	for _, c := range []struct {
		name string
		val  []byte // nil: option 53 left out
		want string
	}{
		{"empty message type", []byte{}, "option_length"},
		{"two message types", []byte{1, 1}, "option_length"},
		{"no message type", nil, "no_message_type"},
	} {
		r := newPRig(t)
		m := discover(t, dhcpv4.WithHwAddr(mac(s1)))
		if c.val == nil {
			m.Options.Del(dhcpv4.OptionDHCPMessageType)
		} else {
			m.Options.Update(dhcpv4.OptGeneric(dhcpv4.OptionDHCPMessageType, c.val))
		}
		r.fromClient(m)
		if sent := r.snd.take(); len(sent) != 0 {
			t.Errorf("%s: %d frames sent, want none", c.name, len(sent))
		}
		cs := r.p.Counters()
		if cs[c.want] != 1 || cs["option_length"]+cs["no_message_type"] != 1 {
			t.Errorf("%s: option_length %d, no_message_type %d; want %s 1", c.name, cs["option_length"], cs["no_message_type"], c.want)
		}
	}
}

// A refused client message's counter and event name what it is. A plain
// BOOTP client's (RFC 951: its vendor area without the magic cookie, or
// with it and no option 53) has no message type, not a malformed one; a
// message type of 0, one byte, is no type a client sends, not a BOOTP
// message; an op that is neither BOOTREQUEST nor BOOTREPLY is malformed,
// not a BOOTREPLY. Each was refused, its event saying otherwise.
func TestClientRefusalNamesWhatItIs(t *testing.T) {
	bootp := func() []byte {
		b := discover(t, dhcpv4.WithHwAddr(mac(s1))).ToBytes()[:236:236]
		return append(b, make([]byte, 64)...) // RFC 951's vend: 64 bytes, no cookie
	}
	for _, c := range []struct {
		name    string
		payload func() []byte
		want    string
	}{
		{"BOOTP without a cookie", bootp, "no_message_type"},
		{"message type 0", func() []byte {
			return discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionDHCPMessageType, []byte{0})).ToBytes()
		}, "not_client_message"},
		{"op 3", func() []byte {
			b := discover(t, dhcpv4.WithHwAddr(mac(s1))).ToBytes()
			b[0] = 3
			return b
		}, "malformed"},
		{"op 2", func() []byte {
			b := discover(t, dhcpv4.WithHwAddr(mac(s1))).ToBytes()
			b[0] = 2
			return b
		}, "bootreply_from_client"},
		{"short", func() []byte { return bootp()[:200] }, "malformed"},
	} {
		r := newPRig(t)
		f := fib.UDPFrame(0xffffffffffff, 0x020000000101, 0, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, c.payload())
		r.p.HandleFrame(accPort, f)
		if n := r.p.Counters()[c.want]; n != 1 {
			t.Errorf("%s: counter %s %d, want 1", c.name, c.want, n)
		}
		evs := r.eventsOf(subscribers.EventRejected)
		if want := "DHCP message refused (" + c.want + ")"; len(evs) != 1 || !strings.HasPrefix(evs[0].Reason, want) {
			t.Errorf("%s: events %+v, want one %q", c.name, evs, want)
		}
	}
}

// A subscriber's message refused before admission (malformed, forged, a
// BOOTP client's) is no exchange with its ISP: it is counted by reason and
// is a rejected event, folded and budgeted, but not the ISP's rejected
// outcome, which IspmuxDHCPRefusals reads as the share of the ISP's
// exchanges ispmux refused. Counted per message, one bound device's
// broken or forged DHCP (a renewal with a 5-byte option 54, retried)
// drove its ISP's refusal alert on its own.
func TestClientRefusalIsNoISPOutcome(t *testing.T) {
	r := newPRig(t)
	if got := r.dora(s1, kea(t, time.Minute), nil); len(got) != 1 {
		t.Fatalf("DORA: %v", got)
	}
	before := r.p.ISPCounters()[0].Outcomes
	for i := range 100 {
		m := discover(t, dhcpv4.WithHwAddr(mac(s1)))
		if i%2 == 0 {
			m.Options.Update(dhcpv4.OptGeneric(dhcpv4.OptionServerIdentifier, []byte{192, 0, 2, 1, 0}))
		} else {
			m.Options.Update(dhcpv4.OptGeneric(dhcpv4.OptionRelayAgentInformation, []byte{1, 1, 'x'}))
		}
		r.fromClient(m)
	}
	after := r.p.ISPCounters()[0].Outcomes
	if after != before {
		t.Errorf("alpha's outcomes %v after 100 refused messages of its subscriber, were %v", after, before)
	}
	if evs := r.eventsOf(subscribers.EventRejected); len(evs) != 2 || evs[0].ISP != "alpha" {
		t.Errorf("events %+v: want two of alpha's (one per reason)", evs)
	}
}
