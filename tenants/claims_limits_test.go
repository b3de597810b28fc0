package tenants

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// TestClaimSprayFromOneDevice: one device (one MAC, as the portal sends
// it) tries one common password against many customer IDs, with the
// default claim limits. The per-MAC bucket refuses it after PerMACBurst
// failures (before, the limits were per (customer, MAC) and per customer
// only: all 20 were verified and the spray found the customer using that
// password).
func TestClaimSprayFromOneDevice(t *testing.T) {
	st, err := subscribers.Open(filepath.Join(t.TempDir(), "s.db"), subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ten := New(Config{ISPs: []string{"alpha"}, MaxDevices: 100}, st, registry.New(), &fakeProxy{}, &fakeAdm{set: map[uint64]bool{}}, nil)
	if err := ten.Load(); err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		pw := fmt.Sprintf("private-%d-password", i)
		if i == n-1 {
			pw = "Summer2024!" // the one the spray is looking for
		}
		if _, err := ten.CreateCustomer(ctx, op, "alpha", CustomerInput{ID: fmt.Sprintf("c-%d", i), Password: pw}); err != nil {
			t.Fatal(err)
		}
	}
	portal := Actor{Kind: ActorPortal, Name: "portal"}
	verified, limited := 0, 0
	var found string
	for i := range n {
		id := fmt.Sprintf("c-%d", i)
		_, err := ten.Claim(ctx, portal, ClaimRequest{ISP: "alpha", CustomerID: id, Password: "Summer2024!", MAC: "02:00:00:00:00:66"})
		var rl *RateLimitError
		switch {
		case err == nil:
			verified++
			found = id
		case errors.Is(err, ErrBadCredentials):
			verified++
		case errors.As(err, &rl) || errors.Is(err, ErrRateLimited):
			limited++
		default:
			t.Fatalf("%s: %v", id, err)
		}
	}
	if verified > DefaultClaimLimits.PerMACBurst || found != "" {
		t.Errorf("one device: %d of %d guesses verified back to back, none limited (spray found %q)", verified, n, found)
	}
}
