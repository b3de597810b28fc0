package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// The walled garden's DNS responder: every name the garden answers for
// resolves to the portal. It works on the query's bytes, in place, and
// allocates nothing.
//
// It answers only a plain query: QR 0, opcode QUERY, one question, no
// answer or authority records, at most one additional record which must be
// an EDNS(0) OPT pseudo-record (RFC 6891), and nothing after the records
// counted; the question's name made of uncompressed labels (each at most 63
// bytes, the name at most 255 bytes on the wire) and its class IN. Anything
// else gets no answer (the engine drops it as walled_garden).
//
// The answer keeps the ID and the question as they were (the name's case
// too), QR and AA set, RD copied, RA 0:
//
//   - a name the garden answers for, type A: NOERROR, one A record (the
//     name as a pointer to the question, TTL 1 s, the portal's address);
//   - a name the garden answers for, any other type (AAAA, HTTPS, ...):
//     NOERROR with no record (NODATA), so that clients fall back to A;
//   - any other name: NXDOMAIN with no record.
//
// A query with an OPT record is answered with a minimal OPT of ours (a
// responder that ignores EDNS must answer FORMERR, RFC 6891 §7): payload
// size 1232, version 0, the DO bit copied (RFC 3225), no options (the
// query's, cookies and padding among them, must be well-formed option TLVs
// filling the OPT's data, and are ignored). A query of EDNS version other
// than 0 gets BADVERS (RFC 6891 §6.1.3) and no record.
const (
	dnsHeaderLen  = 12
	dnsMaxName    = 255 // on the wire, root label included
	dnsMaxLabel   = 63
	dnsTypeA      = 1
	dnsTypeOPT    = 41
	dnsClassIN    = 1
	dnsNXDomain   = 3
	dnsAnswerLen  = 16 // name pointer, type, class, TTL, RDLENGTH, address
	dnsOPTLen     = 11 // root name, type, class, TTL, RDLENGTH
	dnsTTL        = 1
	dnsUDPPayload = 1232
	dnsBadVers    = 16 // extended RCODE: upper 8 bits in the OPT's TTL

	dnsFlagQR = 0x8000
	dnsFlagAA = 0x0400
	dnsFlagRD = 0x0100
)

// dohCanary is Firefox's canary domain, use-application-dns.net, in wire
// format: a network whose resolver answers it NXDOMAIN asks Firefox not to
// turn DNS over HTTPS on by itself, so that its names resolve here, to
// the portal, and its captive-portal detection sees the garden. Answered
// with the portal's address (a portal trial), Firefox would resolve names
// over HTTPS, blocked here, and not find the portal.
var dohCanary = []byte("\x13use-application-dns\x03net\x00")

