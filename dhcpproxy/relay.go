package dhcpproxy

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Option 82 sub-options (RFC 3046, 3527, 3993, 5010, 5107, 6607).
const (
	subCircuitID        = 1
	subRemoteID         = 2
	subLinkSelection    = 5
	subSubscriberID     = 6
	subRelayFlags       = 10
	subServerIDOverride = 11
	subVSS              = 151
	subVSSControl       = 152
)

// maxHops is where a relay stops forwarding (RFC 1542 §4.1.1).
const maxHops = 16

// Why a client message is refused before anything else happens. Each is
// also a counter name.
var (
	errMalformed       = errors.New("malformed")
	errVSSUnsupported  = errors.New("vss_not_supported")
	errNotRequest      = errors.New("bootreply_from_client")
	errChaddr          = errors.New("chaddr_mismatch")
	errClientOption82  = errors.New("client_option82")
	errClientGiaddr    = errors.New("client_giaddr")
	errOverload        = errors.New("option_overload")
	errOptionLength    = errors.New("option_length")
	errNoMessageType   = errors.New("no_message_type")
	errNotClientType   = errors.New("not_client_message")
	errHops            = errors.New("too_many_hops")
	errServerMalformed = errors.New("server_malformed")
	errNotReply        = errors.New("bootrequest_from_server")
	errOption82        = errors.New("option82_mismatch")
)

// relayInfo is what ispmux asserts about a subscriber to its ISP.
type relayInfo struct {
	CircuitID        []byte
	RemoteID         []byte // the subscriber's MAC
	SubscriberID     []byte // the customer ID (RFC 3993)
	LinkSelection    netip.Addr
	ServerIDOverride netip.Addr
	VSS              string
	Unicast          bool // RFC 5010 flags: the client's message was unicast
}

// encode returns the option 82 payload (sub-options), in a fixed order so a
// server's echo can be compared byte for byte.
func (r *relayInfo) encode() []byte {
	var b []byte
	add := func(code byte, v []byte) {
		if len(v) > 255 {
			v = v[:255]
		}
		b = append(b, code, byte(len(v)))
		b = append(b, v...)
	}
	add(subCircuitID, r.CircuitID)
	add(subRemoteID, r.RemoteID)
	if r.LinkSelection.IsValid() {
		a := r.LinkSelection.As4()
		add(subLinkSelection, a[:])
	}
	if len(r.SubscriberID) > 0 {
		add(subSubscriberID, r.SubscriberID)
	}
	if r.Unicast {
		add(subRelayFlags, []byte{0x80}) // RFC 5010: U bit
	}
	if r.ServerIDOverride.IsValid() {
		a := r.ServerIDOverride.As4()
		add(subServerIDOverride, a[:])
	}
	if r.VSS != "" {
		add(subVSS, append([]byte{0}, r.VSS...)) // type 0: NVT ASCII VPN identifier
		// RFC 6607: with VSS, an empty VSS-Control. A server that
		// implements VSS removes it from its echo; one that does not
		// echoes it, and its answer (from the wrong address space)
		// must not be used.
		add(subVSSControl, nil)
	}
	return b
}

// relayUp turns a subscriber's message into the extended request ispmux
// sends to the ISP: giaddr = our uplink address, hops + 1, the ISP's real
// server identifier restored in place of ours (when the client named us),
// and exactly one option 82, ours, placed last (RFC 3046 §2.1). It works on
// the bytes: every other option is kept as the client sent it, in its
// order (RFC 3396 split options included). raw must be a message that
// dhcpv4.FromBytes accepted (m), so its options are well formed up to END.
func relayUp(raw []byte, m *dhcpv4.DHCPv4, giaddr netip.Addr, ourServerID, ispServerID netip.Addr, ri *relayInfo) []byte {
	op82 := ri.encode()
	out := make([]byte, 0, len(raw)+len(op82)+8)
	out = append(out, raw[:optionsStart]...)
	out[3] = m.HopCount + 1
	g := giaddr.As4()
	copy(out[24:28], g[:])
	restore := ourServerID.IsValid() && ispServerID.IsValid()
	var our, isp [4]byte
	if restore {
		our, isp = ourServerID.As4(), ispServerID.As4()
	}
	forEachOption(raw, func(code byte, data []byte) {
		switch {
		case code == optRelayAgentInfo:
			// Never forwarded (checkClient refuses such messages).
		case code == optSubnetSelection:
			// A subscriber does not choose the ISP's subnet (RFC
			// 3011: a server allocates from it, ahead of giaddr;
			// ispmux's link selection, when configured, says where).
		case code == optVSS:
			// Nor its VPN: a VSS-aware server (RFC 6607) would
			// allocate from the address space a client's option 221
			// names; ispmux's own VSS sub-option in Option 82, when
			// configured, is the only one (a review).
		case code == optServerID && restore && bytes.Equal(data, our[:]):
			out = append(out, optServerID, 4)
			out = append(out, isp[:]...)
		default:
			out = append(out, code, byte(len(data)))
			out = append(out, data...)
		}
	})
	out = appendSplit(out, optRelayAgentInfo, op82) // ours always fits one instance
	return finish(out)
}

