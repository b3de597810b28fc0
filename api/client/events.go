package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ispmux/ispmux/tenants"
)

// The event log over the API: its pages (Events, EventsOfMAC) and the
// stream (Follow), which resumes after a dropped connection.

// EventList is the answer of Events (api.EventList).
type EventList struct {
	Items  []tenants.Event `json:"items"`
	Next   string          `json:"next"`
	Oldest uint64          `json:"oldest"`
	Newest uint64          `json:"newest"`
	Missed bool            `json:"missed,omitempty"`
}

// Events returns up to limit events after seq after (isp "" = all,
// operator); limit 0 is the server's default.
func (c *Client) Events(ctx context.Context, isp string, after uint64, limit int) (EventList, error) {
	return c.eventList(ctx, isp, url.Values{"after": {strconv.FormatUint(after, 10)}}, limit)
}

// EventsOfMAC returns up to limit events of the device mac (isp "" = of
// every ISP, operator; an ISP's own, in its own numbering, otherwise):
// GET …/events?mac=. after >= 0: those after that sequence; after < 0:
// the newest limit. limit 0 is the server's default.
func (c *Client) EventsOfMAC(ctx context.Context, isp, mac string, after int64, limit int) (EventList, error) {
	q := url.Values{"mac": {mac}}
	if after >= 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	return c.eventList(ctx, isp, q, limit)
}

// eventList is GET …/events with query q and limit (0: the server's
// default): isp's (its path), or the whole log's (isp "", operator).
func (c *Client) eventList(ctx context.Context, isp string, q url.Values, limit int) (EventList, error) {
	var out EventList
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/events"
	if isp != "" {
		path = ispPath(isp) + "/events"
	}
	err := c.do(ctx, "GET", path, q, nil, &out)
	return out, err
}

// StreamReset is the data of a reset message (api.StreamReset).
type StreamReset struct {
	After  uint64 `json:"after"`
	Oldest uint64 `json:"oldest"`
	Newest uint64 `json:"newest"`
}

// StreamMessage is one message of an event stream: an event, or (Reset
// set) the news that events were trimmed before they could be read.
type StreamMessage struct {
	Event tenants.Event
	Reset *StreamReset
}

// Follow reads an event stream (isp "" = every ISP, operator) and calls fn
// with each message, until ctx ends (nil is returned then), fn fails, or
// the server refuses the stream (a 4xx *Error). after >= 0 resumes after
// that sequence; after < 0 starts with the next event. A broken connection
// is resumed after the last sequence seen, with no gap or duplicate, after
// a back-off of 1 s doubling to 30 s.
func (c *Client) Follow(ctx context.Context, isp string, after int64, fn func(StreamMessage) error) error {
	path := "/v1/events/stream"
	if isp != "" {
		path = ispPath(isp) + "/events/stream"
	}
	pos := ""
	if after >= 0 {
		pos = strconv.FormatInt(after, 10)
	}
	backoff := time.Second
	for {
		progressed, err := c.followOnce(ctx, path, &pos, fn)
		if ctx.Err() != nil {
			return nil
		}
		var e *Error
		if errors.As(err, &e) && e.Status < 500 {
			return err
		}
		if errors.Is(err, errCallback) {
			return errors.Unwrap(err)
		}
		if progressed {
			backoff = time.Second
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

type callbackError struct{ err error }

func (e callbackError) Error() string        { return e.err.Error() }
func (e callbackError) Unwrap() error        { return e.err }
func (e callbackError) Is(target error) bool { return target == errCallback }

// followOnce reads one connection of a stream; *pos is the resume point
// ("" = live), moved by every id and by the server's position comments.
func (c *Client) followOnce(ctx context.Context, path string, pos *string, fn func(StreamMessage) error) (progressed bool, err error) {
	req, err := c.newRequest(ctx, "GET", path, nil, nil, "")
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if *pos != "" {
		req.Header.Set("Last-Event-ID", *pos)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return false, plainDialError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, readProblem(resp)
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	var id, event string
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return progressed, err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if event == "" && data == nil {
				// No data: nothing to dispatch, but an id still
				// moves the resume point (the heartbeat's and the
				// position's, WHATWG HTML §9.2.6).
				if id != "" {
					*pos = id
				}
				id = ""
				continue
			}
			msg := StreamMessage{}
			payload := strings.Join(data, "\n")
			if event == "reset" {
				msg.Reset = &StreamReset{}
				if err := json.Unmarshal([]byte(payload), msg.Reset); err != nil {
					return progressed, fmt.Errorf("api client: reset message: %w", err)
				}
			} else if err := json.Unmarshal([]byte(payload), &msg.Event); err != nil {
				return progressed, fmt.Errorf("api client: event %s: %w", id, err)
			}
			if id != "" {
				*pos = id
			}
			progressed = true
			if err := fn(msg); err != nil {
				return progressed, callbackError{err}
			}
			id, event, data = "", "", nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			// ": position N" and ": heartbeat N" say where the stream
			// stands (an ISP's stream skips other ISPs' sequences).
			f := strings.Fields(line[1:])
			if len(f) == 2 && (f[0] == "position" || f[0] == "heartbeat") {
				if _, err := strconv.ParseUint(f[1], 10, 64); err == nil {
					*pos = f[1]
				}
			}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "event":
			event = value
		case "data":
			data = append(data, value)
		}
	}
}

var errCallback = errors.New("callback")
