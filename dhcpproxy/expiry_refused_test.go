package dhcpproxy

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// oddEndsRefuser refuses every other EndBindings while refusing is set.
type oddEndsRefuser struct {
	*subscribers.Store
	refusing bool
	calls    int
}

func (s *oddEndsRefuser) EndBindings(ends []subscribers.BindingEnd) ([]subscribers.Event, error) {
	s.calls++
	if s.refusing && s.calls%2 == 0 {
		return nil, errors.New("refused (test)")
	}
	return s.Store.EndBindings(ends)
}

// A mass expiry whose store refuses some of its batches: the refused
// leases stay leased, forwarding and stored, and are on the expiry heap
// still, so the next tick ends them; each lease ends once, with one
// expired event and counted once, whichever tick ended it.
func TestMassExpiryRefusedBatchesComeBack(t *testing.T) {
	const n = 2000 // one tick's round: 4 batches
	path := filepath.Join(t.TempDir(), "s.db")
	seedRemovedCircuit(t, path, 0, n)
	st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rs := &oddEndsRefuser{Store: st, refusing: true}
	tab := &fakeTables{bound: map[uint64]binding.Binding{}, store: st}
	p := New(switchRigConfig(), rs, storeRegistry{st}, tab, &fakeSender{}, nil)
	if got, err := p.Restore(time.Now()); err != nil || got != n {
		t.Fatalf("Restore = %d, %v; want %d", got, err, n)
	}
	later := time.Now().Add(3 * time.Hour)
	p.expire(later)
	left := p.leases.len()
	if left == 0 || left == n {
		t.Fatalf("%d leases left after a tick with every other batch refused, want some", left)
	}
	stored := 0
	if err := st.ForEachBindingBorrowed(func(*subscribers.Binding) error { stored++; return nil }); err != nil {
		t.Fatal(err)
	}
	forwarding := 0
	for i := range n {
		if tab.isBound(binding.MAC48(removedCircuitMAC(i))) {
			forwarding++
		}
	}
	if stored != left || forwarding != left {
		t.Fatalf("after the refusals: %d leased, %d stored, %d forwarding; want them equal", left, stored, forwarding)
	}
	rs.refusing = false
	p.expire(later.Add(time.Second))
	if l := p.leases.len(); l != 0 {
		t.Fatalf("%d leases left at the next tick", l)
	}
	if c := p.Counters(); c["expired"] != n {
		t.Errorf("counted %d expired, want %d", c["expired"], n)
	}
	evs, err := st.Events(0, 2*n+100)
	if err != nil {
		t.Fatal(err)
	}
	ended := map[[6]byte]int{}
	for _, e := range evs {
		if e.Kind == subscribers.EventExpired {
			ended[[6]byte(e.MAC)]++
		}
	}
	for i := range n {
		if k := ended[removedCircuitMAC(i)]; k != 1 {
			t.Fatalf("binding %d: %d expired events, want 1", i, k)
		}
	}
}
