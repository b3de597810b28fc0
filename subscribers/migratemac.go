package subscribers

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ispmux/ispmux/internal/failpoint"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// The events-by-mac index of a migrated file (schema 9 or 10) is built
// after the migration's transaction, in transactions of macRebuildSpans
// spans of the log each (rebuildMACIndex), not in it: in the one
// transaction, bbolt held the whole new index as dirty nodes until its
// commit, and the ISPSeq of every event in a map beside them: 340-420 MB
// of RssAnon at the peak of a 1M-event migration (46 MB at 100k, 810-830
// MB and 18-29 s at 2M), growing with the events the log keeps
// (event_retention, up to 10M, and the hold of webhooks) rather than
// staying bounded. A transaction now holds the entries of 65,536 events
// at most: 39-47 MB at 1M events, 50 MB at 2M, 33-35 MB at 100k
// (docs/OPERATIONS.md, "Upgrades and rollbacks").
//
// The migration's transaction moves the schema byte to 12 (the current
// schema: 11 → 12 marks that a file may be mid-build) and leaves
// keyMACRebuild in the meta bucket: the Seq from which the log's events
// are still to be indexed. Each transaction of the rebuild indexes the
// next spans and moves the marker past them, both or neither (a crash
// between two leaves a file whose index is whole up to the marker); the
// last deletes it. Open runs the rebuild, before the binding journal's
// replay, whenever the marker is there: a crash in the middle is resumed
// at the next start, and an older ispmux refuses the file (schema 12) as
// it refuses a migrated one, the ispmux of schema 11 included, which
// would have taken the index for whole.

// keyMACRebuild (meta bucket): the events-by-mac index is being built;
// its value is the Seq (8 bytes) of the first event not yet indexed.
var keyMACRebuild = []byte("events-by-mac-rebuild-from")

// macRebuildSpans is the number of events-by-mac spans (4096 Seqs each)
// one transaction of rebuildMACIndex indexes. A variable for the tests.
var macRebuildSpans uint64 = 16

// macRebuildISPReads counts the events-by-isp entries the transactions
// of rebuildMACIndex read (TestMigrateMACIndexReadsISPIndexOnce: each
// once, not again from the ISP's start in every transaction, which a
// test of time does not tell from linear below millions of events).
var macRebuildISPReads atomic.Uint64

// startMACRebuild empties the events-by-mac index in tx and marks it to
// be built from the log's first event (the 9 → 10 and 10 → 11 steps).
func startMACRebuild(tx *bolt.Tx) error {
	if err := tx.DeleteBucket(bucketEventMACIndex); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
		return fmt.Errorf("delete bucket %s: %w", bucketEventMACIndex, err)
	}
	if _, err := tx.CreateBucket(bucketEventMACIndex); err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketEventMACIndex, err)
	}
	return tx.Bucket(bucketMeta).Put(keyMACRebuild, make([]byte, 8))
}

// macRebuildLogEvery is how often a long events-by-mac build logs its
// progress (Options.Logger). A variable for the tests.
var macRebuildLogEvery = 5 * time.Second

