package engine

import (
	"net/netip"
	"testing"
)

func TestBindingsPerISP(t *testing.T) {
	r := newRig(t, 64)
	if got := r.c.BindingsPerISP(); len(got) != 0 {
		t.Fatalf("empty: %v", got)
	}
	r.bindAll()
	if err := r.c.Bind(Binding{Port: 0, MAC: sub4, ISP: 0, IP: netip.MustParseAddr("100.64.0.20"), Static: true}); err != nil {
		t.Fatal(err)
	}
	got := r.c.BindingsPerISP()
	if got[0] != (BindingCount{DHCP: 1, Static: 1}) || got[1] != (BindingCount{DHCP: 2}) || len(got) != 2 {
		t.Fatalf("got %v", got)
	}
	r.c.Unbind(0, 0, sub2)
	if got := r.c.BindingsPerISP(); got[1] != (BindingCount{DHCP: 1}) {
		t.Fatalf("after unbind: %v", got)
	}
}
