package api

import (
	"net/http"
	"strings"
	"testing"
)

// TestClaimCircuitNotSettable: a claim's circuit (tenants.ClaimRequest
// .Circuit) is the portal's, whose claims the limits count new claimants
// by; an API caller naming one would choose whose tokens its claims
// spend. It is no field of the API's claim: a body naming it is refused.
func TestClaimCircuitNotSettable(t *testing.T) {
	f, _, _ := newRealFixture(t)
	if w := f.do("POST", "/v1/isps/alpha/customers", "alpha", `{"customer_id":"c-9","password":"right one"}`); w.Code != 201 {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	for _, key := range []string{"circuit", "Circuit"} {
		body := `{"isp":"alpha","customer_id":"c-9","password":"right one","mac":"02:00:00:00:01:01","` + key + `":"eth1/20"}`
		w := f.do("POST", "/v1/claims", "claim", body)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "unknown field") {
			t.Errorf("a claim naming its %s: %d %s, want 400 unknown field", key, w.Code, w.Body)
		}
	}
}
