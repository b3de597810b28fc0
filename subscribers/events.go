package subscribers

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// EventKind says what happened to a subscriber.
type EventKind string

// Event kinds.
const (
	EventApproved    EventKind = "approved"     // registration accepted
	EventRejected    EventKind = "rejected"     // registration refused
	EventBound       EventKind = "bound"        // first lease granted
	EventRenewed     EventKind = "renewed"      // lease extended
	EventReleased    EventKind = "released"     // subscriber sent DHCPRELEASE
	EventDeclined    EventKind = "declined"     // subscriber sent DHCPDECLINE
	EventExpired     EventKind = "expired"      // lease ran out
	EventNak         EventKind = "nak"          // ISP answered DHCPNAK
	EventTimeout     EventKind = "timeout"      // ISP did not answer
	EventUnknown     EventKind = "unknown"      // unregistered MAC asked for service
	EventBlocked     EventKind = "blocked"      // blocked MAC asked for service
	EventRateLimited EventKind = "rate-limited" // subscriber exceeded the request rate
	EventRevoked     EventKind = "revoked"      // binding removed: the registration changed
	EventSuppressed  EventKind = "suppressed"   // N refusals were not recorded (flood)

	// The tenant model's changes (made through the API or the config),
	// each recorded with its Actor and RequestID.

	EventMoved           EventKind = "moved"            // device moved away: the losing ISP's (an API move's gaining ISP and customer get EventDeviceAttached; a configuration's move within one ISP is one EventMoved)
	EventSuspended       EventKind = "suspended"        // customer suspended (its devices lose service)
	EventReactivated     EventKind = "reactivated"      // customer's suspension lifted (its devices get service again)
	EventClaimed         EventKind = "claimed"          // device attached by a claim with the customer's credentials
	EventClaimRefused    EventKind = "claim-refused"    // claim refused (credentials, limit, rate)
	EventCustomerCreated EventKind = "customer-created" // customer created
	EventCustomerUpdated EventKind = "customer-updated" // customer changed (status, password, device limit)
	EventCustomerDeleted EventKind = "customer-deleted" // customer deleted (its devices detached)
	EventDeviceAttached  EventKind = "device-attached"  // device attached by the ISP or the operator
	EventDeviceDetached  EventKind = "device-detached"  // device detached
	EventDeviceBlocked   EventKind = "device-blocked"   // the operator blocked a MAC (EventBlocked is a blocked MAC asking for service)
	EventUnblocked       EventKind = "unblocked"        // the operator unblocked a MAC
	EventDeviceUpdated   EventKind = "device-updated"   // device changed: pinned to an access, or its pin cleared
	// EventAttachRefused: an attach or claim of a MAC attached to
	// another ISP's customer was refused. It names both customers, so it
	// has no ISP: the operator's log only (no ISP's stream, index or
	// webhook sees it).
	EventAttachRefused EventKind = "attach-refused"

	// Onboarding leases: granted by ispmux itself from an access's
	// onboarding pool to a MAC without a device record (bound in the
	// walled garden). Their events have no ISP: no ISP's event stream,
	// index or webhook sees them. A renewal is not an event.

	EventOnboarded       EventKind = "onboarded"        // onboarding lease granted (LeaseEnd set)
	EventOnboardingEnded EventKind = "onboarding-ended" // onboarding lease ended; Reason is one of the OnboardingEnd* reasons
)

// The reasons of an EventOnboardingEnded.
const (
	OnboardingEndReleased = "released" // the client sent DHCPRELEASE
	OnboardingEndDeclined = "declined" // the client sent DHCPDECLINE (the address is quarantined)
	OnboardingEndExpired  = "expired"  // the lease ran out (or ran out while ispmux was stopped)
	OnboardingEndHandover = "handover" // the MAC got a device record and turned to its ISP
	OnboardingEndRemoved  = "removed"  // its access no longer has onboarding, or the address is no longer in the pool
	OnboardingEndMoved    = "moved"    // the MAC asked for service on another access after this lease ran out unrenewed
	OnboardingEndConflict = "conflict" // the address could not be installed (held by another subscriber)
	OnboardingEndNoRoom   = "no_room"  // the lease could not be installed for another reason (the MAC table full)
	OnboardingEndBlocked  = "blocked"  // the operator blocked the MAC
)

