package appliance

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/dhcpproxy"
	"github.com/ispmux/ispmux/engine"
)

// TestStatusJSON: no bindings is an empty list, not null, and every key is
// snake_case (the control counters included).
func TestStatusJSON(t *testing.T) {
	state, err := engine.NewState([]engine.PortConfig{{Name: "acc0", AccessVLANs: []uint16{0}}}, 16, 1)
	if err != nil {
		t.Fatal(err)
	}
	a := &Appliance{
		cfg: &configs.Config{}, names: []string{"acc0"}, state: state,
		ctl:  engine.NewControl(state, nil, nil),
		dhcp: dhcpproxy.New(dhcpproxy.Config{}, nil, nil, nil, nil, nil), started: time.Now(),
	}
	b, err := json.Marshal(a.Status())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if got := string(m["bindings"]); got != "[]" {
		t.Errorf(`"bindings": %s, want []`, got)
	}
	var ctl map[string]uint64
	if err := json.Unmarshal(m["control"], &ctl); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"arp_sent", "arp_learned", "punt_unhandled"} {
		if _, ok := ctl[k]; !ok {
			t.Errorf("control lacks %q: %s", k, m["control"])
		}
	}
	if len(ctl) != 3 {
		t.Errorf("control has %d keys, want 3: %s", len(ctl), m["control"])
	}
}
