package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"

	"github.com/ispmux/ispmux/api"
	"github.com/ispmux/ispmux/api/client"
	"github.com/ispmux/ispmux/internal/shellquote"
	"github.com/ispmux/ispmux/tenants"
)

// newestEvents is how many events `ctl events` shows without AFTER-SEQ.
const defaultNewest = 100

// eventBounds is the range of sequences the log holds.
type eventBounds struct{ oldest, newest uint64 }

// newestEvents returns (oldest first) the newest n events of isp ("" =
// all) that keep accepts (nil: all). The API reads forward only, so it
// reads the last window events of the log (window 0: n), and widens the
// window tenfold while an ISP's (or keep's) share of it is short of n and
// older events are kept.
func newestEvents(e *ctlEnv, c *client.Client, isp string, n int, window uint64, keep func(tenants.Event) bool) ([]tenants.Event, eventBounds, error) {
	head, err := c.Events(e.ctx, isp, 0, 1)
	if err != nil {
		return nil, eventBounds{}, err
	}
	b := eventBounds{head.Oldest, head.Newest}
	if window == 0 {
		window = uint64(n)
	}
	// skipped: numbers inside the window that were never events (a
	// store restored from a backup copy jumps 2^32 and more): they do
	// not count in the window, which is of events.
	var skipped uint64
	for ; ; window *= 10 {
	again:
		var after uint64
		if b.newest > window+skipped {
			after = b.newest - window - skipped
		}
		var out []tenants.Event
		first, gap := true, false
		_, err := readEvents(e, c, isp, "", after, b.newest, func(l client.EventList) bool {
			if isp == "" && first && after >= b.oldest && len(l.Items) > 0 && l.Items[0].Seq > after+1 {
				// Every event is listed: the numbers before the
				// first one were skipped. Read again from as
				// many events back.
				skipped += l.Items[0].Seq - after - 1
				gap = true
				return false
			}
			first = false
			for _, ev := range l.Items {
				if keep == nil || keep(ev) {
					out = append(out, ev)
				}
			}
			if len(out) > n {
				out = append(out[:0], out[len(out)-n:]...)
			}
			return len(l.Items) > 0 || isp != ""
		})
		if err != nil {
			return nil, b, err
		}
		if gap {
			goto again // the same window, past the skipped numbers
		}
		if len(out) >= n || after == 0 || after < b.oldest || window > 1<<40 {
			return out, b, nil
		}
	}
}

// wholeLog is a window of more events than a log holds (its retention is
// subscribers.DefaultEventRetention, 100,000, unless configured): read
// from the oldest.
const wholeLog = 1 << 40

// newest returns (oldest first) the newest n events of isp that keep
// accepts (nil: all), of the device mac only unless mac is "", the log's
// bounds, and whether older ones are left out. Without keep that is
// whether the log holds older events; with it, the whole log is read once
// from the oldest (the events of one request can be anywhere in it, and
// are few: the tenfold windows of newestEvents would read it about
// twice), and more says more than n matched. A device's are read by MAC
// instead (newestOfMAC).
func (e *ctlEnv) newest(c *client.Client, isp, mac string, n int, keep func(tenants.Event) bool) ([]tenants.Event, eventBounds, bool, error) {
	if mac != "" {
		return newestOfMAC(e, c, isp, mac, n, keep)
	}
	if keep == nil {
		evs, b, err := newestEvents(e, c, isp, n, 0, nil)
		return evs, b, err == nil && len(evs) > 0 && evs[0].Seq > b.oldest, err
	}
	evs, b, err := newestEvents(e, c, isp, n+1, wholeLog, keep)
	if len(evs) > n {
		return evs[1:], b, true, err
	}
	return evs, b, false, err
}

// toFirstNewest is the end of readEvents that is the log's newest as its
// first page found it.
const toFirstNewest = math.MaxUint64

// readEvents reads the events of isp ("" = all) after seq after, of the
// device mac only unless mac is "" (eventPage), a page of tenants.MaxLimit
// at a time, following each page's Next, and gives each page to page
// until page returns false, a Next does not move on (or is not a
// sequence), or it reaches end: a sequence, or toFirstNewest (a log
// appended to faster than it is read has no newest to reach). It returns
// the Next of the last page read.
func readEvents(e *ctlEnv, c *client.Client, isp, mac string, after, end uint64, page func(client.EventList) bool) (string, error) {
	for pos := after; ; {
		l, err := eventPage(e, c, isp, mac, pos, tenants.MaxLimit)
		if err != nil {
			return "", err
		}
		if pos == after && end == toFirstNewest {
			end = l.Newest
		}
		if !page(l) {
			return l.Next, nil
		}
		next, err := strconv.ParseUint(l.Next, 10, 64)
		if err != nil || next <= pos || next >= end {
			return l.Next, nil
		}
		pos = next
	}
}