// checkServer validates a message from an ISP's server and returns its
// option 82 payload, which must be exactly what we sent (want).
func checkServer(m *dhcpv4.DHCPv4, want []byte) error {
	if m.OpCode != dhcpv4.OpcodeBootReply {
		return errNotReply
	}
	if len(m.ClientHWAddr) != 6 {
		return errServerMalformed
	}
	if badOverload(m) {
		return errServerMalformed
	}
	got := m.Options.Get(dhcpv4.OptionRelayAgentInformation)
	if got == nil {
		return errOption82
	}
	if bytes.Equal(got, want) {
		if hasSubOption(want, subVSSControl) {
			return errVSSUnsupported // echoed VSS-Control: VSS not honoured
		}
		return nil
	}
	if hasSubOption(want, subVSSControl) && bytes.Equal(got, withoutSubOption(want, subVSSControl)) {
		return nil // a VSS server's echo: ours without VSS-Control
	}
	return errOption82
}

// badOverload reports whether a server's m has an option 52 that is not
// one of RFC 2132 §9.3's values (1 file, 2 sname, 3 both).
func badOverload(m *dhcpv4.DHCPv4) bool {
	if !m.Options.Has(dhcpv4.OptionOptionOverload) {
		return false
	}
	v := m.Options.Get(dhcpv4.OptionOptionOverload)
	return len(v) != 1 || v[0] < 1 || v[0] > 3
}

// hasSubOption reports whether the Option 82 payload b (as we encode it)
// holds sub-option code.
func hasSubOption(b []byte, code byte) bool {
	for len(b) >= 2 && 2+int(b[1]) <= len(b) {
		if b[0] == code {
			return true
		}
		b = b[2+int(b[1]):]
	}
	return false
}

// withoutSubOption returns b without sub-option code.
func withoutSubOption(b []byte, code byte) []byte {
	out := make([]byte, 0, len(b))
	for len(b) >= 2 && 2+int(b[1]) <= len(b) {
		n := 2 + int(b[1])
		if b[0] != code {
			out = append(out, b[:n]...)
		}
		b = b[n:]
	}
	return out
}

// relayDown turns an ISP's reply into the message ispmux sends to the
// subscriber as its server: every option 82 instance stripped, the server
// identifier ours (added when the server sent none), giaddr and hops
// cleared (the subscriber sees a server on its link), and the lease
// options ours: the ISP's 51, 58 and 59 are never passed on; with lease >
// 0 (an OFFER or ACK of a lease) 51 = lease, 58 = half of it, 59 = 7/8
// (appendLeaseOptions) take their place. Like relayUp it works on the
// bytes of a message dhcpv4.FromBytes accepted.
//
// A server may carry options in the file and sname fields (option 52,
// RFC 2131 §4.1, RFC 2132 §9.3): those fields are filtered in place (82,
// 51, 58, 59 and the ISP's 54 taken out, the rest kept in order) and
// option 52 is passed on, so the client reads them there as the server
// meant; ours go in the options field. The message may be longer than
// the ISP's (fitReply, which makes it fit the client, says why).
func relayDown(raw []byte, ourServerID netip.Addr, lease time.Duration) []byte {
	return relayDownTo(raw, ourServerID, lease, nil)
}

// clientSide is what the client's own message says of the reply it is
// owed (RFC 2131 Table 3): its flags, and its client identifier, which
// the reply echoes (RFC 6842 §3).
type clientSide struct {
	flags    [2]byte
	clientID []byte
	ciaddr   netip.Addr // the client message's ciaddr (invalid: 0), where a NAK goes (nakAddrOf)
}

