package dhcpproxy

import (
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// A device handed over is listed by Handovers while it holds neither an
// onboarding lease nor a binding (its DORA with its ISP under way, then
// its ISP's refusal), and no longer once back in the garden or bound; a
// switch held for its DORA likewise. Before, ctl status listed such a
// device nowhere for up to a lease time.
func TestHandoversListed(t *testing.T) {
	const m, m48 = "02:77:00:00:00:01", 0x027700000001
	r := handedOver(t, m, "c-s1")
	hs := r.p.Handovers(10)
	if len(hs) != 1 || hs[0].MAC != m48 || hs[0].ISP != "alpha" || hs[0].CustomerID != "c-s1" || hs[0].Access != "acc0" ||
		!hs[0].HeldUntil.After(r.p.now()) || hs[0].Failed != "" {
		t.Fatalf("Handovers after the handover's NAK = %+v, want m's, held, going on", hs)
	}
	if got := r.dora(m, keaRefusing(t), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("the handover's DORA: %v", got)
	}
	if hs := r.p.Handovers(10); len(hs) != 1 || hs[0].Failed != HandoverRefused {
		t.Fatalf("Handovers after alpha's NAK = %+v, want m's, refused", hs)
	}
	r.gardenDORA(m, "after alpha's NAK")
	if hs := r.p.Handovers(10); len(hs) != 0 {
		t.Errorf("Handovers back in the garden = %+v, want none (an onboarding lease lists it)", hs)
	}
	if hs := r.p.Handovers(0); len(hs) != 0 {
		t.Errorf("Handovers(0) = %+v", hs)
	}

	r2 := switchedAt(t, "claim")
	if hs := r2.p.Handovers(10); len(hs) != 1 || hs[0].MAC != s1MAC || hs[0].ISP != "alpha" {
		t.Fatalf("Handovers after the switch's NAK = %+v, want s1's to alpha", hs)
	}
	if got := r2.dora(s1, kea(t, time.Hour), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("the switch's DORA at alpha: %v", got)
	}
	if hs := r2.p.Handovers(10); len(hs) != 0 {
		t.Errorf("Handovers once bound at alpha = %+v, want none", hs)
	}
}
