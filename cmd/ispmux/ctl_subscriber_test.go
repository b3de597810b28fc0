package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/api/client"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
)

// After a make-before-break move (ctl move without --immediate) the device
// belongs to the new ISP while its binding, still served, is the old
// ISP's. `ctl subscriber MAC` shows that binding (it looked at the device's
// ISP's bindings only, and said none).
func TestSubscriberViewAfterMove(t *testing.T) {
	r := newRig(t, nil)
	op := func(args ...string) []string { return r.api("operator", args...) }
	mac := "02:00:00:00:00:41"
	r.ok("", op("customer-add", "alpha", "a-1")...)
	r.ok("", op("customer-add", "beta", "b-1")...)
	r.ok("", op("device-add", "alpha", mac, "a-1")...)
	hw := subscribers.MAC{2, 0, 0, 0, 0, 0x41}
	ip := netip.MustParseAddr("198.51.100.41")
	if _, err := r.store.CommitBindingEvent(subscribers.Binding{MAC: hw, Access: "acc0", ISP: "alpha", Customer: "a-1",
		IP: ip, Expires: time.Now().Add(time.Hour)},
		subscribers.Event{Kind: subscribers.EventBound, MAC: hw, ISP: "alpha", Customer: "a-1", IP: ip}); err != nil {
		t.Fatal(err)
	}
	r.ok("", op("move", mac, "beta", "b-1")...)
	out, _ := r.ok("", op("bindings", "alpha")...)
	if rows := column(t, out); len(rows) != 1 || rows[0]["IP"] != ip.String() {
		t.Fatalf("the old ISP's binding is gone after a make-before-break move:\n%s", out)
	}
	out, _ = r.ok("", op("subscriber", mac, "--json")...)
	var sv subscriberView
	if err := json.Unmarshal([]byte(out), &sv); err != nil {
		t.Fatal(err)
	}
	if sv.Binding == nil {
		t.Errorf("ctl subscriber %s shows no binding while it is bound (at alpha, %s) after the move:\n%s", mac, ip, out)
	}
	// The move under way is said (a switching trial saw device: beta,
	// binding: alpha, and no word of it).
	if sv.Moving == nil || sv.Moving.ISP != "beta" || sv.Moving.CustomerID != "b-1" {
		t.Errorf("ctl subscriber --json: moving %+v, want to beta, b-1", sv.Moving)
	}
	out, _ = r.ok("", op("subscriber", mac)...)
	if !strings.Contains(out, "moving:") || !strings.Contains(out, "to beta (customer b-1)") {
		t.Errorf("ctl subscriber does not say the device is moving:\n%s", out)
	}
}

// An ISP's DHCPNAK message (option 56: text the ISP's server chooses)
// becomes the nak event's reason verbatim (dhcpproxy nakFromISP). `ctl
// events` prints one row per event, and nothing that the operator's
// terminal takes as a control sequence (a newline in it printed a forged
// row, ESC and BEL reached the terminal).
func TestEventsTableControlCharacters(t *testing.T) {
	r := newRig(t, nil)
	op := func(args ...string) []string { return r.api("operator", args...) }
	hw := subscribers.MAC{2, 0, 0, 0, 0, 0x42}
	ip := netip.MustParseAddr("198.51.100.42")
	if _, err := r.store.CommitBindingEvent(subscribers.Binding{MAC: hw, Access: "acc0", ISP: "alpha", Customer: "a-1",
		IP: ip, Expires: time.Now().Add(time.Hour)},
		subscribers.Event{Kind: subscribers.EventBound, MAC: hw, ISP: "alpha", Customer: "a-1", IP: ip}); err != nil {
		t.Fatal(err)
	}
	// What nakFromISP records for a NAK whose message is this.
	msg := "wrong network\n999      2026-01-01T00:00:00  bound  02:00:00:00:00:99  beta  forged\x1b[2J\x1b]0;pwned\x07"
	if _, _, _, err := r.store.EndBinding("acc0", 0, hw, nil, subscribers.Event{Kind: subscribers.EventNak, MAC: hw, ISP: "alpha",
		Customer: "a-1", IP: ip, Reason: "the ISP refused (DHCPNAK): " + msg}); err != nil {
		t.Fatal(err)
	}
	out, _ := r.ok("", op("events")...)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 { // the header, bound, nak
		t.Errorf("ctl events: 2 events printed as %d rows:\n%s", len(lines)-1, out)
	}
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("ctl events passes the ISP's control characters to the terminal: %q", out)
	}
}

