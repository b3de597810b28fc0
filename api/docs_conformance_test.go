package api

import (
	"context"
	"encoding/json"
	"github.com/ispmux/ispmux/auth"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// TestOperatorDevicesCustomerFilter: docs/API.md, GET /v1/devices: "Operator:
// every ISP's devices (`?customer_id=` as above)". It answered 422 "a
// customer without its ISP"; it lists that ID's devices at every ISP.
func TestOperatorDevicesCustomerFilter(t *testing.T) {
	f, _, _ := newRealFixture(t)
	if w := f.do("POST", "/v1/isps/alpha/customers", "alpha", `{"customer_id":"c-1"}`); w.Code != 201 {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	if w := f.do("POST", "/v1/isps/alpha/devices", "alpha", `{"mac":"02:00:00:00:00:05","customer_id":"c-1"}`); w.Code != 201 {
		t.Fatalf("attach: %d %s", w.Code, w.Body)
	}
	w := f.do("GET", "/v1/devices?customer_id=c-1", "operator", "")
	if w.Code != 200 {
		t.Fatalf("operator GET /v1/devices?customer_id=c-1: %d %s (documented filter)", w.Code, w.Body)
	}
}

// TestBadQueryParamIs400: docs/API.md's errors table: bad-request 400 "bad
// query parameter or MAC". A bad cursor or ?mac= answered 422 invalid.
func TestBadQueryParamIs400(t *testing.T) {
	f, _, _ := newRealFixture(t)
	for _, p := range []string{
		"/v1/isps/alpha/customers?after=c-2", // the docs' own example cursor
		"/v1/isps/alpha/customers?after=!!!",
		"/v1/isps/alpha/devices?after=zz",
		"/v1/isps/alpha/bindings?mac=nonsense",
		"/v1/devices?after=xyz",
	} {
		w := f.do("GET", p, "alpha", "")
		if strings.HasPrefix(p, "/v1/devices") {
			w = f.do("GET", p, "operator", "")
		}
		var pr Problem
		_ = json.Unmarshal(w.Body.Bytes(), &pr)
		if w.Code != 400 || pr.Type != ProblemTypePrefix+"bad-request" {
			t.Errorf("GET %s: %d %s, want 400 bad-request", p, w.Code, pr.Type)
		}
	}
}

// TestCustomerLocationRoundTrip: the Location the server answers must lead
// back to the customer, for IDs with characters that need escaping; "."
// and ".." (dot-segments clients remove: a 307 elsewhere) are refused.
func TestCustomerLocationRoundTrip(t *testing.T) {
	f, _, _ := newRealFixture(t)
	for _, id := range []string{"a/b", "a%2Fb", "a?b", "a#b", "a+b", "ä", "a;b", "..", "."} {
		body, _ := json.Marshal(map[string]string{"customer_id": id})
		w := f.do("POST", "/v1/isps/alpha/customers", "alpha", string(body))
		if w.Code != 201 {
			t.Logf("create %q: %d %s", id, w.Code, w.Body)
			continue
		}
		loc := w.Header().Get("Location")
		w2 := f.do("GET", loc, "alpha", "")
		var c struct {
			ID string `json:"customer_id"`
		}
		_ = json.Unmarshal(w2.Body.Bytes(), &c)
		if w2.Code != 200 || c.ID != id {
			t.Errorf("customer %q: Location %q answers %d %s", id, loc, w2.Code, w2.Body)
		}
		w3 := f.do("DELETE", "/v1/isps/alpha/customers/"+url.PathEscape(id), "alpha", "")
		if w3.Code != 204 {
			t.Errorf("delete %q: %d %s", id, w3.Code, w3.Body)
		}
	}
	_ = context.Background
	_ = http.StatusOK
}

// TestRotatedTokenEndsStream: docs/API.md (Tokens): after rotation "the old
// token is refused (401) from then on". An event stream opened with the old
// token kept delivering the ISP's events (streams have no end); it ends.
func TestRotatedTokenEndsStream(t *testing.T) {
	f := newFixture(t)
	f.srv.Limits.Heartbeat = 50 * time.Millisecond
	addr := f.serve()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, sr := f.stream(ctx, addr, "/v1/isps/alpha/events/stream", "alpha", "")
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	// Rotate alpha's token: alpha-1.token gets a new one, SIGHUP.
	_, line := auth.NewToken()
	if err := os.WriteFile(filepath.Join(f.dir, "alpha-1.token"), []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.tokens.Reload(); err != nil {
		t.Fatal(err)
	}
	if w := f.do("GET", "/v1/isps/alpha", "alpha", ""); w.Code != 401 {
		t.Fatalf("old token after rotation: %d, want 401", w.Code)
	}
	time.Sleep(100 * time.Millisecond)
	seq := f.svc.addEvent(tenants.Event{Kind: "bound", ISP: "alpha", MAC: "02:00:00:00:00:01"})
	got := make(chan string, 1)
	go func() {
		for {
			ev, err := sr.next()
			if err != nil {
				got <- ""
				return
			}
			if ev.id != "" && !ev.comment { // an event, not a heartbeat's resume point
				got <- ev.id
				return
			}
		}
	}()
	select {
	case id := <-got:
		if id != "" {
			t.Fatalf("the stream opened with the rotated-out token still delivered event %s (seq %d) after the rotation", id, seq)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("stream neither ended nor delivered")
	}
}

// TestImportDuplicateIndependentOfChunking: the same NDJSON body must give
// the same per-line results however the network cuts it. A customer named
// on two lines was an error when both lines landed in one internal batch
// and an upsert when they did not; it is an upsert in line order now.
func TestImportDuplicateIndependentOfChunking(t *testing.T) {
	body := `{"customer_id":"d-1","device_limit":2}` + "\n" + `{"customer_id":"d-1","device_limit":3}` + "\n"
	run := func(rd io.Reader) []tenants.ImportResult {
		f, _, _ := newRealFixture(t)
		r := httptest.NewRequest("POST", "/v1/isps/alpha/customers:import", rd)
		r.Header.Set("Authorization", "Bearer "+f.tokens["alpha"])
		r.Header.Set("Content-Type", "application/x-ndjson")
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, r)
		var out []tenants.ImportResult
		dec := json.NewDecoder(w.Body)
		for dec.More() {
			var res tenants.ImportResult
			if err := dec.Decode(&res); err != nil {
				t.Fatal(err)
			}
			out = append(out, res)
		}
		return out
	}
	whole := run(strings.NewReader(body))
	trickled := run(iotest.OneByteReader(strings.NewReader(body)))
	if len(whole) != 2 || len(trickled) != 2 {
		t.Fatalf("results: %+v / %+v", whole, trickled)
	}
	if whole[1].Result != trickled[1].Result {
		t.Errorf("line 2 of the same body: %q (%s) when sent at once, %q when sent slowly", whole[1].Result, whole[1].Error, trickled[1].Result)
	}
}

// TestEventsListAfterBeyondNewest: a poller whose after is newer than the
// log (a store restored from a backup) was told nothing (next stayed at its
// after, missed false), so every event up to that sequence was skipped
// silently. It gets missed and next = the newest, as the stream's reset.
func TestEventsListAfterBeyondNewest(t *testing.T) {
	f := newFixture(t)
	for range 3 {
		f.svc.addEvent(tenants.Event{Kind: "bound", ISP: "alpha"})
	}
	var got EventList
	w := f.do("GET", "/v1/isps/alpha/events?after=99", "alpha", "")
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	f.svc.addEvent(tenants.Event{Kind: "bound", ISP: "alpha"}) // 4: never seen by this poller
	w = f.do("GET", "/v1/isps/alpha/events?after="+got.Next, "alpha", "")
	var got2 EventList
	if err := json.Unmarshal(w.Body.Bytes(), &got2); err != nil {
		t.Fatal(err)
	}
	if !got.Missed && len(got2.Items) == 0 {
		t.Errorf("after=99 over a log of 1..3: next %s, missed %v; the next poll misses event 4 silently (newest %d)", got.Next, got.Missed, got2.Newest)
	}
}

func TestCrossISPRealStore(t *testing.T) {
	f, _, st := newRealFixture(t)
	must := func(w *httptest.ResponseRecorder, code int) {
		t.Helper()
		if w.Code != code {
			t.Fatalf("%d %s, want %d", w.Code, w.Body, code)
		}
	}
	must(f.do("POST", "/v1/isps/beta/customers", "beta", `{"customer_id":"b-1","password":"pw-b-1"}`), 201)
	must(f.do("POST", "/v1/isps/alpha/customers", "alpha", `{"customer_id":"a-1","password":"pw-a-1","device_limit":3}`), 201)
	must(f.do("POST", "/v1/isps/beta/devices", "beta", `{"mac":"02:00:00:00:00:0b","customer_id":"b-1"}`), 201)
	_ = st.CommitBinding(subscribers.Binding{MAC: subscribers.MAC{2, 0, 0, 0, 0, 0xb}, Access: "acc0", ISP: "beta", Customer: "b-1", IP: netip.MustParseAddr("100.64.0.11"), Expires: time.Now().Add(time.Hour)})
	type c struct{ m, p, body string }
	for _, x := range []c{
		{"GET", "/v1/isps/alpha/customers/b-1", ""},
		{"PATCH", "/v1/isps/alpha/customers/b-1", `{"status":"suspended"}`},
		{"DELETE", "/v1/isps/alpha/customers/b-1", ""},
		{"GET", "/v1/isps/alpha/devices/02:00:00:00:00:0b", ""},
		{"DELETE", "/v1/isps/alpha/devices/02-00-00-00-00-0B", ""},
	} {
		w := f.do(x.m, x.p, "alpha", x.body, "Content-Type", "application/json")
		if w.Code != 404 {
			t.Errorf("%s %s: %d %s", x.m, x.p, w.Code, w.Body)
		}
	}
	for _, p := range []string{"/v1/isps/alpha/devices?customer_id=b-1", "/v1/isps/alpha/bindings?mac=02:00:00:00:00:0b", "/v1/isps/alpha/bindings", "/v1/isps/alpha/events", "/v1/isps/alpha/customers"} {
		w := f.do("GET", p, "alpha", "")
		if strings.Contains(w.Body.String(), "b-1") || strings.Contains(w.Body.String(), "00:0b") {
			t.Errorf("%s leaks beta: %s", p, w.Body)
		}
	}
	w := f.do("POST", "/v1/isps/alpha/devices", "alpha", `{"mac":"02:00:00:00:00:0b","customer_id":"a-1"}`)
	t.Logf("attach beta's MAC as alpha: %d %s", w.Code, w.Body)
	w = f.do("POST", "/v1/claims", "claim", `{"isp":"alpha","customer_id":"a-1","password":"pw-a-1","mac":"02:00:00:00:00:0b"}`)
	t.Logf("claim beta's MAC for alpha: %d %s", w.Code, w.Body)
	w = f.do("GET", "/v1/isps/beta/devices/02:00:00:00:00:0b", "beta", "")
	t.Logf("beta's device after: %d %s", w.Code, w.Body)
}
