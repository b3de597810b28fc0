package fib

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestChecksum(t *testing.T) {
	// RFC 1071 §3's example: the sum of 0001 f203 f4f5 f6f7 is ddf2.
	if s := Checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0); s != 0xddf2 {
		t.Errorf("Checksum = %#x, want 0xddf2", s)
	}
	// An odd last byte counts as padded with a zero; init is added.
	if a, b := Checksum([]byte{1, 2, 3}, 7), Checksum([]byte{1, 2, 3, 0}, 7); a != b || a != 0x0102+0x0300+7 {
		t.Errorf("odd length %#x, padded %#x", a, b)
	}
}

func TestUDPFrame(t *testing.T) {
	src, dst := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.1")
	for _, vlan := range []uint16{0, 201} {
		payload := []byte("odd-length payload")
		f := UDPFrame(0x02bb00000001, 0x02aa00000001, vlan, src, dst, 67, 67, payload)
		hl := 14
		if vlan != 0 {
			hl = 18
			if binary.BigEndian.Uint16(f[12:]) != EtherTypeVLAN || binary.BigEndian.Uint16(f[14:])&0xfff != vlan {
				t.Fatalf("vlan %d: tag % x", vlan, f[12:18])
			}
		}
		if MAC(f[0:6]) != 0x02bb00000001 || MAC(f[6:12]) != 0x02aa00000001 || binary.BigEndian.Uint16(f[hl-2:]) != EtherTypeIPv4 {
			t.Fatalf("vlan %d: L2 % x", vlan, f[:hl])
		}
		ip, udp := f[hl:hl+20], f[hl+20:]
		if Checksum(ip, 0) != 0xffff {
			t.Errorf("vlan %d: IPv4 header checksum does not verify", vlan)
		}
		ph := append(append(append([]byte(nil), ip[12:20]...), 0, 17), udp[4:6]...)
		if Checksum(udp, Checksum(ph, 0)) != 0xffff {
			t.Errorf("vlan %d: UDP checksum does not verify", vlan)
		}
		if string(udp[8:]) != string(payload) || len(f) != hl+28+len(payload) {
			t.Errorf("vlan %d: payload or length wrong", vlan)
		}
	}
}

// TestAppendUDPFrame: built at the end of a reused, dirty buffer, the
// frame is UDPFrame's, and what was before it stays.
func TestAppendUDPFrame(t *testing.T) {
	src, dst := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("198.51.100.7")
	payload := []byte("a DHCP message, or anything")
	for _, vlan := range []uint16{0, 42} {
		want := UDPFrame(0x020000000001, 0x020000000002, vlan, src, dst, 67, 68, payload)
		buf := bytes.Repeat([]byte{0xff}, 2000)[:3]
		got := AppendUDPFrame(buf, 0x020000000001, 0x020000000002, vlan, src, dst, 67, 68, payload)
		if !bytes.Equal(got[:3], []byte{0xff, 0xff, 0xff}) || !bytes.Equal(got[3:], want) {
			t.Errorf("vlan %d: AppendUDPFrame = % x\nwant ff ff ff % x", vlan, got, want)
		}
	}
}