// `ctl subscriber` shows a MAC's newest 20 events of all those the log
// keeps, found by MAC (GET …/events?mac=). It read the log's newest 10000
// events and kept the MAC's: on a box of 100k subscribers that is
// minutes, and a device's event 30000 events back (an hour ago) showed as
// none. An ISP's token sees its own ISP's events of the MAC only.
func TestSubscriberEventsAnyAge(t *testing.T) {
	r := newRig(t, nil)
	hw := subscribers.MAC{2, 0, 0, 0, 0, 0x43}
	w := subscribers.TenantWrite{Events: []subscribers.Event{{Kind: subscribers.EventUnknown, MAC: hw, Reason: "old event of this MAC"}}}
	const others = 30000
	for i := range others {
		other := subscribers.MAC{2, 0, 0, 1, byte(i >> 8), byte(i)}
		w.Events = append(w.Events, subscribers.Event{Kind: subscribers.EventUnknown, MAC: other, Reason: "other"})
	}
	if _, err := r.store.ApplyTenant(w); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, _ := r.ok("", r.api("operator", "subscriber", "02:00:00:00:00:43")...)
	t.Logf("ctl subscriber took %v with %d events in the log", time.Since(start), others+1)
	if !strings.Contains(out, "old event of this MAC") || !strings.Contains(out, "recent events (its newest 20 of those the log keeps)") {
		t.Errorf("ctl subscriber does not show the device's event %d events before the newest:\n%s", others, out)
	}

	// 25 more of its events, of alpha and beta: the newest 20 shown.
	w = subscribers.TenantWrite{}
	for i := range 25 {
		w.Events = append(w.Events, subscribers.Event{Kind: subscribers.EventRenewed, MAC: hw, ISP: []string{"alpha", "beta"}[i%2], Reason: fmt.Sprintf("n-%d", i)})
	}
	if _, err := r.store.ApplyTenant(w); err != nil {
		t.Fatal(err)
	}
	view := func(args ...string) subscriberView {
		t.Helper()
		out, _ := r.ok("", args...)
		var sv subscriberView
		if err := json.Unmarshal([]byte(out), &sv); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return sv
	}
	sv := view(r.api("operator", "subscriber", "02:00:00:00:00:43", "--json")...)
	if n := len(sv.Events); n != 20 || sv.Events[0].Reason != "n-5" || sv.Events[n-1].Reason != "n-24" {
		t.Errorf("ctl subscriber --json: %d events %+v; want its newest 20, n-5 to n-24", n, sv.Events)
	}
	sv = view(r.api("alpha", "subscriber", "02:00:00:00:00:43", "--isp", "alpha", "--json")...)
	for _, e := range sv.Events {
		if e.ISP != "alpha" {
			t.Errorf("alpha's ctl subscriber shows %+v", e)
		}
	}
	if n := len(sv.Events); n != 13 || sv.Events[n-1].Reason != "n-24" {
		t.Errorf("alpha's ctl subscriber: %d events; want alpha's 13, the last n-24", n)
	}
}

// TestProblemLine: a problem's detail that repeats its title is not
// printed twice ("Not found: not found: customer c-1"), nor one that
// repeats it after its status's words ("Device registered with another
// provider: conflict: device registered with another provider: ...").
func TestProblemLine(t *testing.T) {
	for _, c := range []struct {
		p    client.Error
		want string
	}{
		{client.Error{Status: 404, Title: "Not found", Detail: "not found: customer c-1"}, "Not found: customer c-1 (HTTP 404)"},
		{client.Error{Status: 409, Title: "Conflict", Detail: "the device is attached elsewhere"}, "Conflict: the device is attached elsewhere (HTTP 409)"},
		{client.Error{Status: 400, Title: "Bad request", Detail: "Bad request", RequestID: "r1"}, "Bad request (HTTP 400, request r1)"},
		// The detail is the tenants error, its sentinels first (ErrConflict's, then ErrDeviceTaken's, the title).
		{client.Error{Status: 409, Title: "Device registered with another provider", Detail: "conflict: device registered with another provider: device 02:00:00:00:00:07 cannot be attached here; ask the operator", RequestID: "r2"},
			"Device registered with another provider: device 02:00:00:00:00:07 cannot be attached here; ask the operator (HTTP 409, request r2)"},
		{client.Error{Status: 409, Title: "Conflict", Detail: "conflict: customer suspended"}, "Conflict: customer suspended (HTTP 409)"},
		// The device limit's figure after its words (a trial read
		// "Customer's device limit reached: customer's device limit (1)
		// reached").
		{client.Error{Status: 409, Title: "Customer's device limit reached", Detail: (&tenants.DeviceLimitError{Limit: 1, Devices: []string{"02:00:00:00:00:01"}, Replaceable: []string{"02:00:00:00:00:01"}, Claim: true}).Error()},
			"Customer's device limit reached: limit 1, attached [02:00:00:00:00:01]; claim again with replace set to one of them (HTTP 409)"},
		// A detail that only begins with words of the title keeps them.
		{client.Error{Status: 409, Title: "Conflict", Detail: "conflicting access: acc1"}, "Conflict: conflicting access: acc1 (HTTP 409)"},
	} {
		if got := problemLine(&c.p); got != c.want {
			t.Errorf("problemLine(%+v) = %q, want %q", c.p, got, c.want)
		}
	}
}