// rebuildMACIndex builds the events-by-mac index of a file marked by
// startMACRebuild, from its marker on, one transaction of macRebuildSpans
// spans at a time; it returns at once for a file without the marker.
// Every event that decodes and has a MAC gets its entry, with the ISPSeq
// its events-by-isp entry gives it (an event whose entry is missing or
// damaged gets none, and no ISP's read of the device shows it). The
// events-by-isp index is walked once for the whole rebuild (once more
// after a resume): each ISP's entries are in its ISPSeq order, which is
// its events' Seq order, so each transaction reads, per ISP, the entries
// of its own spans from where the last stopped.
//
// log (nil: none) is told the build starts, a resumed one (migrated is
// false: the marker was left by an earlier Open, which a crash or a
// start's timeout stopped) with how much of it that Open did, its
// progress every macRebuildLogEvery, and its end: a start that takes
// minutes says why.
func rebuildMACIndex(db *bolt.DB, log *slog.Logger, migrated bool) error {
	var marked bool
	var p macProgress
	if err := db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyMACRebuild)
		if marked = v != nil; marked && len(v) == 8 {
			p = progressOf(tx, binary.BigEndian.Uint64(v))
		}
		return nil
	}); err != nil || !marked {
		return err // a current file is only read (Open)
	}
	began := time.Now()
	if log != nil {
		if migrated {
			log.Info("building the events-by-MAC index of the migrated store", "events", p.total)
		} else {
			log.Info("resuming the events-by-MAC index build an earlier start left unfinished",
				"indexed", p.done(p.marker), "events", p.total)
		}
	}
	logged := began
	var pos map[string][]byte // per ISP: its next events-by-isp key (nil: no more)
	for {
		next, more, err := rebuildMACChunk(db, &pos)
		if err != nil {
			return fmt.Errorf("build the %s index: %w", bucketEventMACIndex, err)
		}
		if !more {
			if log != nil {
				log.Info("events-by-MAC index built", "events", p.total, "took", time.Since(began).Round(time.Millisecond))
			}
			return nil
		}
		if now := time.Now(); log != nil && now.Sub(logged) >= macRebuildLogEvery {
			log.Info("building the events-by-MAC index", "indexed", p.done(next), "events", p.total)
			logged = now
		}
		failpoint.Hit(failpoint.MigrateAfterChunk)
	}
}

// macProgress is how far an events-by-mac build is, for its log lines,
// in events counted as the log's trimming counts them: by Seq, the
// numbers a restored copy skipped left out (virtualSeq).
type macProgress struct {
	first, marker uint64 // the log's oldest Seq; the marker's
	total         uint64 // the events from first to the newest
	gaps          []seqGap
}

// progressOf reads the log's bounds in tx, the marker at marker.
func progressOf(tx *bolt.Tx, marker uint64) macProgress {
	p := macProgress{marker: marker, gaps: readGaps(tx)}
	c := tx.Bucket(bucketEvents).Cursor()
	first, _ := c.First()
	last, _ := c.Last()
	if len(first) != 8 || len(last) != 8 {
		return p // an empty log (or keys not a Seq: no count)
	}
	p.first = binary.BigEndian.Uint64(first)
	p.total = p.done(binary.BigEndian.Uint64(last) + 1)
	return p
}

// done is the count of the log's events before Seq next: those the
// build has indexed when next is its marker.
func (p macProgress) done(next uint64) uint64 {
	if next <= p.first {
		return 0
	}
	var before uint64 // the numbers given out before the oldest event
	if p.first > 0 {
		before = virtualSeq(p.gaps, p.first-1)
	}
	return virtualSeq(p.gaps, next-1) - before
}

// rebuildMACChunk is one transaction of rebuildMACIndex: the spans from
// the marker on indexed and the marker moved past them (to next), or,
// with no event left, the marker deleted. It reports whether events are
// left. *pos is each ISP's next events-by-isp key (indexMACSpans), set at
// the first call.
func rebuildMACChunk(db *bolt.DB, pos *map[string][]byte) (next uint64, more bool, err error) {
	err = update(db, func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		v := meta.Get(keyMACRebuild)
		if v == nil {
			return nil
		}
		if len(v) != 8 {
			return corrupt(bucketMeta, keyMACRebuild, errors.New("not an 8-byte Seq"))
		}
		if *pos == nil {
			*pos = ispIndexStarts(tx)
		}
		var ok bool
		var err error
		next, ok, err = indexMACSpans(tx, binary.BigEndian.Uint64(v), *pos)
		if err != nil {
			return err
		}
		if !ok {
			return meta.Delete(keyMACRebuild)
		}
		more = true
		return meta.Put(keyMACRebuild, binary.BigEndian.AppendUint64(nil, next))
	})
	return next, more, err
}