// Event is one entry of the event log. Seq increases by one per event,
// across restarts. ISPSeq, of an event with an ISP, increases by one per
// event of that ISP (eventseq.go): it is the number an ISP sees. The
// reads of one ISP's events set it, and so does EventsPage with no ISP
// (the operator's page, for the operator to find an event an ISP names);
// Events leaves it 0.
type Event struct {
	Seq      uint64
	ISPSeq   uint64
	Time     time.Time
	Kind     EventKind
	MAC      MAC
	ISP      string
	IP       netip.Addr
	Reason   string
	Customer string // the subscriber's customer ID, where known
	Access   string // the access entry the subscriber is on, where known
	// LeaseEnd is the lease's end for bound, renewed and onboarded
	// events (zero otherwise).
	LeaseEnd time.Time

	Actor     string // who made the change (a token's name, "config", "socket"); "" for the DHCP path's events
	RequestID string // the API request that made the change, where there was one
}

// AddEvent appends e to the log, durably (grouped with concurrent writes),
// and returns it with its Seq and ISPSeq assigned (any passed in are ignored) and
// Time set to now if it was zero. The oldest events beyond the retention
// (Options.EventRetention, batched as eventPut says, and Options.EventMaxAge)
// are dropped in the same transaction.
func (s *Store) AddEvent(e Event) (Event, error) {
	if err := prepareEvent(&e); err != nil {
		return Event{}, err
	}
	if err := s.updateWaking(s.eventPut(&e), wakeEvents); err != nil {
		return Event{}, fmt.Errorf("add event %s %s: %w", e.Kind, macString(e.MAC), err)
	}
	return e, nil
}

