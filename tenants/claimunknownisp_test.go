package tenants

import (
	"errors"
	"fmt"
	"testing"
)

// A claim naming an ISP that is not configured costs the box a password
// verify (a dummy one, so that the answer does not tell), and counts
// against its claimant like a wrong password: a claim token sending them
// in a loop is rate limited after the claimant's failures (PerMACBurst),
// as with a configured ISP's unknown customers. Before, they were not
// counted: unlimited argon2 verifies, each one ahead of every import's
// hash, from one installer's token.
func TestClaimUnknownISPLimited(t *testing.T) {
	r := newRig(t)
	installer := Actor{Kind: ActorClaim, Name: "installer", RequestID: "r9"}
	limited := 0
	for i := range DefaultClaimLimits.PerMACBurst + 5 {
		_, err := r.ten.Claim(ctx, installer, ClaimRequest{ISP: "nosuch", CustomerID: fmt.Sprintf("c-%d", i), Password: "guess",
			MAC: fmt.Sprintf("02:00:00:00:09:%02x", i)})
		switch {
		case errors.Is(err, ErrRateLimited):
			limited++
		case !errors.Is(err, ErrBadCredentials):
			t.Fatalf("claim %d: %v", i, err)
		}
	}
	if limited != 5 {
		t.Errorf("%d of %d claims naming no configured ISP rate limited, want 5 (past PerMACBurst %d)", limited, DefaultClaimLimits.PerMACBurst+5, DefaultClaimLimits.PerMACBurst)
	}
	// The operator's claims are not limited.
	for i := range DefaultClaimLimits.PerMACBurst + 2 {
		if _, err := r.ten.Claim(ctx, op, ClaimRequest{ISP: "nosuch", CustomerID: "c", Password: "x", MAC: fmt.Sprintf("02:00:00:00:0a:%02x", i)}); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("operator's claim %d: %v", i, err)
		}
	}
	// No event for an ISP that does not exist.
	for _, e := range r.events("") {
		if e.ISP == "nosuch" {
			t.Errorf("an event of ISP nosuch: %+v", e)
		}
	}
}
