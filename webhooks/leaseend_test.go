package webhooks

import (
	"net/netip"
	"testing"
	"time"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/subscribers"
)

// doc.go: "The body is the event as the API shows it (tenants.Event ...)".
// The API shows a bound event's lease_end (tenants.Event.LeaseEnd); the
// webhook body must carry it too.
func TestWebhookBodyHasLeaseEnd(t *testing.T) {
	s := openStore(t, "", subscribers.Options{NoSync: true})
	sec := writeSecret(t, specSecret)
	rc := newReceiver(t, specSecret)
	start(t, &configs.Config{ISPs: []configs.ISP{isp("beta", rc.srv.URL, sec)}}, s)
	end := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	e, err := s.AddEvent(subscribers.Event{Kind: subscribers.EventBound, ISP: "beta", MAC: subscribers.MAC{2, 0, 0, 0, 1, 1},
		IP: netip.MustParseAddr("100.64.0.1"), Customer: "c-1", LeaseEnd: end})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := s.Events(e.Seq-1, 1)
	if err != nil || len(stored) != 1 || !stored[0].LeaseEnd.Equal(end) {
		t.Fatalf("store lost the lease end: %+v %v", stored, err)
	}
	rc.waitAcked(1, 5*time.Second)
	d := rc.all()[0]
	if d.ev.LeaseEnd == nil || !d.ev.LeaseEnd.Equal(end) {
		t.Fatalf("webhook body of bound event %d has lease_end %v, want %v (the API's GET …/events shows it)", e.Seq, d.ev.LeaseEnd, end)
	}
}
