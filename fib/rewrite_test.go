package fib

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

func TestMAC(t *testing.T) {
	b := make([]byte, 6)
	PutMAC(b, 0x0123_4567_89ab)
	if want := []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab}; !bytes.Equal(b, want) {
		t.Fatalf("PutMAC = % x, want % x", b, want)
	}
	if got := MAC(b); got != 0x0123_4567_89ab {
		t.Fatalf("MAC = %#x", got)
	}
	PutMAC(b, 0xffff_0000_0000_0001) // bits above 48 are ignored
	if got := MAC(b); got != 0x0000_0000_0001 {
		t.Fatalf("MAC after PutMAC of a wide value = %#x", got)
	}
	out := make([]byte, 7)
	PutMAC(out, 0xffff_02aabbccdd01) // six bytes written, nothing past them
	if want := []byte{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01, 0}; !bytes.Equal(out, want) {
		t.Fatalf("PutMAC wrote % x, want % x", out, want)
	}
}

func TestWriteL2(t *testing.T) {
	const dst, src = 0x0011_2233_4455, 0x02aa_bbcc_ddee
	b := bytes.Repeat([]byte{0xee}, 20)
	if n := WriteL2(b, dst, src, 100, false, EtherTypeIPv4); n != 14 {
		t.Fatalf("untagged length %d", n)
	}
	want := []byte{
		0x00, 0x11, 0x22, 0x33, 0x44, 0x55, // dst
		0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, // src
		0x08, 0x00, // IPv4
		0xee, 0xee, 0xee, 0xee, 0xee, 0xee, // untouched
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("untagged:\n got % x\nwant % x", b, want)
	}

	b = bytes.Repeat([]byte{0xee}, 20)
	if n := WriteL2(b, dst, src, 0xf123, true, EtherTypeARP); n != 18 {
		t.Fatalf("tagged length %d", n)
	}
	want = []byte{
		0x00, 0x11, 0x22, 0x33, 0x44, 0x55, // dst
		0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, // src
		0x81, 0x00, // 802.1Q
		0x01, 0x23, // PCP 0, DEI 0, VID 0x123 (bits above 12 dropped)
		0x08, 0x06, // ARP
		0xee, 0xee, // untouched
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("tagged:\n got % x\nwant % x", b, want)
	}
}

