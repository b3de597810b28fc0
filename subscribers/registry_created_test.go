package subscribers

import (
	"testing"
	"time"
)

// A registration's Created is when its MAC was registered to its current
// customer (ISP and customer ID): a write that keeps them keeps it, the
// SyncRegistrations one included; one that moves the MAC to another
// customer, of the same ISP or another, starts it again (the client
// identifier reclaim compares it: a device given to another customer
// must not count as registered before a holder that was there first).
// Fails without the reset (the moves keep the first Created).
func TestRegistrationCreatedResetByMove(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	m := MAC{2, 0, 0, 0, 0, 1}
	created := func() time.Time {
		t.Helper()
		r, err := s.Registration(m)
		if err != nil {
			t.Fatal(err)
		}
		return r.Created
	}
	put := func(isp, customer string) {
		t.Helper()
		time.Sleep(time.Millisecond)
		if err := s.PutRegistration(Registration{MAC: m, ISP: isp, CustomerID: customer, Source: "api"}); err != nil {
			t.Fatal(err)
		}
	}
	put("a", "c1")
	first := created()
	put("a", "c1") // rewritten, same customer
	if got := created(); !got.Equal(first) {
		t.Errorf("rewritten for its customer: Created %v, want %v kept", got, first)
	}
	put("a", "c2") // another customer of its ISP
	second := created()
	if !second.After(first) {
		t.Errorf("moved to another customer: Created %v, want after %v", second, first)
	}
	put("b", "c2") // another ISP
	third := created()
	if !third.After(second) {
		t.Errorf("moved to another ISP: Created %v, want after %v", third, second)
	}
	time.Sleep(time.Millisecond)
	if _, err := s.SyncRegistrationsDiff("config", []Registration{{MAC: m, ISP: "b", CustomerID: "c2", Access: "x"}}, false); err != nil {
		t.Fatal(err)
	}
	if got := created(); !got.Equal(third) {
		t.Errorf("taken over by the configuration for its customer: Created %v, want %v kept", got, third)
	}
	time.Sleep(time.Millisecond)
	if _, err := s.SyncRegistrationsDiff("config", []Registration{{MAC: m, ISP: "b", CustomerID: "c3"}}, false); err != nil {
		t.Fatal(err)
	}
	if got := created(); !got.After(third) {
		t.Errorf("moved by the configuration: Created %v, want after %v", got, third)
	}
}
