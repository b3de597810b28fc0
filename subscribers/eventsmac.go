package subscribers

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// The events-by-mac index: one device's events without a walk of the log.
//
// A support desk asks what happened to one device; on a box of 100k to
// 1M subscribers the log's newest 10,000 events are minutes, so a walk of
// its tail (what `ctl subscriber` did) showed an event of an hour ago as
// none. Each event with a MAC has an entry; its value is the event's
// ISPSeq (8 bytes) for an event with an ISP, and empty for one with none,
// so an ISP's read of a device's events is numbered in the ISP's own
// sequence without a look-up in events-by-isp per event. Events with no
// MAC (a customer's) are not indexed.
//
// An entry is written in the transaction that appends its event (eventAt)
// and deleted in the one that trims it (trimEvents: a delete by key per
// trimmed event, so the trim stays linear in the events it trims).
//
// The key is time first: the event's span (its Seq >> macSpanBits, 8
// bytes), the MAC (6 bytes), the event's ISP and a 0x00 (just the 0x00
// for an event of no ISP; no ISP's name holds one), the Seq's low
// macSpanBits bits (2 bytes). The ISP before the low bits (schema 11)
// keeps an ISP's read of a device apart from other ISPs' entries: it
// seeks its own prefix in each span, and another ISP's events of the
// device cost it nothing. Before, it read and decoded every event of the
// device to drop the others' (a security review: 2,000 of alpha's events
// on one MAC made beta's read of it take 563 µs against 1.7 µs for an
// unknown MAC, telling beta that alpha's device was there and busy). The
// operator's read of a device sorts each span's entries by Seq.
// Keyed by MAC first, a device's entry went wherever its MAC sorts, and
// the trim's deletes, of the oldest events' devices, as well: every event
// dirtied two random leaves of the whole index, and a checkpoint of 4096
// journal records rewrote nearly all of it (a log of 100k events of 50k
// devices: 3170 pages a checkpoint, 1740 without the index). Time first,
// an append writes into the newest span and a trim deletes from the
// oldest, each 4096 entries (~60 leaves): a checkpoint dirties a span or
// two of each (1950 pages; of 256 records 345, 283 without the index; of
// 16, 53 and 39).
// A device's reads seek its entries span by span (macSpans: two seeks
// per span that holds entries, ~25 at the default retention, at most 4x
// that with webhooks holding events; the numbers a restored copy skipped
// hold none and cost nothing).

// bucketEventMACIndex is the events-by-mac index (schema 10; its key
// holds the ISP since schema 11).
var bucketEventMACIndex = []byte("events-by-mac")

// macSpanBits is the width of an events-by-mac span in Seqs (4096).
const macSpanBits = 12

// eventMACKey is the events-by-mac key of mac's event seq of isp ("":
// none).
func eventMACKey(m MAC, isp string, seq uint64) []byte {
	k := append(macISPPrefix(seq>>macSpanBits, m, isp), 0, 0)
	binary.BigEndian.PutUint16(k[len(k)-2:], uint16(seq&(1<<macSpanBits-1)))
	return k
}

// macKeyFits reports whether an event of isp has an events-by-mac key:
// one longer than bbolt's MaxKeySize cannot be put. Only an ISP name of
// some 32 KiB does not fit (a configured one has at most 32 bytes; an
// event's, maxString); its events get no entry, as events without a MAC,
// instead of their append, a checkpoint of the journal or the 10 → 11
// migration failing (schema 10's key did not hold the ISP).
func macKeyFits(isp string) bool {
	return 8+6+len(isp)+1+2 <= bolt.MaxKeySize
}

// parseMACKey reads an events-by-mac key: its Seq and ISP; ok is false
// for a malformed one.
func parseMACKey(k []byte) (seq uint64, isp []byte, ok bool) {
	if len(k) < 8+6+1+2 {
		return 0, nil, false
	}
	i := bytes.IndexByte(k[14:], 0)
	if i < 0 || len(k) != 14+i+3 {
		return 0, nil, false
	}
	return binary.BigEndian.Uint64(k)<<macSpanBits | uint64(binary.BigEndian.Uint16(k[14+i+1:])), k[14 : 14+i], true
}

