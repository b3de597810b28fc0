package bench

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestParseLegFrame: the generator's own frames decode to their xid,
// chaddr and type, tagged or not; other frames do not.
func TestParseLegFrame(t *testing.T) {
	mac := genMAC(7)
	xid := dhcpv4.TransactionID{9, 8, 7, 6}
	f := discoverFrame(mac, xid)
	r, ok := parseLegFrame(f)
	want := legKey{xid: 0x09080706, mac: [6]byte(mac)}
	if !ok || r.key != want || r.mt != legDiscover {
		t.Fatalf("DISCOVER: %+v %v, want %+v type 1", r, ok, want)
	}
	// 802.1Q: the tag between the MACs and the EtherType.
	tagged := append(append(append([]byte{}, f[:12]...), 0x81, 0x00, 0x00, 0x64), f[12:]...)
	if r, ok := parseLegFrame(tagged); !ok || r.key != want || r.mt != legDiscover {
		t.Fatalf("tagged DISCOVER: %+v %v", r, ok)
	}
	if r, ok := parseLegFrame(requestFrame(mac, xid, []byte{100, 64, 0, 9}, []byte{100, 64, 0, 1})); !ok || r.mt != legRequest {
		t.Fatalf("REQUEST: %+v %v", r, ok)
	}
	bad := map[string][]byte{"short": f[:40], "truncated DHCP": f[:14+20+8+200]}
	port := append([]byte{}, f...)
	binary.BigEndian.PutUint16(port[14+20+2:], 53)
	bad["port 53"] = port
	arp := append([]byte{}, f...)
	arp[12], arp[13] = 0x08, 0x06
	bad["ARP"] = arp
	cookie := append([]byte{}, f...)
	cookie[14+20+8+236] = 0
	bad["no magic cookie"] = cookie
	for name, b := range bad {
		if r, ok := parseLegFrame(b); ok {
			t.Errorf("%s: decoded %+v", name, r)
		}
	}
}

