package api

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"testing"

	"github.com/ispmux/ispmux/api/client"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
)

// GET …/events?mac= is one device's events, read from the store's index
// by MAC: the operator's (/v1/events) every event of it, in the box's
// numbering; an ISP's (/v1/isps/{isp}/events) its own only, in its own,
// exactly as its events list has them. Without after, the newest limit
// (however far back: 300 other events between); with after, those after
// it, page by page, next the after of the next poll (at the end the
// log's newest). A MAC that does not parse is a 400 problem, like any
// other parameter; another ISP's path is refused.
func TestEventsOfMACList(t *testing.T) {
	f, _, st := newRealFixture(t)
	dev := subscribers.MAC{2, 0, 0, 0, 0, 9}
	add := func(m subscribers.MAC, isp string) {
		t.Helper()
		if _, err := st.AddEvent(subscribers.Event{Kind: subscribers.EventRenewed, MAC: m, ISP: isp}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 12 {
		add(dev, []string{"alpha", "beta", ""}[i%3])
		for j := range 25 {
			add(subscribers.MAC{2, 0, 0, 0, 1, byte(j)}, []string{"alpha", "beta"}[j%2])
		}
	}
	list := func(who, path string) EventList {
		t.Helper()
		w := f.do("GET", path, who, "")
		var el EventList
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &el) != nil {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		return el
	}
	for _, c := range []struct{ who, path string }{
		{"operator", "/v1/events"},
		{"alpha", "/v1/isps/alpha/events"},
		{"beta", "/v1/isps/beta/events"},
		{"operator", "/v1/isps/beta/events"},
	} {
		log := list(c.who, c.path+"?after=0&limit=1000")
		var want []tenants.Event
		for _, e := range log.Items {
			if e.MAC == "02:00:00:00:00:09" {
				want = append(want, e)
			}
		}
		if len(want) < 4 {
			t.Fatalf("%s: the device has %d events", c.path, len(want))
		}
		newestNext := strconv.FormatUint(log.Newest, 10)
		got := list(c.who, c.path+"?mac=02-00-00-00-00-09")
		if !slices.Equal(got.Items, want) || got.Next != newestNext || got.Oldest != log.Oldest || got.Newest != log.Newest || got.Missed {
			t.Errorf("%s?mac= = %+v\nwant %+v, next %s, bounds %d..%d", c.path, got, want, newestNext, log.Oldest, log.Newest)
		}
		if got := list(c.who, c.path+"?mac=02:00:00:00:00:09&limit=2"); !slices.Equal(got.Items, want[len(want)-2:]) || got.Next != newestNext {
			t.Errorf("%s?mac=&limit=2 = %+v, next %s; want its newest 2, next %s", c.path, got.Items, got.Next, newestNext)
		}
		var paged []tenants.Event
		next := "0"
		for range 2 * len(want) {
			p := list(c.who, c.path+"?mac=02:00:00:00:00:09&limit=3&after="+next)
			paged = append(paged, p.Items...)
			next = p.Next
			if len(p.Items) == 0 {
				break
			}
		}
		if !slices.Equal(paged, want) || next != newestNext {
			t.Errorf("%s?mac= paged by 3 = %+v, ending at %s\nwant %+v, ending at %s", c.path, paged, next, want, newestNext)
		}
		if got := list(c.who, c.path+"?mac=02:00:00:00:00:09&after="+strconv.FormatUint(log.Newest+1000000, 10)); len(got.Items) != 0 || !got.Missed || got.Next != newestNext {
			t.Errorf("%s?mac=&after= past the newest: %+v; want missed, next %s (as the events list)", c.path, got, newestNext)
		}
	}
	if got := list("operator", "/v1/events?mac=02:00:00:00:00:77"); len(got.Items) != 0 {
		t.Errorf("a device with no event: %+v", got.Items)
	}
	for _, c := range []struct {
		who, path string
		status    int
	}{
		{"operator", "/v1/events?mac=nonsense", 400},
		{"operator", "/v1/events?mac=", 400},
		{"alpha", "/v1/isps/alpha/events?mac=02:00:00:00:09", 400},
		{"operator", "/v1/events?mac=02:00:00:00:00:09&after=x", 400},
		{"beta", "/v1/isps/alpha/events?mac=02:00:00:00:00:09", 404},
		{"beta", "/v1/events?mac=02:00:00:00:00:09", 403},
	} {
		if p := decodeProblem(t, f.do("GET", c.path, c.who, "")); p.Status != c.status {
			t.Errorf("%s as %s: %+v, want %d", c.path, c.who, p, c.status)
		}
	}

	// The client's EventsOfMAC: newest (after < 0), and after a sequence.
	addr := f.serve()
	ctx := context.Background()
	beta, err := client.New("http://"+addr, f.tokens["beta"], client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := list("beta", "/v1/isps/beta/events?mac=02:00:00:00:00:09").Items
	if got, err := beta.EventsOfMAC(ctx, "beta", "02:00:00:00:00:09", -1, 2); err != nil || !slices.Equal(got.Items, want[len(want)-2:]) {
		t.Errorf("client EventsOfMAC(beta, newest 2) = %+v, %v; want %+v", got.Items, err, want[len(want)-2:])
	}
	if got, err := beta.EventsOfMAC(ctx, "beta", "02:00:00:00:00:09", int64(want[0].Seq), 0); err != nil || !slices.Equal(got.Items, want[1:]) {
		t.Errorf("client EventsOfMAC(beta, after %d) = %+v, %v; want %+v", want[0].Seq, got.Items, err, want[1:])
	}
}
