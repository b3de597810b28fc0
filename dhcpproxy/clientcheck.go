package dhcpproxy

import (
	"bytes"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// What a subscriber's message must be before anything else happens
// (checkClient, fixedLengths), and how a refusal is told (clientRefusal,
// unparsed): the refusals are counted by the errors in relay.go.

// clientRefusal is the rejected event's reason for a client message
// fromClient refused with err (one of checkClient's, or errMalformed for
// one that does not parse): the counter's name, and what the message
// carried.
func clientRefusal(err error) string {
	why := ""
	switch err {
	case errChaddr:
		why = "its client hardware address (chaddr) is not the frame's source MAC"
	case errClientOption82:
		why = "it carries Option 82 (relay agent information), which only a relay adds"
	case errClientGiaddr:
		why = "it carries a relay agent address (giaddr), which only a relay sets"
	case errMalformed:
		why = "it does not parse as DHCP (shorter than 240 bytes, or an option overrunning it), its op is neither BOOTREQUEST nor BOOTREPLY, or its hardware address is not Ethernet"
	case errNotRequest:
		why = "it is a BOOTREPLY (op 2), which only a server sends"
	case errOverload:
		why = "it carries option 52 (options in sname or file), which ispmux does not relay"
	case errOptionLength:
		why = "an option has the wrong length for its kind (RFC 2132: message type 1 byte; requested address, lease time, server identifier 4; maximum message size 2; client identifier at least 2)"
	case errNoMessageType:
		why = "it has no message type (option 53): BOOTP, not served"
	case errNotClientType:
		why = "its message type is not one a client sends (RFC 2131 table 2)"
	case errHops:
		why = "its hops field is 16 or more (RFC 1542)"
	default:
		return "DHCP message refused: " + err.Error()
	}
	return "DHCP message refused (" + err.Error() + "): " + why
}

// unparsed is why a client message parseMessage refused is refused:
// a plain BOOTP client's (RFC 951: a BOOTREQUEST whose vendor area does
// not open with the magic cookie of RFC 1497's options) has no message
// type, as one with the cookie and no option 53 has; any other is
// malformed.
func unparsed(b []byte) error {
	if len(b) >= optionsStart && b[0] == byte(dhcpv4.OpcodeBootRequest) && !bytes.Equal(b[236:240], magicCookie[:]) {
		return errNoMessageType
	}
	return errMalformed
}

// checkClient validates a message received from a subscriber port. mac is
// the Ethernet source address of the frame that carried it.
func checkClient(m *dhcpv4.DHCPv4, mac []byte) error {
	switch {
	case m.OpCode != dhcpv4.OpcodeBootRequest && m.OpCode != dhcpv4.OpcodeBootReply:
		return errMalformed // no BOOTP op (RFC 951): not a BOOTREPLY either
	case m.OpCode != dhcpv4.OpcodeBootRequest:
		return errNotRequest
	case len(m.ClientHWAddr) != 6 || m.HWType != 1:
		return errMalformed
	case !bytes.Equal(m.ClientHWAddr, mac):
		return errChaddr
	case m.Options.Has(dhcpv4.OptionRelayAgentInformation):
		// RFC 3046 §2.1: an untrusted port's message with option 82
		// (and giaddr 0) is discarded; any second instance is
		// concatenated by the parser (RFC 3396), so none slips through.
		return errClientOption82
	case m.GatewayIPAddr != nil && !m.GatewayIPAddr.IsUnspecified():
		return errClientGiaddr
	case m.Options.Has(dhcpv4.OptionOptionOverload):
		// Options carried in sname/file would be lost by re-encoding.
		return errOverload
	case m.HopCount >= maxHops:
		return errHops
	case !fixedLengths(m):
		// Before the message type: one of the wrong length (two
		// instances, concatenated) reads as none, but the message has
		// one.
		return errOptionLength
	case !m.Options.Has(dhcpv4.OptionDHCPMessageType):
		// A BOOTP message. One of type 0 has a type, none a client
		// sends (below).
		return errNoMessageType
	}
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeDecline,
		dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeInform:
		return nil
	}
	// RFC 2131 table 2: nothing else comes from a client (a LEASEQUERY,
	// RFC 4388, or a server's type must not reach the ISP from our
	// giaddr).
	return errNotClientType
}

// fixedLengths reports whether m's options of a fixed length (RFC 2132)
// have it: 53 one byte, 50, 51 and 54 four, 57 two, 61 at least two. The
// decisions read the parsed values, which the library leaves unset for
// any other length, while the relay passes the bytes on as sent: a
// REQUEST with a 5-byte option 54 (the ISP's server identifier and a junk
// byte) would skip the NAK rule and the check of the server chosen here,
// and reach an ISP server that reads the first four bytes (a review).
func fixedLengths(m *dhcpv4.DHCPv4) bool {
	for _, o := range [...]struct {
		code     dhcpv4.OptionCode
		min, max int
	}{
		{dhcpv4.OptionDHCPMessageType, 1, 1},
		{dhcpv4.OptionRequestedIPAddress, 4, 4},
		{dhcpv4.OptionIPAddressLeaseTime, 4, 4},
		{dhcpv4.OptionServerIdentifier, 4, 4},
		{dhcpv4.OptionMaximumDHCPMessageSize, 2, 2},
		{dhcpv4.OptionClientIdentifier, 2, 255 * 255},
	} {
		if v, ok := m.Options[o.code.Code()]; ok && (len(v) < o.min || len(v) > o.max) {
			return false
		}
	}
	return true
}