// checksum is the full IPv4 header checksum: the one's complement of the
// one's complement sum of the header's 16-bit words, with the checksum
// field counted as zero.
func checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i < len(h); i += 2 {
		if i == 10 {
			continue
		}
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func randHeader(r *rand.Rand) []byte {
	ihl := 5 + r.IntN(11)
	h := make([]byte, ihl*4)
	for i := range h {
		h[i] = byte(r.Uint32())
	}
	h[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(h[10:12], checksum(h))
	return h
}

// setSum makes the one's complement sum of h's words other than the
// checksum and the ID field, plus ID, equal want (so that the checksum is
// ^want), by choosing the ID field.
func setSum(h []byte, want uint16) {
	h[4], h[5] = 0, 0
	s := ^checksum(h) // sum of the others, in 1..0xffff
	id := uint32(want) - uint32(s)
	if uint32(want) < uint32(s) {
		id = uint32(want) + 0xffff - uint32(s) // one's complement subtraction
	}
	binary.BigEndian.PutUint16(h[4:6], uint16(id))
	binary.BigEndian.PutUint16(h[10:12], checksum(h))
}

func checkDecTTL(t *testing.T, h []byte) {
	t.Helper()
	orig := bytes.Clone(h)
	ok := DecTTL(h)
	if orig[8] <= 1 {
		if ok || !bytes.Equal(h, orig) {
			t.Fatalf("TTL %d: DecTTL = %v, header changed % x -> % x", orig[8], ok, orig, h)
		}
		return
	}
	if !ok {
		t.Fatalf("TTL %d: DecTTL = false", orig[8])
	}
	if h[8] != orig[8]-1 {
		t.Fatalf("TTL %d -> %d", orig[8], h[8])
	}
	want := checksum(h)
	got := binary.BigEndian.Uint16(h[10:12])
	if got != want {
		t.Fatalf("header % x (orig checksum %#04x): incremental checksum %#04x, full %#04x",
			orig, binary.BigEndian.Uint16(orig[10:12]), got, want)
	}
	h[8], h[10], h[11] = orig[8], orig[10], orig[11]
	if !bytes.Equal(h, orig) {
		t.Fatalf("DecTTL touched other bytes: % x -> % x", orig, h)
	}
}

// TestDecTTL compares the incremental checksum with a full recomputation.
func TestDecTTL(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	var zeroAfter, zeroBefore int
	for range 200_000 {
		checkDecTTL(t, randHeader(r))
	}
	for ttl := range 256 {
		h := randHeader(r)
		h[8] = byte(ttl)
		binary.BigEndian.PutUint16(h[10:12], checksum(h))
		checkDecTTL(t, h)
	}
	// Corner cases: checksum 0x0000 after the decrement (the one RFC 1141
	// gets wrong, answering 0xffff), checksum 0x0000 before it, and
	// checksums next to them.
	for _, target := range []struct {
		after bool
		sum   uint16
	}{{true, 0xffff}, {false, 0xffff}, {true, 0xfffe}, {false, 0xfffe}, {true, 0x0001}, {false, 0x0001}, {true, 0x0100}, {false, 0x0100}} {
		for range 5000 {
			h := randHeader(r)
			h[8] = byte(2 + r.IntN(254))
			if target.after {
				h[8]-- // make the post-decrement header hit the target...
				setSum(h, target.sum)
				h[8]++ // ...then restore TTL and checksum of the input
				binary.BigEndian.PutUint16(h[10:12], checksum(h))
				zeroAfter++
			} else {
				setSum(h, target.sum)
				zeroBefore++
			}
			checkDecTTL(t, h)
		}
	}
	// RFC 1624 section 4's example, restated: the header whose new
	// checksum must be 0x0000.
	h := []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 2, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	h[8] = 1
	setSum(h, 0xffff)
	h[8] = 2
	binary.BigEndian.PutUint16(h[10:12], checksum(h))
	checkDecTTL(t, bytes.Clone(h))
	DecTTL(h)
	if got := binary.BigEndian.Uint16(h[10:12]); got != 0 {
		t.Fatalf("checksum %#04x, want 0x0000", got)
	}
	t.Logf("%d corner headers checked after, %d before", zeroAfter, zeroBefore)
}

// TestDecTTLTo: reading one header and writing into its copy gives what
// DecTTL gives in place, and leaves the source alone.
func TestDecTTLTo(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for n := range 20_000 {
		src := randHeader(r)
		if n < 256 {
			src[8] = byte(n)
			binary.BigEndian.PutUint16(src[10:12], checksum(src))
		}
		orig := bytes.Clone(src)
		want := bytes.Clone(src)
		wantOK := DecTTL(want)
		dst := bytes.Clone(src)
		if ok := DecTTLTo(dst, src); ok != wantOK || !bytes.Equal(dst, want) || !bytes.Equal(src, orig) {
			t.Fatalf("header % x: DecTTLTo = %v, % x (source now % x); DecTTL = %v, % x", orig, ok, dst, src, wantOK, want)
		}
	}
}

// TestDecTTLNonCanonical: a sender may write a zero checksum as 0xffff
// (negative zero); the patch must still give the correct value.
func TestDecTTLNonCanonical(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for range 1000 {
		h := randHeader(r)
		h[8] = byte(2 + r.IntN(254))
		setSum(h, 0xffff) // canonical checksum 0x0000
		binary.BigEndian.PutUint16(h[10:12], 0xffff)
		DecTTL(h)
		if got, want := binary.BigEndian.Uint16(h[10:12]), checksum(h); got != want {
			t.Fatalf("from 0xffff: got %#04x, want %#04x", got, want)
		}
	}
}

func FuzzDecTTL(f *testing.F) {
	f.Add([]byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2})
	f.Fuzz(func(t *testing.T, h []byte) {
		if len(h) < 20 {
			return
		}
		h = h[:20]
		binary.BigEndian.PutUint16(h[10:12], checksum(h))
		checkDecTTL(t, h)
	})
}

func TestRewriteAllocs(t *testing.T) {
	b := make([]byte, 128)
	h := make([]byte, 20)
	h[0] = 0x45
	if a := testing.AllocsPerRun(1000, func() {
		h[8] = 64
		DecTTL(h)
		WriteL2(b, 1, 2, 3, true, EtherTypeIPv4)
		WriteL2(b, 1, 2, 3, false, EtherTypeIPv4)
		ARPRequest(b, 1, 2, 3, 4, true)
		ARPReply(b, 1, 2, 3, 4, 5, false)
	}); a != 0 {
		t.Fatalf("%v allocations", a)
	}
}

// arp is an ARP frame decoded by hand, field by field.
type arp struct {
	ethDst, ethSrc uint64
	tagged         bool
	tci            uint16
	etherType      uint16
	htype, ptype   uint16
	hlen, plen     byte
	op             uint16
	sha            uint64
	spa            uint32
	tha            uint64
	tpa            uint32
}

func decodeARP(t *testing.T, f []byte) (a arp, padding []byte) {
	t.Helper()
	a.ethDst = MAC(f[0:6])
	a.ethSrc = MAC(f[6:12])
	off := 12
	if binary.BigEndian.Uint16(f[12:14]) == 0x8100 {
		a.tagged = true
		a.tci = binary.BigEndian.Uint16(f[14:16])
		off = 16
	}
	a.etherType = binary.BigEndian.Uint16(f[off : off+2])
	p := f[off+2:]
	a.htype = binary.BigEndian.Uint16(p[0:2])
	a.ptype = binary.BigEndian.Uint16(p[2:4])
	a.hlen, a.plen = p[4], p[5]
	a.op = binary.BigEndian.Uint16(p[6:8])
	a.sha = MAC(p[8:14])
	a.spa = binary.BigEndian.Uint32(p[14:18])
	a.tha = MAC(p[18:24])
	a.tpa = binary.BigEndian.Uint32(p[24:28])
	return a, p[28:]
}

func TestARPBuilders(t *testing.T) {
	const (
		ours   = 0x02_00_5e_00_00_01
		theirs = 0x00_1b_21_aa_bb_cc
		ourIP  = 0xc0a80001 // 192.168.0.1
		peerIP = 0xc0a80063 // 192.168.0.99
	)
	for _, tagged := range []bool{false, true} {
		b := bytes.Repeat([]byte{0xee}, 80)
		n := ARPReply(b, ours, ourIP, theirs, peerIP, 42, tagged)
		checkARP(t, "reply", b, n, tagged, arp{
			ethDst: theirs, ethSrc: ours, tagged: tagged, tci: 42, etherType: 0x0806,
			htype: 1, ptype: 0x0800, hlen: 6, plen: 4, op: 2,
			sha: ours, spa: ourIP, tha: theirs, tpa: peerIP,
		})

		b = bytes.Repeat([]byte{0xee}, 80)
		n = ARPRequest(b, ours, ourIP, peerIP, 4095, tagged)
		checkARP(t, "request", b, n, tagged, arp{
			ethDst: 0xffff_ffff_ffff, ethSrc: ours, tagged: tagged, tci: 4095, etherType: 0x0806,
			htype: 1, ptype: 0x0800, hlen: 6, plen: 4, op: 1,
			sha: ours, spa: ourIP, tha: 0, tpa: peerIP,
		})

		b = bytes.Repeat([]byte{0xee}, 80)
		n = ARPProbe(b, theirs, ours, ourIP, peerIP, 7, tagged)
		checkARP(t, "probe", b, n, tagged, arp{
			ethDst: theirs, ethSrc: ours, tagged: tagged, tci: 7, etherType: 0x0806,
			htype: 1, ptype: 0x0800, hlen: 6, plen: 4, op: 1,
			sha: ours, spa: ourIP, tha: 0, tpa: peerIP,
		})
	}
}

func checkARP(t *testing.T, what string, b []byte, n int, tagged bool, want arp) {
	t.Helper()
	if n != 60 {
		t.Errorf("%s tagged=%v: length %d, want 60", what, tagged, n)
	}
	if !tagged {
		want.tci = 0
	}
	got, padding := decodeARP(t, b[:n])
	hdr := 14
	if tagged {
		hdr = 18
	}
	if len(padding) != 60-hdr-28 || !bytes.Equal(padding, make([]byte, len(padding))) {
		t.Errorf("%s tagged=%v: padding % x, want %d zeros", what, tagged, padding, 60-hdr-28)
	}
	if got != want {
		t.Errorf("%s tagged=%v:\n got %+v\nwant %+v", what, tagged, got, want)
	}
	if b[n] != 0xee {
		t.Errorf("%s tagged=%v: wrote past the frame", what, tagged)
	}
}

func BenchmarkDecTTL(b *testing.B) {
	h := randHeader(rand.New(rand.NewPCG(1, 1)))
	b.ReportAllocs()
	for b.Loop() {
		h[8] = 64
		if !DecTTL(h) {
			b.Fatal("DecTTL false")
		}
	}
}
