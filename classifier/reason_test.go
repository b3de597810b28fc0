package classifier

import (
	"regexp"
	"testing"
)

func TestReasonNames(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	seen := map[string]Reason{}
	for r := range NumReasons {
		name := r.String()
		if !snake.MatchString(name) {
			t.Errorf("Reason(%d).String() = %q: not snake_case", r, name)
		}
		if prev, ok := seen[name]; ok {
			t.Errorf("reasons %d and %d are both %q", prev, r, name)
		}
		seen[name] = r
	}
	for r, want := range map[Reason]string{
		ReasonNone:                    "none",
		ReasonUnknownMAC:              "unknown_mac",
		ReasonSpoofedSource:           "spoofed_source",
		ReasonSubscriberToSubscriber:  "subscriber_to_subscriber",
		ReasonTooBig:                  "too_big",
		ReasonWalledGarden:            "walled_garden",
		ReasonNotUnicast:              "not_unicast",
		ReasonDHCPFlood:               "dhcp_flood",
		ReasonIPOptions:               "ip_options",
		ReasonDHCPBypass:              "dhcp_bypass",
		ReasonUnregisteredDHCPCircuit: "unregistered_dhcp_circuit",
		NumReasons:                    "reason_27",
	} {
		if got := r.String(); got != want {
			t.Errorf("Reason(%d).String() = %q, want %q", r, got, want)
		}
	}
	if a := testing.AllocsPerRun(100, func() { _ = ReasonTxFull.String() }); a != 0 {
		t.Errorf("String allocates %.1f", a)
	}
}

func TestCountersAdd(t *testing.T) {
	var total, batch Counters
	batch[ReasonUnknownMAC] = 3
	batch[ReasonNone] = 60
	total.Add(&batch)
	total.Add(&batch)
	if total[ReasonUnknownMAC] != 6 || total[ReasonNone] != 120 || total[ReasonTxFull] != 0 {
		t.Fatalf("total = %v", total)
	}
}