// eventPage is up to limit events of isp ("" = all) after seq after: the
// log's, or (mac not "") the device mac's, which the API reads from the
// store's index of events by MAC (however far back in the log they are,
// the other devices' events are not read).
func eventPage(e *ctlEnv, c *client.Client, isp, mac string, after uint64, limit int) (client.EventList, error) {
	if mac == "" {
		return c.Events(e.ctx, isp, after, limit)
	}
	// EventsOfMAC's after is signed (below 0: the newest). A sequence
	// past its range is past any log's newest, as its largest is.
	return c.EventsOfMAC(e.ctx, isp, mac, int64(min(after, math.MaxInt64)), limit)
}

// newestOfMAC is newest for the device mac's events: without keep, one
// read of its newest n+1 (the one more says older ones are left out);
// with keep, every event of the device the log holds, read by MAC a page
// at a time from its oldest (a device's are few beside the log's), of
// which the newest n that keep accepts. The bounds are those of the last
// page read.
func newestOfMAC(e *ctlEnv, c *client.Client, isp, mac string, n int, keep func(tenants.Event) bool) ([]tenants.Event, eventBounds, bool, error) {
	if keep == nil {
		ask := min(n+1, tenants.MaxLimit)
		l, err := c.EventsOfMAC(e.ctx, isp, mac, -1, ask)
		if err != nil {
			return nil, eventBounds{}, false, err
		}
		b, evs := eventBounds{l.Oldest, l.Newest}, l.Items
		switch {
		case len(evs) > n:
			return evs[len(evs)-n:], b, true, nil
		case len(evs) < ask:
			return evs, b, false, nil
		}
		// n is a page's most, which one more would pass: older ones are
		// left out if the device's oldest is older than these.
		first, err := c.EventsOfMAC(e.ctx, isp, mac, 0, 1)
		return evs, b, err == nil && len(first.Items) > 0 && first.Items[0].Seq < evs[0].Seq, err
	}
	var out []tenants.Event
	var b eventBounds
	_, err := readEvents(e, c, isp, mac, 0, toFirstNewest, func(l client.EventList) bool {
		b = eventBounds{l.Oldest, l.Newest}
		for _, ev := range l.Items {
			if keep(ev) {
				out = append(out, ev)
			}
		}
		if len(out) > n+1 {
			out = append(out[:0], out[len(out)-n-1:]...)
		}
		return true
	})
	if len(out) > n {
		return out[1:], b, true, err
	}
	return out, b, false, err
}

// matchingAfter reads the events of isp after seq after (of the device
// mac only unless mac is ""), up to the log's newest as its first read
// found it, until it has limit that keep accepts: one list, whose Next is
// the sequence to read after next time.
func matchingAfter(e *ctlEnv, c *client.Client, isp, mac string, after uint64, limit int, keep func(tenants.Event) bool) (client.EventList, error) {
	out := client.EventList{Items: []tenants.Event{}}
	full := ""
	next, err := readEvents(e, c, isp, mac, after, toFirstNewest, func(l client.EventList) bool {
		out.Missed = out.Missed || l.Missed
		out.Oldest, out.Newest = l.Oldest, l.Newest
		for _, ev := range l.Items {
			if !keep(ev) {
				continue
			}
			out.Items = append(out.Items, ev)
			if len(out.Items) == limit {
				full = strconv.FormatUint(ev.Seq, 10)
				return false
			}
		}
		return true
	})
	out.Next = cmp.Or(full, next)
	return out, err
}

// eventFilter is the filter of the events flags: keep, that of
// --request-id (nil without it), and mac, --mac's device as events name
// it ("" without it). The pages ask the API for the device's events
// (read by MAC), keep applied to them here; the stream has every event,
// filtered here by both (withMAC).
func (e *ctlEnv) eventFilter() (keep func(tenants.Event) bool, mac string, err error) {
	if e.set["request-id"] {
		id := e.o.requestID
		if !api.ValidRequestID(id) {
			return nil, "", e.h.usage("--request-id %q: a request id is 1..64 characters of A-Z a-z 0-9 . _ : -", id)
		}
		keep = func(ev tenants.Event) bool { return ev.RequestID == id }
	}
	if e.set["mac"] {
		if err := e.checkMAC("--mac", e.o.mac); err != nil {
			return nil, "", err
		}
		hw, _ := net.ParseMAC(e.o.mac)
		mac = hw.String() // events name MACs lower case, colons
	}
	return keep, mac, nil
}