// macSpanPrefix is the prefix of mac's events-by-mac keys in span, of
// every ISP and none.
func macSpanPrefix(span uint64, m MAC) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 32), span), m[:]...)
}

// macISPPrefix is the prefix of mac's events-by-mac keys of isp ("": no
// ISP's) in span.
func macISPPrefix(span uint64, m MAC, isp string) []byte {
	return append(append(macSpanPrefix(span, m), isp...), 0)
}

// eventMAC is the MAC and ISP of an encoded event, read from its head
// without decoding the rest (they follow the time and the kind); ok is
// false if the head does not decode.
func eventMAC(val []byte) (m MAC, isp string, ok bool) {
	d := decoder{b: val}
	d.version()
	d.time()
	d.take(d.uvarint()) // the kind
	m = d.mac()
	isp = d.str()
	return m, isp, d.err == nil
}

// eventMAC returns the MAC of the record's event.
func (r *jrec) eventMAC() (MAC, bool) {
	if r.ev != nil {
		return r.ev.MAC, true
	}
	m, _, ok := eventMAC(r.evVal)
	return m, ok
}

// putMACIndex writes in tx the events-by-mac entry of the event val
// stored under seq, whose ISPSeq is ispSeq (0: an event with no ISP).
// An event whose head does not decode (never one eventAt is given), that
// has no MAC or whose ISP's name is too long for a key (macKeyFits) gets
// none.
func putMACIndex(tx *bolt.Tx, val []byte, seq, ispSeq uint64) error {
	m, isp, ok := eventMAC(val)
	if !ok || m == (MAC{}) || !macKeyFits(isp) {
		return nil
	}
	var v []byte
	if ispSeq != 0 {
		v = binary.BigEndian.AppendUint64(make([]byte, 0, 8), ispSeq)
	}
	return tx.Bucket(bucketEventMACIndex).Put(eventMACKey(m, isp, seq), v)
}

// trimMACIndex deletes from idx the entry of the event val stored under
// seq, being trimmed: one delete by key, O(log n) (bbolt's Delete descends
// from the root, never walking the leaves this transaction emptied, as
// trimEvents' First would). An event whose head does not decode has lost
// its MAC: its entry, if any, stays, and the readers skip it (its event
// is gone).
func trimMACIndex(idx *bolt.Bucket, val []byte, seq uint64) error {
	m, isp, ok := eventMAC(val)
	if !ok || m == (MAC{}) || !macKeyFits(isp) {
		return nil
	}
	return idx.Delete(eventMACKey(m, isp, seq))
}

// EventsOfMAC returns up to limit events of the device mac (limit <= 0:
// all), ascending, with the log's bounds, all read in one transaction as
// EventsPage reads them, from the events-by-mac index (other devices'
// events are not looked at). With isp "" they are mac's events of every
// ISP and of none, after Seq after, each with its ISPSeq (0: no ISP), and
// the bounds are the log's; with an ISP, only that ISP's events of mac,
// after ISPSeq after, and the bounds are in its sequence (EventsPage).
// It reads the binding journal's pending events without a checkpoint, as
// EventsPage does.
func (s *Store) EventsOfMAC(mac MAC, isp string, after uint64, limit int) (evs []Event, oldest, newest uint64, err error) {
	return s.macEventsPage(mac, isp, after, false, limit)
}

// NewestEventsOfMAC is EventsOfMAC for mac's newest limit events (limit
// <= 0: all that the log holds), ascending: a device's recent history,
// however far back in the log it is.
func (s *Store) NewestEventsOfMAC(mac MAC, isp string, limit int) (evs []Event, oldest, newest uint64, err error) {
	return s.macEventsPage(mac, isp, 0, true, limit)
}