// dnsRespond turns the DNS query b[:n] into the garden's answer in place
// (b's bytes beyond n are room for it) and returns the answer's length, or
// 0 when the query is not one it answers or the answer does not fit in b.
// It never reads or writes outside b. portal is the address A queries get;
// names, when not empty, are the only names answered (lower-case wire
// format, see gardenName); empty, every name but dohCanary is.
func dnsRespond(b []byte, n int, portal uint32, names [][]byte) int {
	if n < dnsHeaderLen || n > len(b) {
		return 0
	}
	flags := binary.BigEndian.Uint16(b[2:])
	if flags&dnsFlagQR != 0 || flags>>11&0xf != 0 {
		return 0
	}
	if binary.BigEndian.Uint16(b[4:]) != 1 || binary.BigEndian.Uint16(b[6:]) != 0 ||
		binary.BigEndian.Uint16(b[8:]) != 0 {
		return 0
	}
	arcount := binary.BigEndian.Uint16(b[10:])
	if arcount > 1 {
		return 0
	}

	// The question's name, lower-cased into name (the query keeps its own).
	var name [dnsMaxName]byte
	off := dnsHeaderLen
	for {
		if off >= n {
			return 0
		}
		l := int(b[off])
		if l == 0 {
			break
		}
		// Above 63: a compression pointer (0xC0) or a reserved label type.
		if l > dnsMaxLabel || off+1+l >= n || off+1+l+1-dnsHeaderLen > dnsMaxName {
			return 0
		}
		w := off - dnsHeaderLen
		name[w] = byte(l)
		for i, c := range b[off+1 : off+1+l] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			name[w+1+i] = c
		}
		off += 1 + l
	}
	nameLen := off + 1 - dnsHeaderLen // with the root label, name[nameLen-1] == 0
	off++
	if off+4 > n {
		return 0
	}
	qtype := binary.BigEndian.Uint16(b[off:])
	if binary.BigEndian.Uint16(b[off+2:]) != dnsClassIN {
		return 0
	}
	end := off + 4 // the question's end: the answer starts here

	// EDNS(0): one OPT record, the root name, ending the message.
	edns, badVers, do := false, false, false
	if arcount == 1 {
		o := b[end:n]
		if len(o) < dnsOPTLen || o[0] != 0 || binary.BigEndian.Uint16(o[1:]) != dnsTypeOPT ||
			dnsOPTLen+int(binary.BigEndian.Uint16(o[9:])) != len(o) {
			return 0
		}
		for opts := o[dnsOPTLen:]; len(opts) > 0; {
			// Options (code, length, data) must fill the RDATA exactly.
			if len(opts) < 4 || 4+int(binary.BigEndian.Uint16(opts[2:])) > len(opts) {
				return 0
			}
			opts = opts[4+int(binary.BigEndian.Uint16(opts[2:])):]
		}
		edns, badVers, do = true, o[6] != 0, o[7]&0x80 != 0
	} else if end != n {
		return 0
	}

	known := len(names) == 0 && !bytes.Equal(name[:nameLen], dohCanary)
	for _, nm := range names {
		if bytes.Equal(nm, name[:nameLen]) {
			known = true
			break
		}
	}
	rflags := dnsFlagQR | dnsFlagAA | flags&dnsFlagRD
	ancount := 0
	switch {
	case badVers:
	case !known:
		rflags |= dnsNXDomain
	case qtype == dnsTypeA:
		ancount = 1
	}
	size := end + ancount*dnsAnswerLen
	if edns {
		size += dnsOPTLen
	}
	if size > len(b) {
		return 0
	}

	// The OPT is overwritten by our records: its fields were read above.
	binary.BigEndian.PutUint16(b[2:], rflags)
	binary.BigEndian.PutUint16(b[6:], uint16(ancount))
	binary.BigEndian.PutUint16(b[10:], 0)
	if ancount == 1 {
		a := b[end : end+dnsAnswerLen]
		binary.BigEndian.PutUint16(a[0:], 0xc000|dnsHeaderLen) // the question's name
		binary.BigEndian.PutUint16(a[2:], dnsTypeA)
		binary.BigEndian.PutUint16(a[4:], dnsClassIN)
		binary.BigEndian.PutUint32(a[6:], dnsTTL)
		binary.BigEndian.PutUint16(a[10:], 4)
		binary.BigEndian.PutUint32(a[12:], portal)
		end += dnsAnswerLen
	}
	if edns {
		o := b[end : end+dnsOPTLen]
		clear(o)
		binary.BigEndian.PutUint16(o[1:], dnsTypeOPT)
		binary.BigEndian.PutUint16(o[3:], dnsUDPPayload)
		if badVers {
			o[5] = dnsBadVers >> 4
		}
		if do {
			o[7] = 0x80
		}
		binary.BigEndian.PutUint16(b[10:], 1)
		end += dnsOPTLen
	}
	return end
}

// gardenName returns name in lower-case DNS wire format (length-prefixed
// labels ending with the root label).
func gardenName(name string) ([]byte, error) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if name == "" {
		return nil, fmt.Errorf("empty")
	}
	var w []byte
	for l := range strings.SplitSeq(name, ".") {
		if l == "" || len(l) > dnsMaxLabel {
			return nil, fmt.Errorf("label %q: want 1..%d bytes", l, dnsMaxLabel)
		}
		w = append(append(w, byte(len(l))), l...)
	}
	if w = append(w, 0); len(w) > dnsMaxName {
		return nil, fmt.Errorf("%d bytes on the wire, more than %d", len(w), dnsMaxName)
	}
	return w, nil
}
