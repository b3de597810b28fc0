package circuitid

import "testing"

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