// prepareEvent validates e and sets its Time if zero.
func prepareEvent(e *Event) error {
	if e.Kind == "" {
		return fmt.Errorf("add event: %w: empty kind", ErrInvalid)
	}
	if len(e.Kind) > maxString || len(e.ISP) > maxString || len(e.Reason) > maxString ||
		len(e.Customer) > maxString || len(e.Access) > maxString || len(e.Actor) > maxString || len(e.RequestID) > maxString {
		return fmt.Errorf("add event %s: %w: field longer than %d bytes", e.Kind, ErrInvalid, maxString)
	}
	if strings.IndexByte(e.ISP, 0) >= 0 {
		return fmt.Errorf("add event %s: %w: ISP name contains NUL", e.Kind, ErrInvalid)
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Seq, e.ISPSeq = 0, 0
	return nil
}

// eventPut returns the transaction step that appends e (assigning e.Seq
// and, if it has an ISP, e.ISPSeq)
// and trims the log: by count to the newest s.retention, and by age to
// the events at most s.maxAge older than e.Time.
//
// The count trim is batched: the log may grow trimSlack events past the
// retention, then the append that crosses it trims back to the newest
// s.retention. A trim rewrites the log's first page and the index pages
// of the trimmed events, so trimming one event per append made every
// binding commit write two to four pages more; batched, most appends
// only add to the last pages (bench: BenchmarkDORACommit).
//
// Both trims only look at the front of the log (the oldest sequence
// numbers) and stop at the first event they keep, so an append costs
// O(1 + events trimmed). Times are the callers', and not necessarily in
// sequence order: an old-dated event behind a newer one stays until the
// ones in front of it go. An event at the front that does not decode is
// trimmed as old (it is the oldest, and unreadable).
//
// An event with an ISP also gets its events-by-isp index entry, and one
// with a MAC its events-by-mac entry, removed when the event is trimmed
// (that of an event that no longer decodes cannot be found and stays;
// EventsOf and EventsOfMAC skip it).
func (s *Store) eventPut(e *Event) func(tx *bolt.Tx) error {
	return s.eventPutVal(e, encodeEvent(e))
}

// eventPutVal is eventPut for e already encoded (val).
func (s *Store) eventPutVal(e *Event, val []byte) func(tx *bolt.Tx) error {
	cutTime := e.Time.Add(-s.maxAge)
	return func(tx *bolt.Tx) error {
		seq, err := tx.Bucket(bucketEvents).NextSequence()
		if err != nil {
			return err
		}
		e.Seq = seq
		e.ISPSeq, err = s.eventAt(tx, seq, val, e.ISP, 0, cutTime, nil)
		return err
	}
}

// eventAt stores the event val (of ISP isp) under seq, the log's newest
// sequence number, with its events-by-isp entry under ispSeq (0: the
// ISP's next number) and its events-by-mac entry (eventsmac.go), and
// trims the log as eventPut says, by count and by cutTime.
// It returns the event's ISPSeq (0 for an event with no ISP). The ISP's
// sequence is kept in held if not nil (takeISPSeq).
func (s *Store) eventAt(tx *bolt.Tx, seq uint64, val []byte, isp string, ispSeq uint64, cutTime time.Time, held ispSeqs) (uint64, error) {
	bk := tx.Bucket(bucketEvents)
	bk.FillPercent = 0.95 // append-only: keep the pages full
	idx := tx.Bucket(bucketEventIndex)
	if err := bk.Put(seqKey(seq), val); err != nil {
		return 0, err
	}
	if isp != "" && s.replayLegacy {
		// An event of a schema 8 journal: indexed as the migrated ones
		// (keyed by its Seq, no value), its ISPSeq (replayLegacy).
		if err := idx.Put(eventIndexKey(isp, seq), nil); err != nil {
			return 0, err
		}
		ispSeq = seq
	} else if isp != "" {
		var err error
		if ispSeq, err = takeISPSeq(tx, isp, ispSeq, held); err != nil {
			return 0, err
		}
		if err := idx.Put(eventIndexKey(isp, ispSeq), seqKey(seq)); err != nil {
			return 0, err
		}
	}
	if err := putMACIndex(tx, val, seq, ispSeq); err != nil {
		return 0, err
	}
	return ispSeq, s.trimEvents(tx, seq, cutTime)
}

// trimEvents trims the log in tx, whose newest event is seq, as eventPut
// says.
func (s *Store) trimEvents(tx *bolt.Tx, seq uint64, cutTime time.Time) error {
	if s.replaying {
		return nil // trimmed by the first append after Open (replaying)
	}
	bk := tx.Bucket(bucketEvents)
	idx := tx.Bucket(bucketEventIndex)
	macIdx := tx.Bucket(bucketEventMACIndex)
	// The log holds at most seq-oldest+1 events (only its front is
	// ever deleted). Within retention + slack, cutoff stays 0 and
	// the loop below only reads the oldest event's time (nothing
	// dirtied); past it, this append trims the whole slack at once.
	c := bk.Cursor()
	var cutoff uint64 // trim every seq whose virtual number <= cutoff
	k, v := c.First()
	// Counted in numbers given out (virtual): a store restored from a
	// backup copy skipped a range of them (openedCopy).
	vseq := s.virtual(seq)
	if len(k) == 8 && vseq-s.virtual(binary.BigEndian.Uint64(k)) >= s.retention+trimSlack(s.retention) {
		cutoff = s.holdCutoff(tx, vseq, vseq-s.retention, s.virtual(binary.BigEndian.Uint64(k)))
	}
	// Re-seek after each delete (a bbolt cursor may skip a key if Next
	// follows Delete), to the deleted key, never First: bbolt
	// rebalances only at commit, so First walks every leaf this
	// transaction emptied, and trimming n events in one write cost
	// O(n²) (80k: ~1 s). Seek descends from the root past them.
	var del []byte
	at := map[string][]byte{} // trimIndex's places, per ISP
	deleted := 0
	for ; k != nil; k, v = c.Seek(del) {
		del = append(del[:0], k...)
		s.trimLooked++
		if len(k) == 8 && binary.BigEndian.Uint64(k) == seq {
			break // the newest stays, whatever its time
		}
		if deleted >= maxTrim {
			// The rest at the next appends: a retention lowered by
			// millions trimmed them all in one transaction, which
			// every write of the group commit waited behind (a
			// review: 2M events, 3.3 s and 742 MiB).
			break
		}
		// The common case, a young event within the retention,
		// reads only its time (no allocation).
		if len(k) == 8 && s.virtual(binary.BigEndian.Uint64(k)) > cutoff {
			if t, ok := eventTime(v); ok && !t.Before(cutTime) {
				break
			}
		}
		old, err := decodeEvent(k, v)
		if len(k) == 8 && s.virtual(binary.BigEndian.Uint64(k)) > cutoff && err == nil && !old.Time.Before(cutTime) {
			break
		}
		if err == nil && old.ISP != "" {
			if err := trimIndex(idx, old.ISP, old.Seq, at); err != nil {
				return err
			}
		}
		if len(k) == 8 {
			if err := trimMACIndex(macIdx, v, binary.BigEndian.Uint64(k)); err != nil {
				return err
			}
		}
		if err := c.Delete(); err != nil {
			return err
		}
		deleted++
	}
	return nil
}

// maxTrim is the most events one append trims: a normal trim is the
// slack (at most 256); a log far over its retention (lowered, or a month
// of events aged out at once) comes down maxTrim per append.
const maxTrim = 8192

// Events returns up to limit events with Seq > afterSeq, ascending by Seq
// (limit <= 0: all). If some values are corrupt it returns the others
// together with an error wrapping ErrCorrupt for each bad one. It reads
// the binding journal's pending events without a checkpoint
// (pendingevents.go), as EventsOf and WebhookEvents do.
func (s *Store) Events(afterSeq uint64, limit int) ([]Event, error) {
	evs, _, _, err := s.eventsPage("", afterSeq, limit, false)
	return evs, err
}

// EventsOf returns up to limit events of one ISP (those whose ISP is isp)
// with ISPSeq > after, ascending (limit <= 0: all), reading the
// events-by-isp index: other ISPs' events are not looked at. isp "" means
// every event (Events: Seq > after).
func (s *Store) EventsOf(isp string, after uint64, limit int) ([]Event, error) {
	evs, _, _, err := s.eventsPage(isp, after, limit, false)
	return evs, err
}

// EventsPage is Events (isp "") or EventsOf (isp) together with the log's
// bounds (EventBounds), all read in one transaction: a page that starts
// past after+1 while after+1 < oldest was trimmed in front of its reader,
// which the bounds read apart could not tell (an API page's missed, a
// stream's reset). For an ISP, after and the bounds are ISPSeqs: the
// ISPSeq of its oldest event the log holds (newest+1: none; the log's
// oldest while that is an event of a store of schema 8: ispBoundsTx), and
// its last given out.
//
// The events of a page of the whole log (isp "": the operator's) have
// their ISPSeq too (0 for an event with no ISP), the number their ISP
// knows them by.
func (s *Store) EventsPage(isp string, after uint64, limit int) (evs []Event, oldest, newest uint64, err error) {
	return s.eventsPage(isp, after, limit, true)
}

// eventsPage is EventsPage; with numbered false, a page of the whole log
// leaves the events' ISPSeq 0 (Events).
func (s *Store) eventsPage(isp string, after uint64, limit int, numbered bool) (evs []Event, oldest, newest uint64, err error) {
	var bad []error
	err = s.viewEvents(func(tx *bolt.Tx, pend []*jrec) error {
		oldest, newest = s.boundsTx(tx, pend, isp)
		if after >= newest {
			return nil
		}
		if isp == "" {
			evs, bad = eventsTx(tx, after, limit)
			if numbered {
				ispSeqsTx(tx, evs)
			}
		} else {
			evs, bad = eventsOfTx(tx, isp, after, limit)
		}
		n := len(evs)
		evs, bad = mergePending(evs, bad, pend, isp, nil, after, limit)
		if isp == "" && numbered {
			pendingISPSeqs(evs[n:], pend)
		}
		return nil
	})
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		if isp == "" {
			return evs, oldest, newest, fmt.Errorf("events after %d: %w", after, err)
		}
		return evs, oldest, newest, fmt.Errorf("events of %q after %d: %w", isp, after, err)
	}
	return evs, oldest, newest, nil
}

