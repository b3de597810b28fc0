package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
)

// The generator's side of the wire: the AF_PACKET socket filtered to DHCP
// replies, the DISCOVER and REQUEST frames the clients broadcast, and the
// parsing of the replies.

// dhcpPortFilter is a classic BPF program accepting only untagged IPv4
// UDP frames to port 68 (non-fragments): DHCP replies to clients. The
// generator's own DISCOVERs and REQUESTs (to port 67) never reach it.
var dhcpPortFilter = []unix.SockFilter{
	{Code: 0x28, K: 12},                   // ldh [12]            ethertype
	{Code: 0x15, Jt: 0, Jf: 8, K: 0x0800}, // jeq #0x800
	{Code: 0x30, K: 23},                   // ldb [23]            protocol
	{Code: 0x15, Jt: 0, Jf: 6, K: 17},     // jeq #17
	{Code: 0x28, K: 20},                   // ldh [20]            fragment
	{Code: 0x45, Jt: 4, Jf: 0, K: 0x1fff}, // jset #0x1fff
	{Code: 0xb1, K: 14},                   // ldxb 4*([14]&0xf)   IP header length
	{Code: 0x48, K: 16},                   // ldh [x+16]          UDP dst port
	{Code: 0x15, Jt: 0, Jf: 1, K: 68},     // jeq #68
	{Code: 0x06, K: 0x40000},              // ret #262144
	{Code: 0x06, K: 0},                    // ret #0
}

// openGenSocket opens the AF_PACKET socket: bound to ifindex, promiscuous
// (replies are unicast to every client MAC), filtered to DHCP replies,
// with a large receive buffer and a receive timeout so that the reader
// notices the end.
func openGenSocket(ifindex int) (int, error) {
	proto := int(htons(unix.ETH_P_IP))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	fail := func(what string, err error) (int, error) {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: %w", what, err)
	}
	prog := unix.SockFprog{Len: uint16(len(dhcpPortFilter)), Filter: &dhcpPortFilter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fail("SO_ATTACH_FILTER", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex}); err != nil {
		return fail("bind", err)
	}
	mreq := unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		return fail("PACKET_ADD_MEMBERSHIP", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail("SO_RCVTIMEO", err)
	}
	return fd, nil
}

func sendFrame(fd, ifindex int, f []byte) error {
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex, Halen: 6}
	copy(to.Addr[:], f[0:6])
	for {
		err := unix.Sendto(fd, f, 0, to)
		if err == unix.EINTR {
			continue
		}
		return err
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// paramRequest is what the generated clients ask for (as dhclient does).
var paramRequest = dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
	dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue)

// discoverFrame builds a broadcast DISCOVER from mac with transaction xid.
func discoverFrame(mac net.HardwareAddr, xid dhcpv4.TransactionID) []byte {
	m, err := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithTransactionID(xid),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), paramRequest)
	if err != nil {
		panic(err) // only a failing random source; not with a fixed xid
	}
	return clientFrame(mac, m.ToBytes())
}

// requestFrame builds the broadcast REQUEST (SELECTING state: option 50
// the offered address, option 54 the offering server).
func requestFrame(mac net.HardwareAddr, xid dhcpv4.TransactionID, yiaddr, serverID net.IP) []byte {
	m, err := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithTransactionID(xid),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), paramRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(yiaddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverID)))
	if err != nil {
		panic(err)
	}
	return clientFrame(mac, m.ToBytes())
}

// clientFrame wraps a client's DHCP payload: Ethernet broadcast from mac,
// IPv4 0.0.0.0 → 255.255.255.255, UDP 68 → 67, both checksums computed.
func clientFrame(mac net.HardwareAddr, payload []byte) []byte {
	return fib.UDPFrame(classifier.BroadcastMAC, fib.MAC(mac), 0, netip.IPv4Unspecified(),
		netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, payload)
}

// parseReply extracts the DHCP message of an untagged Ethernet/IPv4/UDP
// frame to port 68 and checks that it is a BOOTREPLY.
func parseReply(f []byte) (*dhcpv4.DHCPv4, error) {
	if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return nil, errors.New("not IPv4")
	}
	ip := f[14:]
	ihl := int(ip[0]&0xf) * 4
	if ip[0]>>4 != 4 || ihl < 20 || len(ip) < ihl+8 || ip[9] != 17 {
		return nil, errors.New("not UDP over IPv4")
	}
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if total < ihl+8 || total > len(ip) {
		return nil, errors.New("bad IPv4 length")
	}
	u := ip[ihl:total]
	if binary.BigEndian.Uint16(u[2:]) != 68 {
		return nil, errors.New("not to port 68")
	}
	ul := int(binary.BigEndian.Uint16(u[4:]))
	if ul < 8 || ul > len(u) {
		return nil, errors.New("bad UDP length")
	}
	m, err := dhcpv4.FromBytes(u[8:ul])
	if err != nil {
		return nil, err
	}
	if m.OpCode != dhcpv4.OpcodeBootReply {
		return nil, errors.New("not a BOOTREPLY")
	}
	return m, nil
}