// relayDownTo is relayDown, and with cs (nil: as the ISP sent them) the
// header and identifier the client is owed from its server, whatever the
// ISP's server sent (a trial's server sent otherwise): the client's flags,
// its client identifier added when the ISP's server did not echo it, and
// a NAK's ciaddr, yiaddr and siaddr 0.
func relayDownTo(raw []byte, ourServerID netip.Addr, lease time.Duration, cs *clientSide) []byte {
	out := make([]byte, 0, len(raw)+8)
	out = append(out, raw[:optionsStart]...)
	out[3] = 0
	clear(out[24:28])
	our := ourServerID.As4()
	sawServerID, sawType, sawClientID, nak := false, false, false, false
	forEachOption(raw, func(code byte, data []byte) {
		if ispOwned(code) {
			return
		}
		switch code {
		case optServerID:
			if sawServerID {
				return // a split 54 would concatenate onto ours
			}
			sawServerID = true
			out = append(out, optServerID, 4)
			out = append(out, our[:]...)
			return
		case optMessageType:
			sawType = true
			nak = nak || len(data) == 1 && data[0] == byte(dhcpv4.MessageTypeNak)
		case optClientID:
			sawClientID = true
		}
		out = append(out, code, byte(len(data)))
		out = append(out, data...)
	})
	if cs != nil {
		copy(out[10:12], cs.flags[:])
		if nak {
			clear(out[12:24]) // ciaddr, yiaddr, siaddr
		}
		// When the server used sname or file for options, one of them
		// may hold its 61, which a second would extend (RFC 3396): only
		// when none does.
		for _, f := range overloadedFields(raw) {
			forEachTLV(raw[f.lo:f.hi], func(code byte, _ []byte) {
				sawClientID = sawClientID || code == optClientID
			})
		}
		if !sawClientID && len(cs.clientID) > 0 && len(cs.clientID) <= 255 {
			out = append(out, optClientID, byte(len(cs.clientID)))
			out = append(out, cs.clientID...)
		}
	}
	for _, f := range overloadedFields(raw) {
		if filterField(out[f.lo:f.hi]) {
			sawType = true
		}
	}
	if !sawServerID && sawType {
		out = append(out, optServerID, 4)
		out = append(out, our[:]...)
	}
	if lease > 0 {
		out = appendLeaseOptions(out, lease)
	}
	return finish(out)
}

// The BOOTP fields a server may use for options (option 52).
const (
	snameStart, snameEnd = 44, 108
	fileStart, fileEnd   = 108, 236
)

// field is a byte range of a DHCP message.
type field struct{ lo, hi int }

// overloadedFields returns the fields of raw that hold options by its
// option 52, in the order they are read (RFC 2131 §4.1: file, then
// sname); none when it has no valid option 52.
func overloadedFields(raw []byte) []field {
	v := byte(0)
	forEachOption(raw, func(code byte, data []byte) {
		if code == optOverload && len(data) == 1 && v == 0 {
			v = data[0]
		}
	})
	switch v {
	case 1:
		return []field{{fileStart, fileEnd}}
	case 2:
		return []field{{snameStart, snameEnd}}
	case 3:
		return []field{{fileStart, fileEnd}, {snameStart, snameEnd}}
	}
	return nil
}

// withOverloaded adds to m the options raw carries only in its file and
// sname fields (option 52): the parser reads the options field alone, so
// a lease time, server identifier or message type a server put there was
// not seen (its OFFER dropped as without a server-id, its ACK as without a
// lease time). An option the options field has keeps that value (m is
// read for single values; relayDown passes the fields on as they are).
func withOverloaded(m *dhcpv4.DHCPv4, raw []byte) {
	for _, f := range overloadedFields(raw) {
		forEachTLV(raw[f.lo:f.hi], func(code byte, data []byte) {
			if _, ok := m.Options[code]; !ok {
				m.Options[code] = slices.Clone(data)
			}
		})
	}
}

// forEachOptionAll is forEachOption over the options field and then the
// fields option 52 says hold options.
func forEachOptionAll(raw []byte, fn func(code byte, data []byte)) {
	forEachOption(raw, fn)
	for _, f := range overloadedFields(raw) {
		forEachTLV(raw[f.lo:f.hi], fn)
	}
}

// ispOwned reports whether option code is one ispmux never passes on from
// an ISP's reply (relayDown) or a stored binding's options (localACK):
// option 82 (ours, echoed), the lease options (ispmux sets the client's
// lease) and IPv6-only preferred (108, RFC 8925: it tells the client to
// give up IPv4 for IPv6 alone, which ispmux does not forward) and subnet
// selection (118, RFC 3011: a server returns it to a client that sent it,
// and ispmux sends none of its subscribers' up; dnsmasq answers ispmux's
// link selection with it). The server identifier is not passed on either,
// but replaced by ours.
func ispOwned(code byte) bool {
	switch code {
	case optRelayAgentInfo, optLeaseTime, optRenewalTime, optRebindingTime, optIPv6OnlyPreferred, optSubnetSelection:
		return true
	}
	return false
}

// filterField rewrites the options in an overloaded field b in place for
// the subscriber (relayDown): 82, 51, 58, 59, 108, 118 and 54 taken out, the others
// kept in order, END after them and the rest zeroed. It reports whether
// the field holds the message type (53).
func filterField(b []byte) (sawType bool) {
	var buf [fileEnd - fileStart]byte
	kept := buf[:0]
	forEachTLV(b, func(code byte, data []byte) {
		if ispOwned(code) || code == optServerID {
			return
		}
		if code == optMessageType {
			sawType = true
		}
		kept = append(kept, code, byte(len(data)))
		kept = append(kept, data...)
	})
	n := copy(b, kept)
	if n < len(b) {
		b[n] = optEnd
		clear(b[n+1:])
	}
	return sawType
}