// withMAC is keep (nil: every event) of the device mac only ("": of any
// device).
func withMAC(keep func(tenants.Event) bool, mac string) func(tenants.Event) bool {
	if mac == "" {
		return keep
	}
	return func(ev tenants.Event) bool { return ev.MAC == mac && (keep == nil || keep(ev)) }
}

// noneOfRequest says no event where matches the filters asked for, and
// why that may be.
func (e *ctlEnv) noneOfRequest(where string) {
	if !e.set["request-id"] {
		e.notice("no event %s is of device %s", where, e.o.mac)
		return
	}
	e.notice("no event %s has request id %s: a request that changed nothing records none, and an attach refusal over its token's budget is only counted (in a suppressed event of that token)",
		where, e.o.requestID)
}

// eventsAgain is the `ctl events` command line of the hints: the same
// appliance, filters and --limit, after seq after (or "N"). The events
// flags follow the command word: before it they are not ctl's.
func (e *ctlEnv) eventsAgain(after string) string {
	words := []string{"events"}
	if e.o.isp != "" {
		words = append(words, "--isp", e.o.isp)
	}
	if e.set["request-id"] {
		words = append(words, "--request-id", e.o.requestID)
	}
	if e.set["mac"] {
		words = append(words, "--mac", e.o.mac)
	}
	if e.o.limit > 0 {
		words = append(words, "--limit", strconv.Itoa(e.o.limit))
	}
	return e.again(append(words, after)...)
}

func ctlEvents(e *ctlEnv, args []string) error {
	if err := e.checkLimit(); err != nil {
		return err
	}
	var after uint64
	hasAfter := len(args) == 1
	if hasAfter {
		var err error
		if after, err = strconv.ParseUint(args[0], 10, 64); err != nil {
			return e.h.usage("bad sequence number %q", args[0])
		}
	}
	if e.o.follow && e.set["limit"] {
		return e.h.usage("--limit and --follow: a stream has no limit")
	}
	keep, mac, err := e.eventFilter()
	if err != nil {
		return err
	}
	filtered := keep != nil || mac != "" // the notices' "none of these"
	c, err := e.client()
	if err != nil {
		return err
	}
	isp := e.o.isp
	if e.o.follow {
		from := int64(-1)
		if hasAfter {
			from = int64(after)
		}
		return e.followEvents(c, isp, from, withMAC(keep, mac))
	}
	if !hasAfter {
		n := defaultNewest
		if e.o.limit > 0 {
			n = e.o.limit
		}
		evs, b, more, err := e.newest(c, isp, mac, n, keep)
		if err != nil {
			return err
		}
		if e.g.json {
			err = e.printJSON(client.EventList{Items: nonNil(evs), Next: strconv.FormatUint(b.newest, 10), Oldest: b.oldest, Newest: b.newest})
		} else {
			err = eventColumns.write(e.stdout, evs)
		}
		if err != nil {
			return err
		}
		switch {
		case len(evs) == 0 && filtered:
			e.noneOfRequest(fmt.Sprintf("in the log (seq %d..%d)", b.oldest, b.newest))
		case more:
			e.notice("the newest %d events (seq %d..%d); the log holds seq %d..%d: `%s` shows those after seq N (0: from the oldest)",
				len(evs), evs[0].Seq, evs[len(evs)-1].Seq, b.oldest, b.newest, e.eventsAgain("N"))
		}
		return nil
	}
	limit := tenants.MaxLimit
	if e.o.limit > 0 {
		limit = e.o.limit
	}
	var l client.EventList
	if keep != nil {
		l, err = matchingAfter(e, c, isp, mac, after, limit, keep)
	} else {
		l, err = eventPage(e, c, isp, mac, after, limit)
	}
	if err != nil {
		return err
	}
	l.Items = nonNil(l.Items)
	if e.g.json {
		err = e.printJSON(l)
	} else {
		err = eventColumns.write(e.stdout, l.Items)
	}
	if err != nil {
		return err
	}
	switch {
	case l.Missed && uint64(after) > l.Newest:
		e.notice("seq %d is past the newest event, seq %d (a wrong number, or a store restored from an older backup)", after, l.Newest)
	case l.Missed:
		e.notice("events after seq %d were trimmed before they could be read: the log starts at seq %d", after, l.Oldest)
	}
	if len(l.Items) == 0 && filtered {
		e.noneOfRequest(fmt.Sprintf("after seq %d", after))
	}
	next, _ := strconv.ParseUint(l.Next, 10, 64)
	if next < l.Newest && len(l.Items) > 0 {
		e.notice("events seq %d..%d; the log holds up to seq %d: `%s` shows the next ones",
			l.Items[0].Seq, l.Items[len(l.Items)-1].Seq, l.Newest, e.eventsAgain(strconv.FormatUint(next, 10)))
	}
	return nil
}