// eventsTx walks the event log in tx from Seq after+1 (after <
// math.MaxUint64): up to limit events (limit <= 0: all), ascending, and
// an ErrCorrupt error for each event that does not decode.
func eventsTx(tx *bolt.Tx, after uint64, limit int) (evs []Event, bad []error) {
	c := tx.Bucket(bucketEvents).Cursor()
	for k, v := c.Seek(seqKey(after + 1)); k != nil && (limit <= 0 || len(evs) < limit); k, v = c.Next() {
		e, err := decodeEvent(k, v)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		evs = append(evs, e)
	}
	return evs, bad
}

// eventsOfTx walks isp's events-by-isp index in tx from ISPSeq after+1
// (after < math.MaxUint64): up to limit events of isp (limit <= 0: all),
// ascending, with their ISPSeq, and an ErrCorrupt error for each
// malformed index entry and each event that does not decode. Entries
// whose event was trimmed, and stale ones (the event is another ISP's),
// are skipped.
func eventsOfTx(tx *bolt.Tx, isp string, after uint64, limit int) (evs []Event, bad []error) {
	prefix := append([]byte(isp), 0)
	bk := tx.Bucket(bucketEvents)
	c := tx.Bucket(bucketEventIndex).Cursor()
	for k, iv := c.Seek(eventIndexKey(isp, after+1)); k != nil && bytes.HasPrefix(k, prefix) && (limit <= 0 || len(evs) < limit); k, iv = c.Next() {
		n, seq, ok := indexSeq(k, iv, len(prefix))
		if !ok {
			bad = append(bad, corrupt(bucketEventIndex, k, errors.New("entry is not ISP, 0x00, 8-byte sequence: 8-byte sequence or nothing")))
			continue
		}
		key := seqKey(seq)
		v := bk.Get(key)
		if v == nil {
			continue // trimmed while it did not decode
		}
		e, err := decodeEvent(key, v)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		if e.ISP != isp {
			continue // stale entry
		}
		e.ISPSeq = n
		evs = append(evs, e)
	}
	return evs, bad
}

