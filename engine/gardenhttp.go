package engine

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/internal/oatable"
)

// The walled garden's HTTP elsewhere: a connection of a garden device to
// port 80 of an address other than the portal's (an http:// URL with an
// IP literal or a cached DNS answer, a probe that does not resolve names)
// is answered by the datapath itself, without state, with a redirect to
// the portal, as a captive portal's interception does. Before, it was
// dropped and the browser waited for a minute (a portal trial); HTTPS
// there gets a reset (answerRST), which a redirect cannot be without a
// certificate for the name.
//
// The exchange, each answer computed from the segment alone:
//
//   - SYN → SYN-ACK from the address asked, its sequence number a keyed
//     hash of the connection's addresses and ports (httpISN), with an MSS
//     of 1460 so that a request fits one segment;
//   - the first data segment (its ACK acknowledging the SYN-ACK) → one
//     segment with the redirect (gardenRedirect), PSH and FIN: the
//     answer, and the end of the connection;
//   - the client's FIN acknowledging ours → its ACK.
//
// Anything else (the handshake's last ACK, the ACK of the answer, a
// segment acknowledging something else, a reset) is dropped as
// walled_garden.

// httpMSS is the MSS the SYN-ACK offers.
const httpMSS = 1460

// tcpPSH is the TCP PSH flag.
const tcpPSH = 0x08

// gardenRedirect is the answer to a garden device's HTTP request to
// another address than the portal's: a redirect to the portal by its
// address, whose HTTP listener sends it on to the portal's https:// URL.
func gardenRedirect(portal uint32) []byte {
	a := netip.AddrFrom4([4]byte{byte(portal >> 24), byte(portal >> 16), byte(portal >> 8), byte(portal)})
	return fmt.Appendf(nil, "HTTP/1.1 302 Found\r\nLocation: http://%s/\r\nCache-Control: no-store\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", a)
}

// httpISN is the sequence number the garden's SYN-ACK from dst:dport to
// src:sport starts at: a keyed hash of the four, the same for every
// segment of the connection (no state is kept).
func (g *garden) httpISN(src, dst uint32, sport, dport uint16) uint32 {
	k := uint64(src)<<32 | uint64(dst)
	return uint32(oatable.Mix64(k ^ oatable.Mix64(uint64(sport)<<16|uint64(dport)^g.seed)))
}

// answerHTTP answers the TCP segment in f, to port 80 of an address other
// than the portal's, as the exchange above says, in place, back out of the
// port it came from. It reports false, leaving f alone, for a segment it
// does not answer; one it would answer whose TCP checksum fails is dropped
// here, bad_checksum (reporting true: dealt with).
func (p *Processor) answerHTTP(in uint8, out *datapath.Verdict, pkt *classifier.Packet, f []byte, mac uint64, g *garden) bool {
	seg, doff, flags, ok := gardenSegment(pkt, f)
	if !ok {
		return false
	}
	seq, ack := binary.BigEndian.Uint32(seg[4:]), binary.BigEndian.Uint32(seg[8:])
	data := uint32(len(seg) - doff)
	isn := g.httpISN(pkt.SrcIP, pkt.DstIP, pkt.SrcPort, pkt.DstPort)
	var rseq, rack uint32
	var rflags byte
	var opts, payload []byte
	var mss [4]byte
	switch {
	case flags&(tcpSYN|tcpACK) == tcpSYN:
		rseq, rack, rflags = isn, seq+1, tcpSYN|tcpACK
		mss = [4]byte{2, 4, httpMSS >> 8, httpMSS & 0xff}
		opts = mss[:]
	case flags&tcpACK != 0 && flags&tcpSYN == 0 && ack == isn+1 && data > 0:
		rseq, rack, rflags = isn+1, seq+data, tcpACK|tcpPSH|tcpFIN
		if flags&tcpFIN != 0 {
			rack++
		}
		payload = g.redirect
	case flags&(tcpACK|tcpFIN|tcpSYN) == tcpACK|tcpFIN && ack == isn+2+uint32(len(g.redirect)):
		rseq, rack, rflags = ack, seq+data+1, tcpACK
	default:
		return false
	}
	if !l4ChecksumOK(pkt, f) {
		p.drop(in, out, classifier.ReasonBadChecksum)
		return true
	}
	b := f[:cap(f)]
	n := putTCPAnswer(b, pkt, rseq, rack, rflags, 0xffff, opts, payload)
	if n == 0 {
		return false
	}
	// Every segment sent is counted once it is: the redirect, or a
	// SYN-ACK or the ACK of a FIN (a frame the garden sent that no
	// counter showed, the handshake's, before).
	if payload != nil {
		p.httpN[in]++
	} else {
		p.hsN[in]++
	}
	p.answer(in, out, pkt, b, mac, n)
	return true
}
