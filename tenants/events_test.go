package tenants

import (
	"errors"
	"slices"
	"testing"

	"github.com/ispmux/ispmux/subscribers"
)

// TestEventsOfMAC: a device attached at alpha, its DHCP events there,
// moved to beta, and other devices' events between: the operator reads
// every event of the MAC (as its whole log has them: box numbers, each
// with its ISP's), each ISP its own only, in its own numbering (as its
// log has them), newest first or after a sequence; written with dashes
// too. A MAC that does not parse is ErrInvalid, an ISP not configured
// ErrNotFound.
func TestEventsOfMAC(t *testing.T) {
	r := newRig(t)
	const dev, other = "02:00:00:00:00:41", "02:00:00:00:00:42"
	for _, c := range []struct{ isp, id string }{{"alpha", "a-1"}, {"beta", "b-1"}} {
		if _, err := r.ten.CreateCustomer(ctx, op, c.isp, CustomerInput{ID: c.id, DeviceLimit: 2}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.ten.AttachDevice(ctx, op, "alpha", DeviceInput{MAC: dev, CustomerID: "a-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ten.AttachDevice(ctx, op, "alpha", DeviceInput{MAC: other, CustomerID: "a-1"}); err != nil {
		t.Fatal(err)
	}
	hw := subscribers.MAC{2, 0, 0, 0, 0, 0x41}
	for range 3 {
		for _, m := range []subscribers.MAC{hw, {2, 0, 0, 0, 0, 0x42}} {
			if _, err := r.store.AddEvent(subscribers.Event{Kind: subscribers.EventRenewed, MAC: m, ISP: "alpha", Customer: "a-1"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := r.ten.Move(ctx, op, dev, MoveRequest{ISP: "beta", CustomerID: "b-1", Immediate: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.AddEvent(subscribers.Event{Kind: subscribers.EventBound, MAC: hw, ISP: "beta", Customer: "b-1"}); err != nil {
		t.Fatal(err)
	}

	for _, isp := range []string{"", "alpha", "beta"} {
		var want []Event
		for _, e := range r.events(isp) {
			if e.MAC == dev {
				want = append(want, e)
			}
		}
		if len(want) < 2 {
			t.Fatalf("%q: the device has %d events", isp, len(want))
		}
		log, err := r.ten.Events(ctx, isp, 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.ten.EventsOfMAC(ctx, isp, "02-00-00-00-00-41", nil, 0)
		if err != nil || !slices.Equal(p.Events, want) || p.Oldest != log.Oldest || p.Newest != log.Newest {
			t.Errorf("EventsOfMAC(%q, newest) = %+v, %d..%d, %v\nwant %+v, %d..%d", isp, p.Events, p.Oldest, p.Newest, err, want, log.Oldest, log.Newest)
		}
		if p, err := r.ten.EventsOfMAC(ctx, isp, dev, nil, 1); err != nil || !slices.Equal(p.Events, want[len(want)-1:]) {
			t.Errorf("EventsOfMAC(%q, newest 1) = %+v, %v; want the last", isp, p.Events, err)
		}
		after := want[0].Seq
		if p, err := r.ten.EventsOfMAC(ctx, isp, dev, &after, 0); err != nil || !slices.Equal(p.Events, want[1:]) {
			t.Errorf("EventsOfMAC(%q, after %d) = %+v, %v; want all but the first", isp, after, p.Events, err)
		}
	}
	if _, err := r.ten.EventsOfMAC(ctx, "", "02:00:00:00:00", nil, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("EventsOfMAC of a short MAC: %v, want ErrInvalid", err)
	}
	if _, err := r.ten.EventsOfMAC(ctx, "gamma", dev, nil, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("EventsOfMAC of an ISP not configured: %v, want ErrNotFound", err)
	}
}
