package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ispmux/ispmux/api/client"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
)

// logReads is a tenants.Service that counts its reads of the event log
// (Events, n) and of one device's events (EventsOfMAC, ofMAC): `ctl
// events --mac` reads the device's by MAC, never the log.
type logReads struct {
	tenants.Service
	n, ofMAC atomic.Int64
}

func (l *logReads) Events(ctx context.Context, isp string, after uint64, limit int) (tenants.EventPage, error) {
	l.n.Add(1)
	return l.Service.Events(ctx, isp, after, limit)
}

func (l *logReads) EventsOfMAC(ctx context.Context, isp, mac string, after *uint64, limit int) (tenants.EventPage, error) {
	l.ofMAC.Add(1)
	return l.Service.EventsOfMAC(ctx, isp, mac, after, limit)
}

// macRig is a rig over a real store whose event log reads are counted.
func macRig(t *testing.T) (*rig, *logReads) {
	t.Helper()
	reads := &logReads{}
	r := newWrappedRig(t, nil, func(svc tenants.Service) tenants.Service {
		reads.Service = svc
		return reads
	})
	return r, reads
}

// addEvents stores evs in one write.
func (r *rig) addEvents(evs ...subscribers.Event) {
	r.t.Helper()
	if _, err := r.store.ApplyTenant(subscribers.TenantWrite{Events: evs}); err != nil {
		r.t.Fatal(err)
	}
}

// otherEvents are n events of other devices, of alpha and beta in turn.
func otherEvents(n int) []subscribers.Event {
	evs := make([]subscribers.Event, n)
	for i := range evs {
		evs[i] = subscribers.Event{Kind: subscribers.EventRenewed, MAC: subscribers.MAC{2, 0, 0, 1, byte(i >> 8), byte(i)},
			ISP: []string{"alpha", "beta"}[i%2], Reason: "other"}
	}
	return evs
}

// eventList parses the --json of ctl events.
func eventList(t *testing.T, out string) client.EventList {
	t.Helper()
	var l client.EventList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return l
}

// reasons are the events' reasons, in order.
func reasons(evs []tenants.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Reason)
	}
	return out
}

