package subscribers

import (
	"slices"

	bolt "go.etcd.io/bbolt"
)

// The events of the pending journal records, read without a checkpoint.
//
// A webhook worker or an event stream follows the log in a loop: read
// the events after its cursor, deliver them, wait for more. Through
// viewJournaled each read would checkpoint the journal (a bbolt commit
// through the group commit, which the DHCP path's appends wait for), so
// with a follower and a busy DHCP path every few appends would pay for
// one. The followers' reads (Events, EventsOf, WebhookEvents), and
// EventBounds and CountEventsOf (every page of the events API, every
// metrics scrape with a webhook), take the pending records' events from
// memory instead, merged with bbolt's.

// pendingEvents returns the pending journal records that carry an event,
// in LSN (and so Seq) order (under s.bmu: see snapshotView).
func (s *Store) pendingEvents() []*jrec {
	if s.pendingN.Load() == 0 {
		return nil
	}
	s.pmu.RLock()
	defer s.pmu.RUnlock()
	return slices.Clone(s.pendingEv)
}

// viewEvents runs fn in a read transaction with the pending events of
// the same instant (snapshotView).
func (s *Store) viewEvents(fn func(tx *bolt.Tx, pend []*jrec) error) error {
	var pend []*jrec
	return s.snapshotView(func() { pend = s.pendingEvents() }, func(tx *bolt.Tx) error { return fn(tx, pend) })
}

// mergePending appends to evs (bbolt's events with Seq > after,
// ascending, at most limit: limit <= 0 for all) the pending events of isp
// ("": any) and of mac (nil: any) with Seq past after and past evs' last, up to limit in all,
// and to bad an error for each that does not decode. Every pending event bbolt
// does not hold is newer than every event it holds, and pend is in Seq
// order, so the result is the log's, ascending: those past evs' last
// that bbolt holds too (a background checkpoint committed them, and they
// stay pending until the leader drops them) are the ones it would have
// returned next. Were that checkpoint to trim events still pending, one
// could be shown once more; the default retention (100,000 events, 30
// days) is larger than any checkpoint, so only a retention set below a
// checkpoint's records or a clock jump does that.
//
// For an ISP, after and the order are ISPSeqs, and the events get theirs.
func mergePending(evs []Event, bad []error, pend []*jrec, isp string, mac *MAC, after uint64, limit int) ([]Event, []error) {
	last := after
	if len(evs) > 0 {
		if isp == "" {
			last = max(last, evs[len(evs)-1].Seq)
		} else {
			last = max(last, evs[len(evs)-1].ISPSeq)
		}
	}
	for _, r := range pend {
		if limit > 0 && len(evs) >= limit {
			break
		}
		seq, risp, _ := r.event()
		n := seq
		if isp != "" {
			n = r.ispSeq()
		}
		if seq == 0 || n <= last || (isp != "" && risp != isp) {
			continue
		}
		if mac != nil {
			if m, ok := r.eventMAC(); !ok || m != *mac {
				continue
			}
		}
		e, err := decodeEvent(seqKey(seq), r.evVal)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		if isp != "" {
			e.ISPSeq = n
		}
		evs = append(evs, e)
	}
	return evs, bad
}

// pendingNewest returns the largest event Seq of pend (0: none).
func pendingNewest(pend []*jrec) uint64 {
	for i := len(pend) - 1; i >= 0; i-- {
		if seq, _, _ := pend[i].event(); seq != 0 {
			return seq
		}
	}
	return 0
}

// pendingOldest returns the smallest event Seq of pend (0: none).
func pendingOldest(pend []*jrec) uint64 {
	for _, r := range pend {
		if seq, _, _ := r.event(); seq != 0 {
			return seq
		}
	}
	return 0
}
