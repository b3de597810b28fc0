package main

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/ispmux/ispmux/api/client"
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
// older events are kept, up to maxWindow (0: no bound).
func newestEvents(e *ctlEnv, c *client.Client, isp string, n int, window, maxWindow uint64, keep func(tenants.Event) bool) ([]tenants.Event, eventBounds, error) {
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
		gap := false
		for pos := after; ; {
			l, err := c.Events(e.ctx, isp, pos, tenants.MaxLimit)
			if err != nil {
				return nil, b, err
			}
			if isp == "" && pos == after && after >= b.oldest && len(l.Items) > 0 && l.Items[0].Seq > after+1 {
				// Every event is listed: the numbers before the
				// first one were skipped. Read again from as
				// many events back.
				skipped += l.Items[0].Seq - after - 1
				gap = true
				break
			}
			for _, ev := range l.Items {
				if keep == nil || keep(ev) {
					out = append(out, ev)
				}
			}
			if len(out) > n {
				out = append(out[:0], out[len(out)-n:]...)
			}
			next, err := strconv.ParseUint(l.Next, 10, 64)
			if err != nil || next <= pos || next >= b.newest || len(l.Items) == 0 && isp == "" {
				break
			}
			pos = next
		}
		if gap {
			goto again // the same window, past the skipped numbers
		}
		if len(out) >= n || after == 0 || after < b.oldest || window > 1<<40 || maxWindow > 0 && window*10 > maxWindow {
			return out, b, nil
		}
	}
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
	c, err := e.client()
	if err != nil {
		return err
	}
	isp := e.o.isp
	again := e.again()
	if isp != "" {
		again += " --isp " + isp
	}
	if e.o.follow {
		from := int64(-1)
		if hasAfter {
			from = int64(after)
		}
		return e.followEvents(c, isp, from)
	}
	if !hasAfter {
		n := defaultNewest
		if e.o.limit > 0 {
			n = e.o.limit
		}
		evs, b, err := newestEvents(e, c, isp, n, 0, 0, nil)
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
		if len(evs) > 0 && evs[0].Seq > b.oldest {
			e.notice("the newest %d events (seq %d..%d); the log holds seq %d..%d: `%s events N` shows those after seq N (0: from the oldest)",
				len(evs), evs[0].Seq, evs[len(evs)-1].Seq, b.oldest, b.newest, again)
		}
		return nil
	}
	limit := tenants.MaxLimit
	if e.o.limit > 0 {
		limit = e.o.limit
	}
	l, err := c.Events(e.ctx, isp, after, limit)
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
	if l.Missed {
		e.notice("events after seq %d were trimmed before they could be read: the log starts at seq %d", after, l.Oldest)
	}
	next, _ := strconv.ParseUint(l.Next, 10, 64)
	if next < l.Newest && len(l.Items) > 0 {
		e.notice("events seq %d..%d; the log holds up to seq %d: `%s events %d` shows the next ones",
			l.Items[0].Seq, l.Items[len(l.Items)-1].Seq, l.Newest, again, next)
	}
	return nil
}

// followEvents prints the stream until the context ends (Ctrl-C).
func (e *ctlEnv) followEvents(c *client.Client, isp string, after int64) error {
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
			e.notice("events after seq %d were trimmed before they could be read; the log holds seq %d..%d: going on from there",
				m.Reset.After, m.Reset.Oldest, m.Reset.Newest)
			return nil
		}
		if e.g.json {
			return enc.Encode(m.Event)
		}
		_, err := fmt.Fprintln(e.stdout, eventLine(eventCells(m.Event)))
		return err
	})
}
