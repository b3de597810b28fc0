package subscribers

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// bucketWebhooks holds the webhook delivery cursors (package webhooks):
// key the ISP name, value the big-endian ISPSeq of the last event the
// ISP's receiver acknowledged (eventseq.go: a cursor stored by an older
// ispmux, a Seq, is that ISPSeq too). It is created by the first SetWebhookCursor, so a
// store that never delivered webhooks has no such bucket and its schema is
// unchanged (an older ispmux of the same schema ignores the bucket).
var bucketWebhooks = []byte("webhook-cursors")

// WebhookCursor returns the ISPSeq of the last event of isp that its webhook
// receiver acknowledged, and whether a cursor was ever stored for isp.
func (s *Store) WebhookCursor(isp string) (seq uint64, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketWebhooks)
		if bk == nil {
			return nil
		}
		v := bk.Get([]byte(isp))
		if v == nil {
			return nil
		}
		if len(v) != 8 {
			return corrupt(bucketWebhooks, []byte(isp), fmt.Errorf("value is %d bytes, want 8", len(v)))
		}
		seq, ok = binary.BigEndian.Uint64(v), true
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("webhook cursor of %q: %w", isp, err)
	}
	return seq, ok, nil
}

// SetWebhookCursor records, durably (grouped with concurrent writes), that
// isp's receiver acknowledged its events up to ISPSeq seq. The cursor only moves
// forward: a seq below the stored one is ignored (and is no error).
func (s *Store) SetWebhookCursor(isp string, seq uint64) error {
	if isp == "" || strings.IndexByte(isp, 0) >= 0 || len(isp) > maxString {
		return fmt.Errorf("set webhook cursor: %w: bad ISP name %q", ErrInvalid, isp)
	}
	key := []byte(isp)
	err := s.updateOwn(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bucketWebhooks)
		if err != nil {
			return err
		}
		if v := bk.Get(key); len(v) == 8 && binary.BigEndian.Uint64(v) >= seq {
			return nil
		}
		return bk.Put(key, seqKey(seq))
	})
	if err != nil {
		return fmt.Errorf("set webhook cursor of %q to %d: %w", isp, seq, err)
	}
	return nil
}

// WebhookEvents is EventsOf(isp, after, limit) (isp must not be empty)
// together with isp's bounds (EventsPage), all read in one transaction,
// all ISPSeqs: a webhook worker that finds after+1 < oldest knows exactly
// which of its ISP's numbers were trimmed before it delivered them, and
// one that gets no event knows it has looked at the log up to newest (it
// then waits with WaitEventsOf(ctx, isp, newest)).
func (s *Store) WebhookEvents(isp string, after uint64, limit int) (evs []Event, oldest, newest uint64, err error) {
	if isp == "" {
		return nil, 0, 0, fmt.Errorf("webhook events: %w: empty ISP", ErrInvalid)
	}
	return s.EventsPage(isp, after, limit)
}

// CountEventsOf returns how many events of isp the log holds with ISPSeq
// > after, counting at most limit (limit <= 0: no cap): a webhook's lag. It
// reads bbolt's events-by-isp index (a malformed entry is not counted)
// and the pending journal records' events, not the events themselves.
func (s *Store) CountEventsOf(isp string, after uint64, limit int) (int, error) {
	n, _, err := s.countEventsOf(isp, after, limit, false)
	return n, err
}

// WebhookLag is CountEventsOf(isp, after, limit) and, read at the same
// instant, how many of isp's events after `after` the log trimmed: the
// numbers given out between after and the oldest it holds, those a jump
// of the numbering skipped left out (a store restored from a backup copy
// skips 2^32: counted as events, a lag read a million: a review), and
// the numbers up to a new store's base, never given out, left out too (a
// cursor of 0 on such a store read the base, ~1.8e15, as its lag).
func (s *Store) WebhookLag(isp string, after uint64, limit int) (held int, trimmed uint64, err error) {
	return s.countEventsOf(isp, after, limit, true)
}

// countEventsOf is CountEventsOf, and with lost WebhookLag's trimmed count.
func (s *Store) countEventsOf(isp string, after uint64, limit int, lost bool) (n int, trimmed uint64, err error) {
	if isp == "" {
		return 0, 0, fmt.Errorf("count events: %w: empty ISP", ErrInvalid)
	}
	if after == math.MaxUint64 {
		return 0, 0, nil
	}
	prefix := append([]byte(isp), 0)
	// The pending journal records' events are counted from memory, as
	// the followers read them (pendingevents.go): a metrics scrape or a
	// status read does not checkpoint the journal in front of the ACKs.
	err = s.viewEvents(func(tx *bolt.Tx, pend []*jrec) error {
		if lost {
			logOldest, _ := eventBoundsPending(tx, pend)
			oldest, _ := ispBoundsTx(tx, pend, isp, s.gapOldest(logOldest))
			// The numbers up to a new store's base were never given
			// out (eventbase.go): a cursor below it (0: nothing
			// acknowledged) missed none of them.
			trimmed = numbersBetween(max(after, s.base), oldest, readISPSeq(tx, isp).gaps)
		}
		last := after
		c := tx.Bucket(bucketEventIndex).Cursor()
		for k, v := c.Seek(eventIndexKey(isp, after+1)); k != nil && bytes.HasPrefix(k, prefix) && (limit <= 0 || n < limit); k, v = c.Next() {
			num, _, ok := indexSeq(k, v, len(prefix))
			if !ok {
				continue // malformed: not an event a worker would deliver (eventsOfTx reports it)
			}
			n++
			last = num
		}
		// Every pending event bbolt does not hold is newer than all it
		// holds (see mergePending).
		for _, r := range pend {
			if limit > 0 && n >= limit {
				break
			}
			if _, risp, _ := r.event(); risp == isp && r.ispSeq() > last {
				n++
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("count events of %q after %d: %w", isp, after, err)
	}
	return n, trimmed, nil
}

// numbersBetween is how many numbers in (after, oldest) were given out:
// all of them but those a gap's jump skipped, (Newest, Newest+Jump].
func numbersBetween(after, oldest uint64, gaps []seqGap) uint64 {
	if oldest <= after+1 {
		return 0
	}
	n := oldest - 1 - after
	for _, g := range gaps {
		lo, hi := max(g.Newest+1, after+1), min(g.Newest+g.Jump, oldest-1)
		if lo <= hi {
			n -= hi - lo + 1
		}
	}
	return n
}