// ctl events --mac read the whole log and kept the device's events (a
// box's 100k-400k events, for its newest N too); it reads the device's
// by MAC (the store's index): the newest N, those after AFTER-SEQ, paged
// as before, with the same output and notices, and no read of the log.
func TestCtlEventsMACByIndex(t *testing.T) {
	r, reads := macRig(t)
	hw := subscribers.MAC{2, 0, 0, 0, 0, 0x43}
	dev := func(reason, isp string) subscribers.Event {
		return subscribers.Event{Kind: subscribers.EventBound, MAC: hw, ISP: isp, Reason: reason}
	}
	// Seq 1..3, 5004, 5005 (after the store's base, b) are the device's;
	// 6505 events in all.
	b := r.store.EventBase()
	n := func(i uint64) string { return fmt.Sprint(b + i) }
	r.addEvents(append([]subscribers.Event{dev("d-0", "alpha"), dev("d-1", "beta"), dev("d-2", "")}, otherEvents(5000)...)...)
	r.addEvents(append([]subscribers.Event{dev("d-3", "alpha"), dev("d-4", "alpha")}, otherEvents(1500)...)...)
	const mac = "02-00-00-00-00-43" // as given: the hints repeat it
	sock := func(args ...string) []string { return append([]string{"ctl", "--socket", r.sock, "events"}, args...) }
	again := "`ispmux ctl --socket " + r.sock + " events --mac " + mac

	out, errOut := r.ok("", sock("--mac", mac, "--json")...)
	l := eventList(t, out)
	if got := reasons(l.Items); !slices.Equal(got, []string{"d-0", "d-1", "d-2", "d-3", "d-4"}) || errOut != "" ||
		l.Next != n(6505) || l.Oldest != b+1 || l.Newest != b+6505 {
		t.Errorf("events --mac: %v next %s, log %d..%d; want d-0..d-4, next b+6505, log b+1..b+6505 (b %d)\n%s", got, l.Next, l.Oldest, l.Newest, b, errOut)
	}
	out, _ = r.ok("", sock("--mac", mac)...)
	if rows := column(t, out); len(rows) != 5 || rows[0]["SEQ"] != n(1) || rows[4]["SEQ"] != n(5005) || rows[4]["MAC"] != "02:00:00:00:00:43" {
		t.Errorf("events --mac table:\n%s", out)
	}

	// --limit: the device's newest N (one read), and how to see the
	// older ones.
	reads.ofMAC.Store(0)
	out, errOut = r.ok("", sock("--mac", mac, "--limit", "2", "--json")...)
	if n := reads.ofMAC.Load(); n != 1 {
		t.Errorf("events --mac --limit 2: %d reads of the device's events, want 1", n)
	}
	want := "ispmux: the newest 2 events (seq " + n(5004) + ".." + n(5005) + "); the log holds seq " + n(1) + ".." + n(6505) + ": " + again + " --limit 2 N` shows those after seq N (0: from the oldest)\n"
	if got := reasons(eventList(t, out).Items); !slices.Equal(got, []string{"d-3", "d-4"}) || errOut != want {
		t.Errorf("events --mac --limit 2: %v\n%s want\n%s", got, errOut, want)
	}

	// AFTER-SEQ: the device's first after it, then the next ones as each
	// hint names them, to the last (no hint).
	_, errOut = r.ok("", sock("--mac", mac, "--limit", "2", "0")...)
	for _, page := range [][]string{{"d-2", "d-3"}, {"d-4"}} {
		if !strings.Contains(errOut, "` shows the next ones") {
			t.Fatalf("no next page named: %q", errOut)
		}
		args := hintArgs(t, errOut)
		out, errOut = r.ok("", append(args, "--json")...)
		if got := reasons(eventList(t, out).Items); !slices.Equal(got, page) {
			t.Errorf("%q: %v, want %v", args, got, page)
		}
	}
	if errOut != "" {
		t.Errorf("the last page: notice %q", errOut)
	}
	_, errOut = r.ok("", sock("--mac", mac, "--limit", "2", "0")...)
	if want := "ispmux: events seq " + n(1) + ".." + n(2) + "; the log holds up to seq " + n(6505) + ": " + again + " --limit 2 " + n(2) + "` shows the next ones\n"; errOut != want {
		t.Errorf("events --mac --limit 2 0: notice\n%s want\n%s", errOut, want)
	}
	out, errOut = r.ok("", sock("--mac", mac, n(3), "--json")...)
	if l := eventList(t, out); !slices.Equal(reasons(l.Items), []string{"d-3", "d-4"}) || l.Next != n(6505) || errOut != "" {
		t.Errorf("events --mac 3: %v next %s\n%s", reasons(l.Items), l.Next, errOut)
	}

	// None: the notices as before.
	out, errOut = r.ok("", sock("--mac", "02:00:00:00:00:99")...)
	if rows := column(t, out); len(rows) != 0 || errOut != "ispmux: no event in the log (seq "+n(1)+".."+n(6505)+") is of device 02:00:00:00:00:99\n" {
		t.Errorf("events --mac of no event:\n%s%s", out, errOut)
	}
	if _, errOut = r.ok("", sock("--mac", "02:00:00:00:00:99", "0")...); errOut != "ispmux: no event after seq 0 is of device 02:00:00:00:00:99\n" {
		t.Errorf("events --mac of no event 0: %q", errOut)
	}
	// Past the newest, and past the range of EventsOfMAC's after (int64).
	for _, after := range []string{n(99999), "18446744073709551615"} {
		if _, errOut = r.ok("", sock("--mac", mac, after)...); !strings.Contains(errOut, "seq "+after+" is past the newest event, seq "+n(6505)) {
			t.Errorf("events --mac %s: %q", after, errOut)
		}
	}
	if n := reads.n.Load(); n != 0 {
		t.Errorf("ctl events --mac read the event log %d times", n)
	}
}

