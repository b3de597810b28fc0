package engine

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// wireName encodes a dotted name as DNS labels, without checking them (the
// tests need invalid ones too).
func wireName(name string) []byte {
	var w []byte
	if name != "" {
		for l := range strings.SplitSeq(name, ".") {
			w = append(append(w, byte(len(l))), l...)
		}
	}
	return append(w, 0)
}

// dnsMsg builds a DNS message: the header with counts qd, an, ns, ar, one
// question (qname already in wire format) and extra appended as is.
func dnsMsg(id, flags, qd, an, ns, ar uint16, qname []byte, qtype, qclass uint16, extra []byte) []byte {
	m := binary.BigEndian.AppendUint16(nil, id)
	for _, v := range []uint16{flags, qd, an, ns, ar} {
		m = binary.BigEndian.AppendUint16(m, v)
	}
	m = append(m, qname...)
	m = binary.BigEndian.AppendUint16(m, qtype)
	m = binary.BigEndian.AppendUint16(m, qclass)
	return append(m, extra...)
}

// optRR is an OPT pseudo-record: UDP payload size, version, DO bit, rdata.
func optRR(size uint16, version uint8, do bool, rdata []byte) []byte {
	o := []byte{0, 0, dnsTypeOPT}
	o = binary.BigEndian.AppendUint16(o, size)
	var fl byte
	if do {
		fl = 0x80
	}
	o = append(o, 0, version, fl, 0)
	o = binary.BigEndian.AppendUint16(o, uint16(len(rdata)))
	return append(o, rdata...)
}

// query is a standard query for name (RD set), optionally with an OPT.
func query(id uint16, name string, qtype uint16, opt []byte) []byte {
	ar := uint16(0)
	if opt != nil {
		ar = 1
	}
	return dnsMsg(id, dnsFlagRD, 1, 0, 0, ar, wireName(name), qtype, dnsClassIN, opt)
}

// respond runs dnsRespond on a copy of msg with room bytes after it.
func respond(t testing.TB, msg []byte, room int, names ...string) []byte {
	t.Helper()
	var ws [][]byte
	for _, n := range names {
		w, err := gardenName(n)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	b := make([]byte, len(msg)+room)
	copy(b, msg)
	n := dnsRespond(b, len(msg), 0x0a_ff_00_02, ws)
	return b[:n]
}

func parseDNS(t testing.TB, b []byte) *layers.DNS {
	t.Helper()
	d := &layers.DNS{}
	if err := d.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		t.Fatalf("answer does not parse: %v (%x)", err, b)
	}
	return d
}