// TestSubscriberViewStatic: a static subscriber (no DHCP binding) is shown
// with its configured address, not as "binding: none".
func TestSubscriberViewStatic(t *testing.T) {
	var b strings.Builder
	d := tenants.Device{MAC: "02:00:00:00:01:01", ISP: "alpha", Source: "config", StaticIP: netip.MustParseAddr("100.64.0.9")}
	if err := writeSubscriber(&b, subscriberView{MAC: d.MAC, Device: &d}); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "binding:\n  static 100.64.0.9 (") || !strings.Contains(out, "static ip:") {
		t.Errorf("view:\n%s", out)
	}
}

// TestSubscriberViewGarden: ctl subscriber shows a device's onboarding
// lease in the walled garden and its handover, as ctl status lists them,
// where it showed neither (an unknown device in the garden was "no device,
// binding or recent event" once its events left the window); over the API,
// which has no status, it says they are not known.
func TestSubscriberViewGarden(t *testing.T) {
	var b strings.Builder
	v := subscriberView{MAC: "02:00:00:00:01:05",
		Garden: &ctlsock.OnboardingStatus{MAC: "02:00:00:00:01:05", Access: "acc0", IP: "100.72.0.5", Expires: "2026-12-06T02:00:00Z",
			Chosen: "beta", HandoverFailed: "refused", HandoverRetry: "2026-12-06T02:05:00Z"}}
	if err := writeSubscriber(&b, v); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"walled garden:\n", "onboarding lease:  100.72.0.5 on acc0, until 2026-12-06 02:00:00Z",
		"chosen:", "beta (handover refused, retry 2026-12-06 02:05:00Z)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("view lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	v = subscriberView{MAC: "02:00:00:00:01:05", Handover: &ctlsock.HandoverStatus{MAC: "02:00:00:00:01:05", Access: "acc0", ISP: "beta",
		CustomerID: "b-1", SilentSince: "2026-12-06T02:00:00Z"}}
	if err := writeSubscriber(&b, v); err != nil {
		t.Fatal(err)
	}
	if want := "handover:  to beta (customer b-1) on acc0: its ISP silent since 2026-12-06 02:00:00Z"; !strings.Contains(b.String(), want) {
		t.Errorf("view lacks %q:\n%s", want, b.String())
	}
	b.Reset()
	if err := writeSubscriber(&b, subscriberView{MAC: "02:00:00:00:01:05", GardenUnknown: true}); err != nil || !strings.Contains(b.String(), "not known over the API") {
		t.Errorf("view over the API: %v\n%s", err, b.String())
	}
}

// TestSubscriberGardenOverSocket: through the control socket, ctl
// subscriber finds a device known only by its onboarding lease (no device
// record, no binding, no event), where it said there was nothing.
func TestSubscriberGardenOverSocket(t *testing.T) {
	r := newRig(t, nil)
	out, _ := r.ok("", "ctl", "-c", r.cfg, "subscriber", "02:00:00:00:00:77")
	if !strings.Contains(out, "onboarding lease:  100.72.0.7 on acc0, until 2026-12-06 02:00:00Z") {
		t.Errorf("ctl subscriber of a device in the walled garden:\n%s", out)
	}
	_, _, err := runCmd(t, "", r.api("operator", "subscriber", "02:00:00:00:00:77")...)
	if err == nil || !strings.Contains(err.Error(), "not known over the API") {
		t.Errorf("ctl subscriber over the API of a device known only in the garden: %v", err)
	}
}
