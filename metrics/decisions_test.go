package metrics

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ispmux/ispmux/dhcpproxy"
)

// The DHCP proxy's decisions are exported from the start, 0 included, as
// the drop reasons are ("rate() sees the first drop"): a series that only
// appears at its first increment starts at that value, and Prometheus'
// increase()/rate() never count a series' first sample, so the page alert
// docs/OPERATIONS.md suggests,
//
//	increase(ispmux_dhcp_decisions_total{decision="store_error"}[5m]) > 0
//
// does not fire on a burst of store errors that ends within one scrape
// interval (the series appears at 3 and stays at 3: increase 0). The docs
// call the decisions "a fixed set". They were exported at their first
// count only; every known one is exported from the start now.
func TestDecisionsExportedFromStart(t *testing.T) {
	p := dhcpproxy.New(dhcpproxy.Config{}, nil, nil, nil, nil, nil)
	c := New(Funcs{DHCPFunc: func() DHCP { return DHCP{Counters: p.Counters()} }})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "ispmux_dhcp_decisions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "decision" {
					got[l.GetValue()] = true
				}
			}
		}
	}
	// The decisions docs/OPERATIONS.md's alerts and "first look" column
	// name, and the ones its table lists.
	var missing []string
	for _, d := range []string{"store_error", "server_unreachable", "timeout", "unknown_subscriber", "rate_limited",
		"pending_full", "inject_full", "onboarding_full", "ack", "nak", "offer"} {
		if !got[d] {
			missing = append(missing, d)
		}
	}
	if len(missing) > 0 {
		t.Errorf("a fresh proxy exports no ispmux_dhcp_decisions_total series for %s: each appears only at its first count, which rate()/increase() then miss", strings.Join(missing, ", "))
	}
}

// The HELP of ispmux_port_icmp_errors_sent_total says what it counts:
// the engine counts every ICMP error it sends there, fragmentation needed
// (DF over the egress MTU, engine's TestICMPErrorsCountFragNeeded)
// as well as time exceeded; "time exceeded" alone sends an operator
// looking for a routing loop when the cause is an MTU mismatch. It said
// so; it names both now.
func TestICMPErrorsHelp(t *testing.T) {
	h := portICMP.String()
	if !strings.Contains(h, "fragmentation needed") {
		t.Errorf("HELP %s: names time exceeded only", h)
	}
	raw, _ := os.ReadFile("../docs/OPERATIONS.md")
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.Contains(l, "`ispmux_port_icmp_errors_sent_total{port}`") && !strings.Contains(l, "fragmentation needed") {
			t.Errorf("docs/OPERATIONS.md: %s", l)
		}
	}
}