func TestDNSRespond(t *testing.T) {
	cookie := []byte{0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8} // EDNS cookie option
	cases := []struct {
		name    string
		msg     []byte
		names   []string
		rcode   layers.DNSResponseCode
		answer  bool // one A record for the portal
		opt     bool // our OPT record
		do      bool
		qname   string
		noRD    bool
		rejects bool
	}{
		{name: "A", msg: query(0x1234, "example.com", dnsTypeA, nil), answer: true, qname: "example.com"},
		{name: "A keeps the name's case", msg: query(7, "ExAmPle.COM", dnsTypeA, nil), answer: true, qname: "ExAmPle.COM"},
		{name: "A without RD", msg: dnsMsg(9, 0, 1, 0, 0, 0, wireName("a.b"), dnsTypeA, dnsClassIN, nil), answer: true, qname: "a.b", noRD: true},
		{name: "root A", msg: query(9, "", dnsTypeA, nil), answer: true, qname: "<Root>"},
		{name: "AAAA NODATA", msg: query(1, "example.com", 28, nil), qname: "example.com"},
		{name: "HTTPS NODATA", msg: query(1, "example.com", 65, nil), qname: "example.com"},
		{name: "listed name", msg: query(2, "Portal.example.NET", dnsTypeA, nil), names: []string{"captive.apple.com", "portal.Example.net."}, answer: true, qname: "Portal.example.NET"},
		{name: "listed name AAAA", msg: query(2, "portal.example.net", 28, nil), names: []string{"portal.example.net"}, qname: "portal.example.net"},
		{name: "unlisted name", msg: query(3, "example.com", dnsTypeA, nil), names: []string{"portal.example.net"}, rcode: layers.DNSResponseCodeNXDomain, qname: "example.com"},
		{name: "parent of a listed name", msg: query(3, "example.net", dnsTypeA, nil), names: []string{"portal.example.net"}, rcode: layers.DNSResponseCodeNXDomain, qname: "example.net"},
		{name: "EDNS", msg: query(4, "example.com", dnsTypeA, optRR(4096, 0, false, nil)), answer: true, opt: true, qname: "example.com"},
		{name: "EDNS DO and cookie", msg: query(4, "example.com", dnsTypeA, optRR(1232, 0, true, cookie)), answer: true, opt: true, do: true, qname: "example.com"},
		{name: "EDNS NXDOMAIN", msg: query(4, "example.com", dnsTypeA, optRR(512, 0, false, nil)), names: []string{"x.y"}, rcode: layers.DNSResponseCodeNXDomain, opt: true, qname: "example.com"},
		// Firefox's DNS-over-HTTPS canary: NXDOMAIN keeps Firefox on the
		// garden's DNS (it got the portal's address: a portal trial).
		{name: "DoH canary", msg: query(5, "Use-Application-DNS.net", dnsTypeA, nil), rcode: layers.DNSResponseCodeNXDomain, qname: "Use-Application-DNS.net"},
		{name: "below the canary", msg: query(5, "x.use-application-dns.net", dnsTypeA, nil), answer: true, qname: "x.use-application-dns.net"},
		{name: "EDNS version 1", msg: query(5, "example.com", dnsTypeA, optRR(4096, 1, false, nil)), rcode: layers.DNSResponseCodeBadVers, opt: true, qname: "example.com"},
		{name: "longest name", msg: query(6, strings.Repeat(strings.Repeat("a", 63)+".", 3)+strings.Repeat("b", 61), dnsTypeA, nil), answer: true},

		{name: "response", msg: dnsMsg(1, dnsFlagQR, 1, 0, 0, 0, wireName("a.b"), dnsTypeA, dnsClassIN, nil), rejects: true},
		{name: "opcode STATUS", msg: dnsMsg(1, 2<<11, 1, 0, 0, 0, wireName("a.b"), dnsTypeA, dnsClassIN, nil), rejects: true},
		{name: "QDCOUNT 0", msg: dnsMsg(1, 0, 0, 0, 0, 0, nil, 0, 0, nil)[:12], rejects: true},
		{name: "QDCOUNT 2", msg: dnsMsg(1, 0, 2, 0, 0, 0, wireName("a.b"), dnsTypeA, dnsClassIN, append(wireName("c.d"), 0, 1, 0, 1)), rejects: true},
		{name: "ANCOUNT 1", msg: dnsMsg(1, 0, 1, 1, 0, 0, wireName("a.b"), dnsTypeA, dnsClassIN, nil), rejects: true},
		{name: "NSCOUNT 1", msg: dnsMsg(1, 0, 1, 0, 1, 0, wireName("a.b"), dnsTypeA, dnsClassIN, nil), rejects: true},
		{name: "ARCOUNT 2", msg: dnsMsg(1, 0, 1, 0, 0, 2, wireName("a.b"), dnsTypeA, dnsClassIN, append(optRR(512, 0, false, nil), optRR(512, 0, false, nil)...)), rejects: true},
		{name: "additional not OPT", msg: dnsMsg(1, 0, 1, 0, 0, 1, wireName("a.b"), dnsTypeA, dnsClassIN, []byte{0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4}), rejects: true},
		{name: "OPT with a name", msg: dnsMsg(1, 0, 1, 0, 0, 1, wireName("a.b"), dnsTypeA, dnsClassIN, append([]byte{1, 'x'}, optRR(512, 0, false, nil)...)), rejects: true},
		{name: "OPT rdata truncated", msg: query(1, "a.b", dnsTypeA, optRR(512, 0, false, cookie)[:15]), rejects: true},
		{name: "OPT option overruns its data", msg: query(1, "a.b", dnsTypeA, optRR(512, 0, false, []byte{0, 10, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8})), rejects: true},
		{name: "OPT option header truncated", msg: query(1, "a.b", dnsTypeA, optRR(512, 0, false, []byte{0, 10, 0})), rejects: true},
		{name: "ARCOUNT 1 without record", msg: dnsMsg(1, 0, 1, 0, 0, 1, wireName("a.b"), dnsTypeA, dnsClassIN, nil), rejects: true},
		{name: "trailing bytes", msg: append(query(1, "a.b", dnsTypeA, nil), 0), rejects: true},
		{name: "compression pointer", msg: dnsMsg(1, 0, 1, 0, 0, 0, []byte{1, 'a', 0xc0, 12}, dnsTypeA, dnsClassIN, nil), rejects: true},
		{name: "label of 64", msg: query(1, strings.Repeat("a", 64)+".com", dnsTypeA, nil), rejects: true},
		{name: "extended label type", msg: dnsMsg(1, 0, 1, 0, 0, 0, []byte{0x41, 0}, dnsTypeA, dnsClassIN, nil), rejects: true},
		{name: "name of 256", msg: query(6, strings.Repeat(strings.Repeat("a", 63)+".", 3)+strings.Repeat("b", 62), dnsTypeA, nil), rejects: true},
		{name: "class CH", msg: dnsMsg(1, 0, 1, 0, 0, 0, wireName("version.bind"), 16, 3, nil), rejects: true},
		{name: "truncated question", msg: query(1, "example.com", dnsTypeA, nil)[:27], rejects: true},
		{name: "truncated name", msg: query(1, "example.com", dnsTypeA, nil)[:20], rejects: true},
		{name: "header only", msg: query(1, "example.com", dnsTypeA, nil)[:12], rejects: true},
		{name: "short header", msg: query(1, "example.com", dnsTypeA, nil)[:11], rejects: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := respond(t, c.msg, 64, c.names...)
			if c.rejects {
				if len(b) != 0 {
					t.Fatalf("answered: %x", b)
				}
				return
			}
			if len(b) == 0 {
				t.Fatal("no answer")
			}
			d := parseDNS(t, b)
			if d.ID != binary.BigEndian.Uint16(c.msg) || !d.QR || d.OpCode != 0 || !d.AA || d.TC || d.RA || d.RD == c.noRD {
				t.Errorf("header: id %#x qr %v opcode %d aa %v tc %v rd %v ra %v", d.ID, d.QR, d.OpCode, d.AA, d.TC, d.RD, d.RA)
			}
			if d.ResponseCode != c.rcode {
				t.Errorf("rcode %v, want %v", d.ResponseCode, c.rcode)
			}
			if len(d.Questions) != 1 || c.qname != "" && string(d.Questions[0].Name) != c.qname && !(c.qname == "<Root>" && len(d.Questions[0].Name) == 0) {
				t.Errorf("questions %+v, want %s", d.Questions, c.qname)
			}
			if len(d.Authorities) != 0 {
				t.Errorf("authorities %v", d.Authorities)
			}
			if !c.answer {
				if len(d.Answers) != 0 {
					t.Errorf("answers %v, want none", d.Answers)
				}
			} else if len(d.Answers) != 1 {
				t.Errorf("answers %v, want one", d.Answers)
			} else if a := d.Answers[0]; a.Type != layers.DNSTypeA || a.Class != layers.DNSClassIN || a.TTL != 1 ||
				a.IP.String() != "10.255.0.2" || !bytes.Equal(a.Name, d.Questions[0].Name) {
				t.Errorf("answer %+v", a)
			}
			if !c.opt {
				if len(d.Additionals) != 0 {
					t.Errorf("additionals %v, want none", d.Additionals)
				}
				return
			}
			if len(d.Additionals) != 1 {
				t.Fatalf("additionals %v, want our OPT", d.Additionals)
			}
			o := d.Additionals[0]
			if o.Type != layers.DNSTypeOPT || len(o.Name) != 0 || o.Class != dnsUDPPayload || len(o.OPT) != 0 ||
				byte(o.TTL>>16) != 0 || (o.TTL&0x8000 != 0) != c.do {
				t.Errorf("OPT %+v (ttl %#x)", o, o.TTL)
			}
		})
	}
}

