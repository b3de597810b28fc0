package appliance

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/ctlsock"
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
	// Each port's ICMP errors, sent and refused by each budget, 0
	// included (they were in the metrics alone).
	var ports []map[string]json.RawMessage
	if err := json.Unmarshal(m["ports"], &ports); err != nil || len(ports) != 1 {
		t.Fatalf("ports: %s, %v", m["ports"], err)
	}
	if got := string(ports[0]["icmp_errors"]); got != "0" {
		t.Errorf(`port "icmp_errors": %q, want 0`, got)
	}
	if got := string(ports[0]["icmp_errors_limited"]); got != `{"port":0,"subscriber":0}` {
		t.Errorf(`port "icmp_errors_limited": %s, want {"port":0,"subscriber":0}`, got)
	}
}

// TestStatusPortICMP: the status's per-port counters carry the engine's
// ICMP errors sent and refused, per budget, beside the others (they were
// in Prometheus alone).
func TestStatusPortICMP(t *testing.T) {
	var c engine.PortCounters
	c.Up, c.ARPReplies, c.ICMPErrors = 10, 2, 7
	c.ICMPLimited[engine.ICMPBudgetSubscriber], c.ICMPLimited[engine.ICMPBudgetPort] = 30, 5
	ps := ctlsock.PortStatus{Name: "acc0"}
	portCounters(&ps, &c)
	b, err := json.Marshal(ps)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"forwarded_up":10`, `"arp_replies":2`, `"icmp_errors":7`, `"icmp_errors_limited":{"port":5,"subscriber":30}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("port status %s lacks %s", b, want)
		}
	}
}

// TestStatusOmitsManyBindings: up to the limit the status lists every
// binding; above it, none (the count is given), so a status at a million
// subscribers stays small.
func TestStatusOmitsManyBindings(t *testing.T) {
	state, err := engine.NewState([]engine.PortConfig{{Name: "acc0", AccessVLANs: []uint16{0}}}, 64, 1)
	if err != nil {
		t.Fatal(err)
	}
	a := &Appliance{
		cfg: &configs.Config{ISPs: []configs.ISP{{Name: "alpha"}}}, names: []string{"acc0"}, state: state, ispIdx: []uint8{0},
		ctl:  engine.NewControl(state, nil, nil),
		dhcp: dhcpproxy.New(dhcpproxy.Config{}, nil, nil, nil, nil, nil), started: time.Now(),
	}
	for i := range 5 {
		b := engine.Binding{Port: 0, MAC: 0x020000000001 + uint64(i), ISP: 0, IP: netip.AddrFrom4([4]byte{100, 64, 0, byte(10 + i)}), Static: true}
		if err := a.ctl.Bind(b); err != nil {
			t.Fatal(err)
		}
	}
	if st := a.status(5); len(st.Bindings) != 5 || st.BindingsTotal != 5 || st.BindingsOmitted {
		t.Errorf("limit 5: %d listed, total %d, omitted %v", len(st.Bindings), st.BindingsTotal, st.BindingsOmitted)
	}
	if st := a.status(4); len(st.Bindings) != 0 || st.BindingsTotal != 5 || !st.BindingsOmitted {
		t.Errorf("limit 4: %d listed, total %d, omitted %v", len(st.Bindings), st.BindingsTotal, st.BindingsOmitted)
	}
}

// TestCircuitName: the circuit the portal's claims are limited on is the
// port and VLAN, VLANs of one port apart even where no [[access]] entry
// names them (accessName then gives the interface's name for all).
func TestCircuitName(t *testing.T) {
	a := &Appliance{cfg: &configs.Config{Access: []configs.Access{{Name: "tower", Interface: "eth1", VLAN: 100}}}, names: []string{"eth0", "eth1"}}
	for _, c := range []struct {
		port         uint8
		vlan         uint16
		access, circ string
	}{
		{1, 100, "tower", "eth1/100"},
		{1, 200, "eth1", "eth1/200"},
		{1, 0, "eth1", "eth1/0"},
		{0, 100, "eth0", "eth0/100"},
	} {
		if got, circ := a.accessName(c.port, c.vlan), a.circuitName(c.port, c.vlan); got != c.access || circ != c.circ {
			t.Errorf("port %d VLAN %d: access %q circuit %q, want %q %q", c.port, c.vlan, got, circ, c.access, c.circ)
		}
	}
}
