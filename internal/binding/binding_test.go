package binding

import "testing"

func TestMAC(t *testing.T) {
	b := [6]byte{0x02, 0xaa, 0x00, 0x10, 0xfe, 0x01}
	m := MAC48(b)
	if m != 0x02aa0010fe01 {
		t.Fatalf("MAC48 = %#x", m)
	}
	if MACBytes(m) != b {
		t.Fatalf("MACBytes(MAC48(b)) = %x", MACBytes(m))
	}
	if s := MACString(m); s != "02:aa:00:10:fe:01" {
		t.Fatalf("MACString = %q", s)
	}
}

func TestSubscriberMAC(t *testing.T) {
	for m, want := range map[uint64]bool{
		0x020000000001: true, 0x001122334455: true,
		0: false, 0x010000000001: false, 0xffffffffffff: false, 1 << 48: false,
	} {
		if got := SubscriberMAC(m); got != want {
			t.Errorf("SubscriberMAC(%#x) = %v, want %v", m, got, want)
		}
	}
}