// TestDNSRespondRoom: an answer that does not fit is not written at all.
func TestDNSRespondRoom(t *testing.T) {
	msg := query(1, "example.com", dnsTypeA, optRR(512, 0, false, nil))
	// The OPT's 11 bytes are replaced by 16 + 11: 16 more needed.
	if b := respond(t, msg, 15); len(b) != 0 {
		t.Errorf("answered without room: %x", b)
	}
	if b := respond(t, msg, 16); len(b) != len(msg)+16 {
		t.Errorf("answer of %d bytes, want %d", len(b), len(msg)+16)
	}
	b := make([]byte, len(msg)+15)
	copy(b, msg)
	if dnsRespond(b, len(msg), 1, nil) != 0 || !bytes.Equal(b[:len(msg)], msg) {
		t.Errorf("query changed by a refused answer")
	}
}

func TestGardenName(t *testing.T) {
	for in, want := range map[string]string{
		"Portal.Example.NET":  "\x06portal\x07example\x03net\x00",
		"portal.example.net.": "\x06portal\x07example\x03net\x00",
		"x":                   "\x01x\x00",
	} {
		w, err := gardenName(in)
		if err != nil || string(w) != want {
			t.Errorf("gardenName(%q) = %q, %v; want %q", in, w, err, want)
		}
	}
	for _, in := range []string{"", ".", "a..b", ".a", strings.Repeat("a", 64) + ".b",
		strings.Repeat(strings.Repeat("a", 63)+".", 4)} {
		if w, err := gardenName(in); err == nil {
			t.Errorf("gardenName(%q) = %q, want an error", in, w)
		}
	}
}