// eventBoundsTx is EventBounds in tx.
func eventBoundsTx(tx *bolt.Tx) (oldest, newest uint64) {
	bk := tx.Bucket(bucketEvents)
	newest = bk.Sequence()
	oldest = newest + 1
	if k, _ := bk.Cursor().First(); len(k) == 8 {
		oldest = binary.BigEndian.Uint64(k)
	}
	return oldest, newest
}

// eventBoundsPending is eventBoundsTx with the pending journal records'
// events pend (pendingevents.go).
func eventBoundsPending(tx *bolt.Tx, pend []*jrec) (oldest, newest uint64) {
	oldest, newest = eventBoundsTx(tx)
	if p := pendingNewest(pend); p > newest {
		newest = p
	}
	if p := pendingOldest(pend); p != 0 && p < oldest {
		oldest = p
	}
	return oldest, newest
}

// EventBounds returns the Seq of the oldest event the log still holds and
// of the newest event ever added. A reader that has seen the events up to
// Seq n missed some (trimmed by count or age) if n+1 < oldest. An empty
// log (a new store) gives oldest = newest+1. The pending journal records'
// events count without a checkpoint (an API client paging through the
// events calls it for every page).
func (s *Store) EventBounds() (oldest, newest uint64, err error) {
	err = s.viewEvents(func(tx *bolt.Tx, pend []*jrec) error {
		oldest, newest = s.boundsTx(tx, pend, "")
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("event bounds: %w", err)
	}
	return oldest, newest, nil
}

// boundsTx is the log's bounds as a reader of isp's events sees them (isp
// "": the whole log, EventBounds) in tx, with the journal's pending
// records pend: the oldest past a restored copy's jump (gapOldest), and
// for an ISP, in its own numbering (ispBoundsTx).
func (s *Store) boundsTx(tx *bolt.Tx, pend []*jrec, isp string) (oldest, newest uint64) {
	oldest, newest = eventBoundsPending(tx, pend)
	oldest = s.gapOldest(oldest)
	if isp != "" {
		oldest, newest = ispBoundsTx(tx, pend, isp, oldest)
	}
	return oldest, newest
}

// LastEventSeq returns the Seq of the newest event ever added (0 if none),
// for a reader that wants to start following from now.
//
// It is kept in memory (every commit that appends events moves it), so a
// follower's WaitEvents does not checkpoint the binding journal.
func (s *Store) LastEventSeq() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return 0, fmt.Errorf("last event seq: %w", ErrClosed)
	}
	return s.evSeq.Load(), nil
}

// WaitEvents returns nil as soon as the log holds an event with Seq >
// after (at once if it already does), woken in-process by the commit that
// appends one (through any writer: AddEvent, CommitBindingEvent,
// EndBinding, ApplyTenant), without polling. It returns ctx's error when
// ctx ends first, and an error wrapping ErrClosed when the store is
// closed. A stream reader loops: Events (or EventsOf) after its last Seq,
// then WaitEvents(ctx, last). Events of other ISPs wake it too: an ISP's
// reader may find nothing new and wait again.
func (s *Store) WaitEvents(ctx context.Context, after uint64) error {
	for {
		woken := s.waitChannel(wakeEvents)
		seq, err := s.LastEventSeq()
		if err != nil {
			return err
		}
		// Numbers a restored copy skipped (openedCopy) are no
		// events: the newest number right after the jump is none.
		if seq > after && s.virtual(seq) > s.virtual(after) {
			return nil
		}
		select {
		case <-woken:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// trimSlack is how many events past the retention the log may hold
// before it is trimmed: 1/64 of the retention, at most 256 (0 below a
// retention of 64, so small logs are trimmed at every append).
func trimSlack(retention uint64) uint64 { return min(retention/64, 256) }