// ispIndexStarts returns the first events-by-isp key of each ISP the
// index holds events of (a seek per ISP).
func ispIndexStarts(tx *bolt.Tx) map[string][]byte {
	pos := map[string][]byte{}
	c := tx.Bucket(bucketEventIndex).Cursor()
	for k, _ := c.First(); k != nil; {
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			k, _ = c.Next() // malformed: no ISP's
			continue
		}
		pos[string(k[:i])] = bytes.Clone(k[:i+1])
		k, _ = c.Seek(append(bytes.Clone(k[:i]), 1)) // the next ISP's
	}
	return pos
}

// indexMACSpans puts in tx the events-by-mac entries of the log's events
// from Seq from on, in the span of the first of them and the
// macRebuildSpans-1 after it (spans with no event cost nothing: a
// restored copy's jump is skipped). It returns the Seq of the first event
// left for the next transaction; ok is false when none is left. pos is
// rebuildMACIndex's, moved past the entries read.
func indexMACSpans(tx *bolt.Tx, from uint64, pos map[string][]byte) (next uint64, ok bool, err error) {
	ev := tx.Bucket(bucketEvents).Cursor()
	k, v := ev.Seek(seqKey(from))
	for k != nil && len(k) != 8 {
		k, v = ev.Next()
	}
	if k == nil {
		return 0, false, nil
	}
	first := binary.BigEndian.Uint64(k)
	end := first>>macSpanBits + macRebuildSpans // the first span not indexed

	// The ISPSeqs of these spans' events, from each ISP's entries.
	type ispEvent struct {
		isp string
		seq uint64
	}
	ispSeqOf := map[ispEvent]uint64{}
	events := tx.Bucket(bucketEvents)
	c := tx.Bucket(bucketEventIndex).Cursor()
	for isp, p := range pos {
		if p == nil {
			continue
		}
		prefix := p[:len(isp)+1]
		ik, iv := c.Seek(p)
		for ; ik != nil && bytes.HasPrefix(ik, prefix); ik, iv = c.Next() {
			macRebuildISPReads.Add(1)
			n, seq, ok := indexSeq(ik, iv, len(prefix))
			if !ok {
				continue
			}
			if seq>>macSpanBits >= end {
				// The ISP's first entry past these spans, unless
				// its Seq is damaged (no event of the ISP there):
				// stopping at that one would leave every later
				// event of the ISP without its ISPSeq.
				if _, eisp, ok := eventMAC(events.Get(seqKey(seq))); ok && eisp == isp {
					break
				}
				continue
			}
			if seq >= first {
				ispSeqOf[ispEvent{isp, seq}] = n
			}
		}
		if ik != nil && bytes.HasPrefix(ik, prefix) {
			pos[isp] = bytes.Clone(ik)
		} else {
			pos[isp] = nil
		}
	}

	// One span's entries (4096 at most) are sorted and put before the
	// next span's are read: keys in order (a random order would copy
	// growing nodes: doc.go).
	type entry struct{ k, v []byte }
	var entries []entry
	idx := tx.Bucket(bucketEventMACIndex)
	flush := func() error {
		slices.SortFunc(entries, func(a, b entry) int { return bytes.Compare(a.k, b.k) })
		for _, en := range entries {
			if err := idx.Put(en.k, en.v); err != nil {
				return fmt.Errorf("bucket %s: %w", bucketEventMACIndex, err)
			}
		}
		entries = entries[:0]
		return nil
	}
	span := first >> macSpanBits
	for ; k != nil; k, v = ev.Next() {
		if len(k) != 8 {
			continue
		}
		seq := binary.BigEndian.Uint64(k)
		if seq>>macSpanBits >= end {
			return seq, true, flush()
		}
		e, err := decodeEvent(k, v)
		if err != nil || e.MAC == (MAC{}) || !macKeyFits(e.ISP) {
			continue
		}
		if s := seq >> macSpanBits; s != span {
			if err := flush(); err != nil {
				return 0, false, err
			}
			span = s
		}
		var iv []byte
		if n, ok := ispSeqOf[ispEvent{e.ISP, seq}]; ok && e.ISP != "" {
			iv = binary.BigEndian.AppendUint64(nil, n)
		}
		entries = append(entries, entry{eventMACKey(e.MAC, e.ISP, seq), iv})
	}
	return 0, false, flush()
}