// FuzzGardenDNS feeds arbitrary messages to the responder, with and without
// a list of names and with varying room: it must never panic nor write past
// its answer, and whatever it answers must be a well-formed response to the
// same question.
func FuzzGardenDNS(f *testing.F) {
	f.Add(query(1, "example.com", dnsTypeA, nil), uint8(64), false)
	f.Add(query(2, "Portal.example.net", 28, optRR(4096, 0, true, []byte{0, 10, 0, 0})), uint8(40), true)
	f.Add(query(3, "x", dnsTypeA, optRR(4096, 3, false, nil)), uint8(0), false)
	f.Add(dnsMsg(1, 0, 1, 0, 0, 0, []byte{1, 'a', 0xc0, 12}, dnsTypeA, dnsClassIN, nil), uint8(64), false)
	f.Add([]byte("00\x010\x00\x01\x00\x00\x00\x00\x00\x01\x0000\x00\x01\x00\x00)000000\x00\x040000"), uint8('('), true)
	names := [][]byte{[]byte("\x06portal\x07example\x03net\x00"), []byte("\x01x\x00")}
	f.Fuzz(func(t *testing.T, msg []byte, room uint8, restrict bool) {
		var ns [][]byte
		if restrict {
			ns = names
		}
		b := make([]byte, len(msg)+int(room))
		copy(b, msg)
		orig := append([]byte(nil), b...)
		n := dnsRespond(b, len(msg), 0x0a_ff_00_02, ns)
		if n == 0 {
			if !bytes.Equal(b, orig) {
				t.Fatalf("refused, but changed the buffer")
			}
			return
		}
		if n > len(b) || n < dnsHeaderLen {
			t.Fatalf("answer of %d bytes in %d", n, len(b))
		}
		if !bytes.Equal(b[n:], orig[n:]) {
			t.Fatalf("wrote past its answer")
		}
		d := parseDNS(t, b[:n])
		if !d.QR || !d.AA || d.ID != binary.BigEndian.Uint16(msg) || len(d.Questions) != 1 || len(d.Answers) > 1 {
			t.Fatalf("bad answer %+v", d)
		}
		q := &layers.DNS{}
		if err := q.DecodeFromBytes(msg, gopacket.NilDecodeFeedback); err != nil {
			t.Fatalf("answered a query gopacket cannot parse: %v", err)
		}
		if !bytes.EqualFold(q.Questions[0].Name, d.Questions[0].Name) || q.Questions[0].Type != d.Questions[0].Type {
			t.Fatalf("question %+v answered as %+v", q.Questions[0], d.Questions[0])
		}
	})
}