// macEventsPage is EventsOfMAC, or (fromNewest) NewestEventsOfMAC.
func (s *Store) macEventsPage(mac MAC, isp string, after uint64, fromNewest bool, limit int) (evs []Event, oldest, newest uint64, err error) {
	var bad []error
	err = s.viewEvents(func(tx *bolt.Tx, pend []*jrec) error {
		oldest, newest = s.boundsTx(tx, pend, isp)
		if !fromNewest && after >= newest {
			return nil
		}
		if fromNewest {
			evs, bad = macNewestTx(tx, mac, isp, limit)
		} else {
			evs, bad = macEventsTx(tx, mac, isp, after, limit)
		}
		n := len(evs)
		if fromNewest {
			// Every pending event bbolt does not hold is newer than
			// every event it holds (mergePending): all of mac's,
			// then the newest limit of the whole.
			evs, bad = mergePending(evs, bad, pend, isp, &mac, 0, 0)
		} else {
			evs, bad = mergePending(evs, bad, pend, isp, &mac, after, limit)
		}
		if isp == "" {
			pendingISPSeqs(evs[n:], pend)
		}
		if limit > 0 && len(evs) > limit {
			evs = evs[len(evs)-limit:]
		}
		return nil
	})
	if err == nil {
		err = errors.Join(bad...)
	}
	if err != nil {
		return evs, oldest, newest, fmt.Errorf("events of %s: %w", macString(mac), err)
	}
	return evs, oldest, newest, nil
}

// macEventsTx walks mac's events-by-mac entries in tx from the first
// event past after (Seq after+1; for an ISP, the Seq of its first event
// past ISPSeq after, which its events-by-isp entries give: an ISP's
// events are numbered in Seq order): up to limit events (limit <= 0: all),
// ascending, and an ErrCorrupt error for each malformed entry and each
// event that does not decode (macEntry).
func macEventsTx(tx *bolt.Tx, mac MAC, isp string, after uint64, limit int) (evs []Event, bad []error) {
	from := after + 1
	if isp != "" {
		prefix := append([]byte(isp), 0)
		c := tx.Bucket(bucketEventIndex).Cursor()
		found := false
		for k, v := c.Seek(eventIndexKey(isp, after+1)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if _, seq, ok := indexSeq(k, v, len(prefix)); ok {
				from, found = seq, true
				break
			}
		}
		if !found {
			return nil, nil // none of isp's events past after in bbolt
		}
	}
	bk := tx.Bucket(bucketEvents)
	c := tx.Bucket(bucketEventMACIndex).Cursor()
	for span, ok := from>>macSpanBits, true; ok && (limit <= 0 || len(evs) < limit); span, ok = nextMACSpan(c, span) {
		for _, en := range spanEntries(c, span, mac, isp) {
			if en.seq < from && !en.malformed {
				continue
			}
			if limit > 0 && len(evs) >= limit {
				break
			}
			e, ok, err := macEntry(bk, en, mac, isp)
			switch {
			case err != nil:
				bad = append(bad, err)
			case ok && (isp == "" || e.ISPSeq > after):
				evs = append(evs, e)
			}
		}
	}
	return evs, bad
}

// macNewestTx walks mac's events-by-mac entries in tx backwards from its
// newest: up to limit events (limit <= 0: all) of isp ("": any),
// returned ascending, and an ErrCorrupt error for each malformed entry
// and each event that does not decode (macEntry).
func macNewestTx(tx *bolt.Tx, mac MAC, isp string, limit int) (evs []Event, bad []error) {
	bk := tx.Bucket(bucketEvents)
	c := tx.Bucket(bucketEventMACIndex).Cursor()
	span, ok := lastMACSpan(c)
	for ; ok && (limit <= 0 || len(evs) < limit); span, ok = prevMACSpan(c, span) {
		ents := spanEntries(c, span, mac, isp)
		for i := len(ents) - 1; i >= 0 && (limit <= 0 || len(evs) < limit); i-- {
			e, ok, err := macEntry(bk, ents[i], mac, isp)
			switch {
			case err != nil:
				bad = append(bad, err)
			case ok:
				evs = append(evs, e)
			}
		}
	}
	slices.Reverse(evs)
	return evs, bad
}

