package circuitid

import (
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	for _, tt := range []struct{ t, want string }{
		{"fixed", "fixed"},
		{"{interface}:{vlan}", "acc0:100"},
		{"{access}/{mac}", "a1/02:00:00:00:01:01"},
		{"x{unknown}y", "x{unknown}y"},
		{"open{interface", "open{interface"},
		{"}{vlan}", "}{vlan}"}, // a stray "}" first: kept as is (configs refuses such templates)
	} {
		if got := Expand(tt.t, "acc0", 100, "a1", "02:00:00:00:01:01"); got != tt.want {
			t.Errorf("Expand(%q) = %q, want %q", tt.t, got, tt.want)
		}
	}
}

func TestCustomerIDProblem(t *testing.T) {
	for id, bad := range map[string]bool{
		"c-1": false, "ÄÖ-1": false, string(make([]byte, 64)): true, "": true,
		"c 1": true, "c\t1": true, "c\x001": true, "c\x7f": true,
	} {
		if got := CustomerIDProblem(id) != ""; got != bad {
			t.Errorf("CustomerIDProblem(%q) = %q", id, CustomerIDProblem(id))
		}
	}
	if p := CustomerIDProblem(strings.Repeat("x", 64)); p != "" {
		t.Errorf("64 bytes: %q", p)
	}
	if p := CustomerIDProblem(strings.Repeat("x", 65)); p == "" {
		t.Error("65 bytes accepted")
	}
}
