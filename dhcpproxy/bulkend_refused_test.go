package dhcpproxy

import (
	"errors"
	"testing"

	"github.com/ispmux/ispmux/subscribers"
)

// endsRefuser is a store whose batched ends (EndBindings) fail.
type endsRefuser struct{ Store }

func (endsRefuser) EndBindings([]subscribers.BindingEnd) ([]subscribers.Event, error) {
	return nil, errors.New("disk full")
}

// A batch of revocations the store refuses leaves the binding as it was:
// leased, forwarding, stored, no intent queued or sent; the next
// revalidation, the store well again, revokes it with one RELEASE.
func TestBulkRevocationRefusedUnchanged(t *testing.T) {
	r, cs := boundAtAlpha(t)
	r.moveTo("beta")
	r.p.store = endsRefuser{cs}
	if n := r.p.RevalidateMACsImmediate([]uint64{s1MAC}); n != 0 {
		t.Errorf("RevalidateMACsImmediate = %d with the store refusing, want 0", n)
	}
	if _, ok := r.p.Lease(accPort, 0, s1MAC); !ok || !r.tab.isBound(s1MAC) {
		t.Fatalf("refused revocation: leased %v, forwarding %v; want both", ok, r.tab.isBound(s1MAC))
	}
	if n := r.p.PendingIntents(); n != 0 {
		t.Errorf("refused revocation: %d intents pending, want none", n)
	}
	if sent := r.toPorts(); len(sent[upPort]) != 0 {
		t.Errorf("refused revocation: %d messages to alpha, want none", len(sent[upPort]))
	}
	if bs, err := r.store.Bindings(); err != nil || len(bs) != 1 {
		t.Fatalf("refused revocation: %d bindings stored, %v; want 1", len(bs), err)
	}
	r.p.store = cs
	if n := r.p.RevalidateMACsImmediate([]uint64{s1MAC}); n != 1 {
		t.Errorf("RevalidateMACsImmediate = %d, want 1", n)
	}
	if _, ok := r.p.Lease(accPort, 0, s1MAC); ok || r.tab.isBound(s1MAC) {
		t.Errorf("revoked: still leased %v or forwarding %v", ok, r.tab.isBound(s1MAC))
	}
	r.checkReleasedToAlpha(r.toPorts())
}