// macEnt is an events-by-mac entry: its event's Seq (malformed: its
// span's first), its key and value.
type macEnt struct {
	seq       uint64
	k, v      []byte
	malformed bool
}

// spanEntries returns mac's events-by-mac entries in span, of isp (its
// prefix alone: another ISP's entries are not read) or, with isp "", of
// every ISP and none, in Seq order. A malformed key is placed at the
// span's start (macEntry reports it where it is read).
func spanEntries(c *bolt.Cursor, span uint64, mac MAC, isp string) []macEnt {
	prefix := macSpanPrefix(span, mac)
	if isp != "" {
		prefix = macISPPrefix(span, mac, isp)
	}
	var ents []macEnt
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		seq, _, ok := parseMACKey(k)
		if !ok {
			seq = span << macSpanBits
		}
		ents = append(ents, macEnt{seq, k, v, !ok})
	}
	if isp == "" {
		// By ISP, then Seq, in the bucket: the operator's read of the
		// device is in Seq order.
		slices.SortStableFunc(ents, func(a, b macEnt) int { return cmp.Compare(a.seq, b.seq) })
	}
	return ents
}

// nextMACSpan moves c to the first events-by-mac span after span that
// holds entries, and returns it (ok false: none).
func nextMACSpan(c *bolt.Cursor, span uint64) (next uint64, ok bool) {
	if span == math.MaxUint64>>macSpanBits {
		return 0, false
	}
	k, _ := c.Seek(binary.BigEndian.AppendUint64(nil, span+1))
	for k != nil && len(k) < 8 {
		k, _ = c.Next() // malformed: macEntry reports it where it is read
	}
	if k == nil {
		return 0, false
	}
	return binary.BigEndian.Uint64(k), true
}

// prevMACSpan moves c to the last events-by-mac span before span that
// holds entries, and returns it (ok false: none).
func prevMACSpan(c *bolt.Cursor, span uint64) (prev uint64, ok bool) {
	k, _ := c.Seek(binary.BigEndian.AppendUint64(nil, span))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	for k != nil && len(k) < 8 {
		k, _ = c.Prev()
	}
	if k == nil || binary.BigEndian.Uint64(k) >= span {
		return 0, false
	}
	return binary.BigEndian.Uint64(k), true
}

// lastMACSpan moves c to the newest events-by-mac span, and returns it
// (ok false: the index is empty).
func lastMACSpan(c *bolt.Cursor) (uint64, bool) {
	k, _ := c.Last()
	for k != nil && len(k) < 8 {
		k, _ = c.Prev()
	}
	if k == nil {
		return 0, false
	}
	return binary.BigEndian.Uint64(k), true
}

// macEntry reads the event of the events-by-mac entry en (in bk, the
// events bucket), with its ISPSeq, if it is one of isp's ("": any). ok is
// false for an entry to skip: an event of none for an ISP; an event gone
// (trimmed while it did not decode) or not of mac or not of the entry's
// ISP (a stale entry). err is an ErrCorrupt error for a malformed entry
// and for an event that does not decode.
func macEntry(bk *bolt.Bucket, en macEnt, mac MAC, isp string) (e Event, ok bool, err error) {
	_, kisp, ok := parseMACKey(en.k)
	if !ok || (len(en.v) != 0 && len(en.v) != 8) {
		return Event{}, false, corrupt(bucketEventMACIndex, en.k, errors.New("entry is not span, MAC, ISP, 0x00, low bits: 8-byte ISP sequence or nothing"))
	}
	if isp != "" && len(en.v) == 0 {
		return Event{}, false, nil // an event of no ISP: not decoded
	}
	key := seqKey(en.seq)
	val := bk.Get(key)
	if val == nil {
		return Event{}, false, nil
	}
	if e, err = decodeEvent(key, val); err != nil {
		return Event{}, false, err
	}
	if e.MAC != mac || e.ISP != string(kisp) || (isp != "" && e.ISP != isp) {
		return Event{}, false, nil
	}
	if len(en.v) == 8 && e.ISP != "" {
		e.ISPSeq = binary.BigEndian.Uint64(en.v)
	}
	return e, true, nil
}