// With --isp (an ISP's token) the device's events are that ISP's only,
// numbered in its own sequence, AFTER-SEQ one of them: as the rest of ctl
// events.
func TestCtlEventsMACOfISP(t *testing.T) {
	r, reads := macRig(t)
	hw := subscribers.MAC{2, 0, 0, 0, 0, 0x43}
	dev := func(reason, isp string) subscribers.Event {
		return subscribers.Event{Kind: subscribers.EventBound, MAC: hw, ISP: isp, Reason: reason}
	}
	r.addEvents(append([]subscribers.Event{dev("d-0", "alpha"), dev("d-1", "beta"), dev("d-2", "")}, otherEvents(3000)...)...)
	r.addEvents(append([]subscribers.Event{dev("d-3", "alpha"), dev("d-4", "beta"), dev("d-5", "alpha")}, otherEvents(10)...)...)
	const mac = "02:00:00:00:00:43"

	// The operator's view names each event's number in its ISP's sequence.
	out, _ := r.ok("", "ctl", "--socket", r.sock, "events", "--mac", mac, "--json")
	var alphaSeqs []uint64
	for _, e := range eventList(t, out).Items {
		if e.ISP == "alpha" {
			alphaSeqs = append(alphaSeqs, e.ISPSeq)
		}
	}
	if len(alphaSeqs) != 3 || alphaSeqs[1] == 0 {
		t.Fatalf("alpha's events of %s: isp_seq %v", mac, alphaSeqs)
	}
	head, _ := r.ok("", r.api("alpha", "events", "--isp", "alpha", "--limit", "1", "--json")...)
	alphaNewest := eventList(t, head).Newest
	reads.n.Store(0)

	alpha := func(args ...string) client.EventList {
		t.Helper()
		out, _ := r.ok("", r.api("alpha", append([]string{"events", "--isp", "alpha", "--mac", mac, "--json"}, args...)...)...)
		return eventList(t, out)
	}
	l := alpha()
	var seqs []uint64
	for _, e := range l.Items {
		seqs = append(seqs, e.Seq)
	}
	if got := reasons(l.Items); !slices.Equal(got, []string{"d-0", "d-3", "d-5"}) || !slices.Equal(seqs, alphaSeqs) || l.Newest != alphaNewest {
		t.Errorf("alpha's events of %s: %v seq %v, log ..%d; want d-0 d-3 d-5 seq %v, log ..%d", mac, got, seqs, l.Newest, alphaSeqs, alphaNewest)
	}
	after := fmt.Sprint(alphaSeqs[0])
	if l = alpha(after); !slices.Equal(reasons(l.Items), []string{"d-3", "d-5"}) {
		t.Errorf("alpha's events of %s after alpha's seq %s: %v", mac, after, reasons(l.Items))
	}
	if l = alpha(fmt.Sprint(alphaSeqs[1])); !slices.Equal(reasons(l.Items), []string{"d-5"}) {
		t.Errorf("alpha's events of %s after alpha's seq %d: %v", mac, alphaSeqs[1], reasons(l.Items))
	}
	_, errOut := r.ok("", r.api("alpha", "events", "--isp", "alpha", "--mac", mac, "--limit", "1")...)
	want := fmt.Sprintf("ispmux: the newest 1 events (seq %d..%d); the log holds seq %d..%d: `ispmux ctl --api %s events --isp alpha --mac %s --limit 1 N` shows those after seq N (0: from the oldest)\n",
		alphaSeqs[2], alphaSeqs[2], r.store.EventBase()+1, alphaNewest, r.apiURL, mac)
	if errOut != want {
		t.Errorf("alpha's --limit 1: notice\n%s want\n%s", errOut, want)
	}
	// Without --isp, an ISP's token is refused, with the hint.
	_, _, err := runCmd(t, "", r.api("alpha", "events", "--mac", mac)...)
	var b strings.Builder
	report(&b, err)
	if err == nil || !strings.Contains(b.String(), "add --isp alpha") {
		t.Errorf("alpha's events --mac without --isp: %v\n%s", err, b.String())
	}
	if n := reads.n.Load(); n != 0 {
		t.Errorf("ctl events --isp --mac read the event log %d times", n)
	}
}