// TestWalkBlock: the DHCP messages of a TPACKET_V3 block, as the kernel
// lays it out, with their timestamps and direction; other frames are
// skipped, and a frame without the kernel's timestamp is counted.
func TestWalkBlock(t *testing.T) {
	mac := genMAC(3)
	xid := dhcpv4.TransactionID{1, 2, 3, 4}
	disc := discoverFrame(mac, xid)
	arp := append([]byte{}, disc...)
	arp[12], arp[13] = 0x08, 0x06
	b := make([]byte, 8192)
	ne := binary.NativeEndian
	ne.PutUint32(b[blockStatusOff:], 1) // TP_STATUS_USER
	ne.PutUint32(b[blockFirstOff:], 64)
	frames := []struct {
		data    []byte
		sec     uint32
		nsec    uint32
		status  uint32
		pkttype uint8
	}{
		{disc, 10, 500, 1<<29 | 1, 4}, // TP_STATUS_TS_SOFTWARE, PACKET_OUTGOING
		{arp, 11, 0, 1<<29 | 1, 0},
		{disc, 12, 7, 1, 0}, // no kernel timestamp, PACKET_HOST
	}
	off := 64
	for i, f := range frames {
		const macOff = 82 // past tpacket3_hdr and sockaddr_ll, as the kernel places it
		h := b[off:]
		ne.PutUint32(h[4:], f.sec)
		ne.PutUint32(h[8:], f.nsec)
		ne.PutUint32(h[12:], uint32(len(f.data)))
		ne.PutUint32(h[16:], uint32(len(f.data)))
		ne.PutUint32(h[20:], f.status)
		ne.PutUint16(h[24:], macOff)
		h[frameLLOff+llPkttypeOff] = f.pkttype
		copy(h[macOff:], f.data)
		next := (macOff + len(f.data) + 15) &^ 15
		if i < len(frames)-1 {
			ne.PutUint32(h[0:], uint32(next))
		}
		off += next
	}
	ne.PutUint32(b[blockNumOff:], uint32(len(frames)))
	var got []legRec
	noTS := walkBlock(b[:off], func(r legRec) { got = append(got, r) })
	key := legKey{xid: 0x01020304, mac: [6]byte(mac)}
	want := []legRec{{t: 10e9 + 500, key: key, mt: legDiscover, out: true}, {t: 12e9 + 7, key: key, mt: legDiscover}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || noTS != 1 {
		t.Fatalf("got %+v (no timestamp %d), want %+v and 1", got, noTS, want)
	}
	// A count beyond the frames (the last has no next offset) stops
	// there; a first frame past the block's end is not read.
	ne.PutUint32(b[blockNumOff:], 1000)
	if n := walkBlock(b[:off], func(legRec) {}); n != 1 {
		t.Errorf("count past the frames: %d without timestamp, want 1", n)
	}
	ne.PutUint32(b[blockFirstOff:], uint32(off+100))
	walkBlock(b[:off], func(r legRec) { t.Errorf("frame past the end: %+v", r) })
}

// TestDHCPLegs: each exchange's legs from the first transmission of each
// message at both interfaces; exchanges not seen at both are left out.
func TestDHCPLegs(t *testing.T) {
	ms := int64(time.Millisecond)
	var gen, srv []legRec
	for i := range 100 {
		k := legKey{xid: uint32(i), mac: [6]byte{2, 0, 0, 0, 0, byte(i)}}
		t0 := int64(i) * 10 * ms
		server := int64(2+i%3) * ms // 2, 3 or 4 ms at the server
		// DISCOVER → OFFER: 1 ms up, 0.5 ms down.
		gen = append(gen, legRec{t0, k, legDiscover, true})
		srv = append(srv, legRec{t0 + ms, k, legDiscover, false}, legRec{t0 + ms + server, k, legOffer, true})
		gen = append(gen, legRec{t0 + ms + server + ms/2, k, legOffer, false})
		// A retransmission of the DISCOVER and its second OFFER: not
		// counted.
		gen = append(gen, legRec{t0 + 4000*ms, k, legDiscover, true}, legRec{t0 + 4100*ms, k, legOffer, false})
		srv = append(srv, legRec{t0 + 4050*ms, k, legOffer, true})
		// REQUEST → ACK: 0.25 up, 2.75 down (a store commit).
		r0 := t0 + 5*ms
		gen = append(gen, legRec{r0, k, legRequest, true})
		srv = append(srv, legRec{r0 + ms/4, k, legRequest, false}, legRec{r0 + ms/4 + ms, k, legAck, true})
		if i%10 != 0 { // every tenth ACK was lost
			gen = append(gen, legRec{r0 + ms/4 + ms + 11*ms/4, k, legAck, false})
		}
	}
	// A client the server never saw.
	gen = append(gen, legRec{0, legKey{xid: 1000}, legDiscover, true}, legRec{5 * ms, legKey{xid: 1000}, legOffer, false})
	l := dhcpLegs(gen, srv)
	if l.Offers != 100 || l.Acks != 90 {
		t.Fatalf("matched %d offers, %d acks; want 100, 90", l.Offers, l.Acks)
	}
	for name, c := range map[string]struct {
		got  *float64
		want float64
	}{
		"offer through p50": {l.OfferThroughP50Ms, 1.5}, "offer through p99": {l.OfferThroughP99Ms, 1.5},
		"offer server p50": {l.OfferServerP50Ms, 3}, "offer server p99": {l.OfferServerP99Ms, 4},
		"ack through p99": {l.AckThroughP99Ms, 3}, "ack server p50": {l.AckServerP50Ms, 1},
		// At the wire: both parts of each exchange.
		"offer wire p50": {l.OfferWireP50Ms, 4.5}, "offer wire p99": {l.OfferWireP99Ms, 5.5},
		"ack wire p50": {l.AckWireP50Ms, 4}, "ack wire p99": {l.AckWireP99Ms, 4},
	} {
		if c.got == nil || *c.got != c.want {
			t.Errorf("%s = %v, want %v", name, fmtOpt(c.got, "%.3f"), c.want)
		}
	}
	if l := dhcpLegs(nil, nil); l.Offers != 0 || l.OfferThroughP99Ms != nil {
		t.Errorf("no records: %+v", l)
	}
}