// appendLeaseOptions appends the lease options of a client lease: 51 =
// lease, 58 (T1) = half of it, 59 (T2) = 7/8 of it, in whole seconds.
func appendLeaseOptions(out []byte, lease time.Duration) []byte {
	s := uint64(lease / time.Second)
	s = min(s, 0xffffffff)
	for _, o := range [...]struct {
		code byte
		v    uint64
	}{{optLeaseTime, s}, {optRenewalTime, s / 2}, {optRebindingTime, s * 7 / 8}} {
		out = append(out, o.code, 4, byte(o.v>>24), byte(o.v>>16), byte(o.v>>8), byte(o.v))
	}
	return out
}

// DHCP message layout (RFC 2131): the options follow the fixed header and
// the magic cookie.
const (
	optionsStart      = 240
	optLeaseTime      = 51
	optOverload       = 52
	optMaxMessageSize = 57
	optServerID       = 54
	optMessage        = 56
	optMessageType    = 53
	optRenewalTime    = 58
	optRebindingTime  = 59
	optClientID       = 61
	optRelayAgentInfo = 82
	// optSubnetSelection is RFC 3011's subnet selection.
	optSubnetSelection = 118
	// optVSS is RFC 6607's Virtual Subnet Selection option.
	optVSS = 221
	// optRapidCommit is RFC 4039's rapid commit.
	optRapidCommit = 80
	// optIPv6OnlyPreferred is RFC 8925's IPv6-only preferred.
	optIPv6OnlyPreferred = 108
	optPad               = 0
	optEnd               = 255
	bootpMinLen          = 300
)

// parseMessage is dhcpv4.FromBytes of raw or, when raw's options run to
// its last byte (or into padding) without an END option, of raw with one
// added (withEnd), and the bytes it parsed, which the relay passes on
// (relayUp and relayDown write their own END) and the intents store.
// RFC 2131 §4.1 says END MUST be there, but ISC dhcpd and Kea accept a
// message without it, and send one: dhcpd 4.4 leaves END out of a full
// options field when it overloads file/sname, and a client's was refused
// as malformed. An option whose length runs past the message is still
// malformed.
func parseMessage(raw []byte) (*dhcpv4.DHCPv4, []byte, error) {
	m, err := dhcpv4.FromBytes(raw)
	if err != nil {
		if fixed := withEnd(raw); len(fixed) != len(raw) {
			m, err = dhcpv4.FromBytes(fixed)
			raw = fixed
		}
	}
	return m, raw, err
}

// withEnd returns raw with an END option after its options when they run
// to its last byte, or into padding that does, without one (parseMessage
// says why); raw itself otherwise.
func withEnd(raw []byte) []byte {
	if len(raw) <= optionsStart {
		return raw
	}
	b := raw[optionsStart:]
	for len(b) > 0 {
		switch {
		case b[0] == optPad:
			b = b[1:]
			continue
		case b[0] == optEnd, len(b) < 2, int(b[1]) > len(b)-2:
			return raw
		}
		b = b[2+int(b[1]):]
	}
	return append(raw[:len(raw):len(raw)], optEnd)
}

// forEachOption calls fn for every option instance of a well-formed
// message, in order, until END; pads are skipped.
func forEachOption(raw []byte, fn func(code byte, data []byte)) {
	forEachTLV(raw[optionsStart:], fn)
}

// forEachTLV calls fn for every option instance in b (options as TLVs, as
// a binding stores the ACK's), in order, until END or the first one that
// overruns b; pads are skipped.
func forEachTLV(b []byte, fn func(code byte, data []byte)) {
	for len(b) > 0 {
		code := b[0]
		if code == optPad {
			b = b[1:]
			continue
		}
		if code == optEnd || len(b) < 2 || int(b[1]) > len(b)-2 {
			return
		}
		n := 2 + int(b[1]) // int: 2+b[1] in byte arithmetic wraps at 254
		fn(code, b[2:n])
		b = b[n:]
	}
}

// finish ends the options and pads to the BOOTP minimum some servers and
// clients insist on.
func finish(out []byte) []byte {
	out = append(out, optEnd)
	for len(out) < bootpMinLen {
		out = append(out, optPad)
	}
	return out
}

// parseOption82 splits an option 82 payload into sub-options.
func parseOption82(b []byte) (map[byte][]byte, error) {
	out := map[byte][]byte{}
	for len(b) > 0 {
		if len(b) < 2 || int(b[1]) > len(b)-2 {
			return nil, fmt.Errorf("option 82: sub-option overruns")
		}
		n := 2 + int(b[1])
		out[b[0]] = append(out[b[0]], b[2:n]...)
		b = b[n:]
	}
	return out, nil
}