// --request-id with --mac: the device's events (every one the log holds,
// read by MAC) of that request only; --limit the newest N of them, or
// the first N after AFTER-SEQ.
func TestCtlEventsMACAndRequestID(t *testing.T) {
	r, reads := macRig(t)
	hw := subscribers.MAC{2, 0, 0, 0, 0, 0x43}
	dev := func(reason, id string) subscribers.Event {
		return subscribers.Event{Kind: subscribers.EventBlocked, MAC: hw, Reason: reason, Actor: "operator", RequestID: id}
	}
	var evs []subscribers.Event
	for i := range 1500 { // more than a page of the device's
		evs = append(evs, dev(fmt.Sprintf("d-%d", i), ""))
	}
	evs[3].RequestID, evs[1200].RequestID, evs[1400].RequestID = "rq-1", "rq-1", "rq-1"
	r.addEvents(append(evs, otherEvents(2000)...)...)
	other := subscribers.Event{Kind: subscribers.EventBlocked, MAC: subscribers.MAC{2, 0, 0, 0, 0, 0x44}, RequestID: "rq-1", Reason: "other device"}
	r.addEvents(other, dev("d-last", ""))
	sock := func(args ...string) []string {
		return append([]string{"ctl", "--socket", r.sock, "events", "--mac", "02:00:00:00:00:43", "--request-id", "rq-1"}, args...)
	}
	b := r.store.EventBase() // numbers below are after it
	n := func(i uint64) string { return fmt.Sprint(b + i) }

	out, errOut := r.ok("", sock("--json")...)
	if got := reasons(eventList(t, out).Items); !slices.Equal(got, []string{"d-3", "d-1200", "d-1400"}) || errOut != "" {
		t.Errorf("--mac --request-id: %v\n%s", got, errOut)
	}
	out, errOut = r.ok("", sock("--limit", "2", "--json")...)
	if got := reasons(eventList(t, out).Items); !slices.Equal(got, []string{"d-1200", "d-1400"}) ||
		!strings.Contains(errOut, "the newest 2 events (seq "+n(1201)+".."+n(1401)+"); the log holds seq "+n(1)+".."+n(3502)+": `") {
		t.Errorf("--mac --request-id --limit 2: %v\n%s", got, errOut)
	}
	out, errOut = r.ok("", sock("--limit", "2", "0", "--json")...)
	if got := reasons(eventList(t, out).Items); !slices.Equal(got, []string{"d-3", "d-1200"}) ||
		!strings.Contains(errOut, "events seq "+n(4)+".."+n(1201)+"; the log holds up to seq "+n(3502)+": `") {
		t.Errorf("--mac --request-id --limit 2 0: %v\n%s", got, errOut)
	}
	out, errOut = r.ok("", sock(n(1201), "--json")...)
	if l := eventList(t, out); !slices.Equal(reasons(l.Items), []string{"d-1400"}) || l.Next != n(3502) || errOut != "" {
		t.Errorf("--mac --request-id 1201: %v next %s\n%s", reasons(l.Items), l.Next, errOut)
	}
	if _, errOut = r.ok("", sock(n(1401))...); !strings.Contains(errOut, "no event after seq "+n(1401)+" has request id rq-1") {
		t.Errorf("--mac --request-id 1401: %q", errOut)
	}
	if n := reads.n.Load(); n != 0 {
		t.Errorf("ctl events --mac --request-id read the event log %d times", n)
	}
}

// --limit 1000, a page's most, with --mac: one more cannot be asked for
// to learn whether older events are left out.
func TestCtlEventsMACLimitMax(t *testing.T) {
	r, reads := macRig(t)
	ofMAC := func(last byte, n int) (evs []subscribers.Event) {
		for range n {
			evs = append(evs, subscribers.Event{Kind: subscribers.EventRenewed, MAC: subscribers.MAC{2, 0, 0, 0, 0, last}})
		}
		return evs
	}
	r.addEvents(append(ofMAC(0x43, 1001), ofMAC(0x44, 1000)...)...)
	b := r.store.EventBase() // the numbers below are after it
	out, errOut := r.ok("", "ctl", "--socket", r.sock, "events", "--mac", "02:00:00:00:00:43", "--limit", "1000", "--json")
	if s := seqs(t, out); len(s) != 1000 || s[0] != b+2 || !strings.Contains(errOut, fmt.Sprintf("the newest 1000 events (seq %d..%d); the log holds seq %d..%d", b+2, b+1001, b+1, b+2001)) {
		t.Errorf("1001 events, --limit 1000: %d from %v\n%s", len(s), s[:1], errOut)
	}
	out, errOut = r.ok("", "ctl", "--socket", r.sock, "events", "--mac", "02:00:00:00:00:44", "--limit", "1000", "--json")
	if s := seqs(t, out); len(s) != 1000 || errOut != "" {
		t.Errorf("1000 events, --limit 1000: %d\n%s", len(s), errOut)
	}
	if n := reads.n.Load(); n != 0 {
		t.Errorf("ctl events --mac --limit 1000 read the event log %d times", n)
	}
}

// --follow with --mac: the stream, the device's events only.
func TestCtlEventsMACFollow(t *testing.T) {
	r, _ := macRig(t)
	hw := subscribers.MAC{2, 0, 0, 0, 0, 0x43}
	r.addEvents(append([]subscribers.Event{{Kind: subscribers.EventBound, MAC: hw, Reason: "d-0"}}, otherEvents(3)...)...)
	ctx, cancel := context.WithCancel(context.Background())
	var fo, fe lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"ctl", "--socket", r.sock, "events", "--follow", "--mac", "02:00:00:00:00:43", "--json", "0"},
			strings.NewReader(""), &fo, &fe)
	}()
	r.addEvents(append(otherEvents(3), subscribers.Event{Kind: subscribers.EventBound, MAC: hw, Reason: "d-1"})...)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(fo.String(), "d-1") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("follow: %v\n%s", err, fe.String())
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(fo.String()), "\n") {
		var e tenants.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		got = append(got, e.Reason)
	}
	if !slices.Equal(got, []string{"d-0", "d-1"}) {
		t.Errorf("events --follow --mac: %v, want d-0 d-1", got)
	}
}
