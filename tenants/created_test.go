package tenants

import (
	"testing"
	"time"

	"github.com/ispmux/ispmux/subscribers"
)

// A device record's Created (what the client identifier reclaim orders
// registrations by) starts again when the device goes to another
// customer: a move by the operator, to a customer of the same ISP or
// another, or a claim from the device with another customer's
// credentials. A block, an access pin or an attach to the customer it
// has keep it. It was kept through every move, so a device taken over
// by another customer still counted as registered before a holder that
// was there first. Fails without the reset.
func TestDeviceCreatedResetByMove(t *testing.T) {
	r := newRig(t)
	r.ten.cfg.Circuits = pinCircuits
	for _, c := range []struct{ isp, id, pw string }{{"beta", "c-77", ""}, {"beta", "c-78", "s3cret-pass"}, {"alpha", "a-9", ""}} {
		if _, err := r.ten.CreateCustomer(ctx, op, c.isp, CustomerInput{ID: c.id, Password: c.pw}); err != nil {
			t.Fatal(err)
		}
	}
	const dev = "02:00:00:00:00:07"
	created := func() time.Time {
		t.Helper()
		time.Sleep(time.Millisecond)
		m, _ := parseMAC(dev)
		reg, err := r.store.Registration(subscribers.MAC(m))
		if err != nil {
			t.Fatal(err)
		}
		return reg.Created
	}
	if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: dev, CustomerID: "c-77"}); err != nil {
		t.Fatal(err)
	}
	t0 := created()
	if _, err := r.ten.AttachDevice(ctx, beta, "beta", DeviceInput{MAC: dev, CustomerID: "c-77", Access: "acc0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.Block(ctx, op, dev, true); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.Block(ctx, op, dev, false); err != nil {
		t.Fatal(err)
	}
	if got := created(); !got.Equal(t0) {
		t.Errorf("after a re-attach to its customer and a block: Created %v, want %v kept", got, t0)
	}
	last := t0
	for _, step := range []struct {
		name string
		do   func() error
	}{
		{"a claim from the device with another customer's credentials", func() error {
			_, err := r.ten.Claim(ctx, Actor{Kind: ActorClaim, Name: "installer"}, ClaimRequest{ISP: "beta", CustomerID: "c-78", Password: "s3cret-pass", MAC: dev})
			return err
		}},
		{"a move to another customer of its ISP", func() error {
			_, err := r.ten.Move(ctx, op, dev, MoveRequest{ISP: "beta", CustomerID: "c-77"})
			return err
		}},
		{"a move to another ISP", func() error {
			_, err := r.ten.Move(ctx, op, dev, MoveRequest{ISP: "alpha", CustomerID: "a-9"})
			return err
		}},
	} {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		got := created()
		if !got.After(last) {
			t.Errorf("after %s: Created %v, want after %v", step.name, got, last)
		}
		last = got
	}
}