// followEvents prints the stream's events keep accepts (nil: all) until
// the context ends (Ctrl-C).
func (e *ctlEnv) followEvents(c *client.Client, isp string, after int64, keep func(tenants.Event) bool) error {
	// The first connection is tried once, as every other command's: a
	// socket that is not there, or an ISP or token refused, is an error
	// now, not a silent retry for ever (Follow retries only cuts).
	if _, err := c.Events(e.ctx, isp, 0, 1); err != nil {
		return err
	}
	enc := json.NewEncoder(e.stdout)
	if !e.g.json {
		if _, err := fmt.Fprintln(e.stdout, eventLine(eventHeader)); err != nil {
			return err
		}
	}
	return c.Follow(e.ctx, isp, after, func(m client.StreamMessage) error {
		if m.Reset != nil {
			if e.g.json {
				return enc.Encode(struct {
					Reset *client.StreamReset `json:"reset"`
				}{m.Reset})
			}
			if m.Reset.After > m.Reset.Newest {
				e.notice("seq %d is past the newest event, seq %d (a wrong number, or a store restored from an older backup): going on from there",
					m.Reset.After, m.Reset.Newest)
				return nil
			}
			e.notice("events after seq %d were trimmed before they could be read; the log holds seq %d..%d: going on from there",
				m.Reset.After, m.Reset.Oldest, m.Reset.Newest)
			return nil
		}
		if keep != nil && !keep(m.Event) {
			return nil
		}
		if e.g.json {
			return enc.Encode(m.Event)
		}
		_, err := fmt.Fprintln(e.stdout, eventLine(eventCells(m.Event)))
		return err
	})
}

// withISPHint is run with a hint on the refusal an ISP's token gets
// without --isp (the command then asks for every ISP's, the operator's
// endpoint): add --isp with the token's ISP (ispHint).
func withISPHint(run func(*ctlEnv, []string) error) func(*ctlEnv, []string) error {
	return func(e *ctlEnv, args []string) error {
		err := run(e, args)
		if e.o.isp != "" {
			return err
		}
		return e.ispHint(err, func(isp string) string { return "add --isp " + shellquote.Join([]string{isp}) })
	}
}

// withISPArgHint is withISPHint for a command whose ISP is its optional
// argument (bindings, devices): the hint is the command with the ISP (and
// the --customer it was given).
func withISPArgHint(run func(*ctlEnv, []string) error) func(*ctlEnv, []string) error {
	return func(e *ctlEnv, args []string) error {
		err := run(e, args)
		if len(args) > 0 {
			return err
		}
		return e.ispHint(err, func(isp string) string {
			words := []string{e.cmd.name, isp}
			if e.o.customer != "" { // devices --customer: the same customer's
				words = append(words, "--customer", e.o.customer)
			}
			return "name it (`" + e.again(words...) + "`)"
		})
	}
}

// ispHint is err with a hint when it is the 403 an ISP's token gets from
// an operator's endpoint of every ISP: add(the token's ISP), which GET
// /v1/isps names (an ISP's token lists its own ISP only), or add("ISP")
// when that does not name one. A token that may not list ISPs (a claim
// token) gets no hint: naming the ISP would not help it.
func (e *ctlEnv) ispHint(err error, add func(isp string) string) error {
	var p *client.Error
	if !errors.As(err, &p) || p.Status != http.StatusForbidden {
		return err
	}
	c, cerr := e.client()
	if cerr != nil {
		return err
	}
	isps, lerr := c.ISPs(e.ctx)
	switch {
	case lerr != nil:
		return err
	case len(isps) == 1:
		return hinted{err, "an ISP's token sees its own ISP only: " + add(isps[0].Name)}
	}
	return hinted{err, "an ISP's token sees its own ISP only: " + add("ISP")}
}
