package dhcpproxy

import "testing"

// TestBudgetOfUnconfiguredISP: a refusal of a MAC registered at an ISP
// the configuration no longer names goes to the budget of no configured
// ISP (""), as the suppressed summary's wording says, so the budgets stay
// bounded by the configured ISPs; a configured ISP's goes to its own.
func TestBudgetOfUnconfiguredISP(t *testing.T) {
	r := newPRig(t)
	if b := r.p.budgetOf(subject{mac: 1, isp: "alpha"}); b != "alpha" {
		t.Errorf("alpha's refusal: budget %q, want alpha's", b)
	}
	for _, isp := range []string{"", "gamma"} {
		if b := r.p.budgetOf(subject{mac: 1, isp: isp}); b != "" {
			t.Errorf("refusal at ISP %q (not configured): budget %q, want the one of no configured ISP", isp, b)
		}
	}
}
