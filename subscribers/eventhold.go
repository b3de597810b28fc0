package subscribers

import (
	"bytes"
	"encoding/binary"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// holdFactor bounds the log's growth past its retention for webhook
// receivers (HoldEventsFor): at most holdFactor × the retention events in
// all.
const holdFactor = 4

// HoldEventsFor sets the ISPs whose webhook receivers hold the event log's
// count trim (the appliance: those with a webhook configured; nil: none).
// The log keeps its newest Options.EventRetention events, and past them
// every event from the oldest one such a receiver has not acknowledged
// (its cursor, SetWebhookCursor), up to holdFactor × the retention in all;
// the age trim (Options.EventMaxAge) applies as before. So one ISP's burst
// (an import of a million customers writes a million events; a mass
// expiry, one per binding) no longer pushes another ISP's undelivered
// events out of the log while its receiver is slow or down for a while:
// before, it lost them (an events-lost message) once the burst passed the
// retention. A receiver down for longer than the bound still loses them,
// and a cursor no ISP of the set has (a webhook removed) holds nothing.
func (s *Store) HoldEventsFor(isps []string) {
	hs := slices.Clone(isps)
	slices.Sort(hs)
	hs = slices.Compact(hs)
	s.holds.Store(&hs)
}

// HeldEvents is how many events the log keeps now past its retention for
// webhook receivers that have not acknowledged them (HoldEventsFor); 0
// when none. Read when asked (a metrics scrape), not kept from the last
// trim: the log is trimmed only as it is appended to, and a quiet box's
// gauge stayed up after the receiver caught up (a trial).
func (s *Store) HeldEvents() uint64 {
	var held uint64
	_ = s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		fk, _ := c.First()
		lk, _ := c.Last()
		if len(fk) != 8 || len(lk) != 8 {
			return nil
		}
		first, vseq := s.virtual(binary.BigEndian.Uint64(fk)), s.virtual(binary.BigEndian.Uint64(lk))
		if vseq < s.retention || vseq-s.retention < first {
			return nil // within the retention
		}
		cutoff := vseq - s.retention
		if c := s.heldCutoff(tx, vseq, cutoff); c < cutoff {
			held = cutoff - max(c, first-1)
		}
		return nil
	})
	return held
}

// holdCutoff is trimEvents' count cutoff (trim every event whose virtual
// number is at most it) for a log whose newest event's virtual number is
// vseq and oldest's first, given cutoff, the retention's: as heldCutoff
// lowers it, and then only a slack's worth at a time (trimSlack: 0 until
// then), as the count trim does: trimming the one event a receiver's
// acknowledgement freed at each append rewrote the log's first pages at
// every binding commit (a review).
func (s *Store) holdCutoff(tx *bolt.Tx, vseq, cutoff, first uint64) uint64 {
	c := s.heldCutoff(tx, vseq, cutoff)
	if c < cutoff && c+1 < first+trimSlack(s.retention) { // c-first+1 would go
		return 0 // less than a slack to trim: later
	}
	return c
}

// heldCutoff is cutoff lowered to keep the oldest event a held ISP's
// receiver has not acknowledged, but never below vseq minus holdFactor ×
// the retention.
func (s *Store) heldCutoff(tx *bolt.Tx, vseq, cutoff uint64) uint64 {
	hp := s.holds.Load()
	if hp == nil || len(*hp) == 0 {
		return cutoff
	}
	oldest := s.unacknowledged(tx, *hp)
	if oldest == 0 {
		return cutoff
	}
	floor := uint64(0)
	if limit := holdFactor * s.retention; vseq > limit {
		floor = vseq - limit
	}
	v := s.virtual(oldest)
	if v == 0 || v-1 >= cutoff {
		return cutoff
	}
	return max(v-1, floor)
}

// unacknowledged is the Seq of the oldest event of isps that their
// webhook receivers have not acknowledged (0: none): for each, the first
// entry of its events-by-isp index past its cursor.
func (s *Store) unacknowledged(tx *bolt.Tx, isps []string) uint64 {
	wb := tx.Bucket(bucketWebhooks)
	idx := tx.Bucket(bucketEventIndex)
	if idx == nil {
		return 0
	}
	var oldest uint64
	c := idx.Cursor()
	for _, isp := range isps {
		var acked uint64
		if wb != nil {
			if v := wb.Get([]byte(isp)); len(v) == 8 {
				acked = binary.BigEndian.Uint64(v)
			}
		}
		prefix := append([]byte(isp), 0)
		for k, v := c.Seek(eventIndexKey(isp, acked+1)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if _, seq, ok := indexSeq(k, v, len(prefix)); ok {
				if oldest == 0 || seq < oldest {
					oldest = seq
				}
				break
			}
		}
	}
	return oldest
}
