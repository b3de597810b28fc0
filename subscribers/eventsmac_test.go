package subscribers

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// macOracle is what EventsOfMAC should return for mac and isp ("": any):
// the operator's whole page (every event, with its ISPSeq), filtered.
func macOracle(t *testing.T, s *Store, mac MAC, isp string) []Event {
	t.Helper()
	all, _, _, err := s.EventsPage("", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []Event
	for _, e := range all {
		if e.MAC == mac && (isp == "" || e.ISP == isp) {
			out = append(out, e)
		}
	}
	return out
}

// checkMACReads checks EventsOfMAC and NewestEventsOfMAC of mac, for the
// operator and for each ISP, against macOracle: the whole list, paged
// forward by 2 from 0, the newest 1, 2 and all, and the bounds, which are
// EventsPage's.
func checkMACReads(t *testing.T, s *Store, what string, mac MAC) {
	t.Helper()
	for _, isp := range []string{"", "alpha", "beta"} {
		want := macOracle(t, s, mac, isp)
		_, wo, wn, err := s.EventsPage(isp, 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		next := func(e Event) uint64 {
			if isp == "" {
				return e.Seq
			}
			return e.ISPSeq
		}
		got, oldest, newest, err := s.EventsOfMAC(mac, isp, 0, 0)
		if err != nil || !slices.Equal(got, want) || oldest != wo || newest != wn {
			t.Errorf("%s: EventsOfMAC(%s, %q) = %+v, %d..%d, %v\nwant %+v, %d..%d", what, macString(mac), isp, got, oldest, newest, err, want, wo, wn)
			continue
		}
		var paged []Event
		for after := uint64(0); ; {
			page, _, _, err := s.EventsOfMAC(mac, isp, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			paged = append(paged, page...)
			after = next(page[len(page)-1])
		}
		if !slices.Equal(paged, want) {
			t.Errorf("%s: EventsOfMAC(%s, %q) paged by 2 = %+v\nwant %+v", what, macString(mac), isp, paged, want)
		}
		for _, n := range []int{1, 2, 0} {
			w := want
			if n > 0 && len(w) > n {
				w = w[len(w)-n:]
			}
			got, oldest, newest, err := s.NewestEventsOfMAC(mac, isp, n)
			if err != nil || !slices.Equal(got, w) || oldest != wo || newest != wn {
				t.Errorf("%s: NewestEventsOfMAC(%s, %q, %d) = %+v, %d..%d, %v\nwant %+v, %d..%d", what, macString(mac), isp, n, got, oldest, newest, err, w, wo, wn)
			}
		}
	}
}

// TestEventsOfMAC: a device's events, of two ISPs and of none, among
// other devices' and events without a MAC, written through bbolt
// transactions (AddEvent) and through the binding journal
// (CommitBindingEvent: pending, then checkpointed), read whole, paged,
// newest first, for the operator (every event, with its ISPSeq) and for
// each ISP (its own, in its own sequence); and after a reopen.
func TestEventsOfMAC(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	dev, other := mac(7), mac(8)
	for i := range 30 {
		isp := []string{"alpha", "beta", ""}[i%3]
		m := []MAC{dev, other, dev, {}}[i%4]
		// Journal records between AddEvents (each of which applies
		// them: checkpointTx), and the last ones left pending.
		journal := isp != "" && m != (MAC{})
		if (i%5 == 0 || i >= 24) && journal {
			b := testBinding(i)
			b.MAC, b.ISP = m, isp
			if _, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: m, ISP: isp}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if i >= 24 {
			continue
		}
		if _, err := s.AddEvent(Event{Kind: EventRenewed, MAC: m, ISP: isp, Reason: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if s.pendingN.Load() == 0 {
		t.Fatal("no journal record pending: the test reads none")
	}
	if n := len(macOracle(t, s, dev, "")); n < 10 {
		t.Fatalf("the device has %d events", n)
	}
	checkMACReads(t, s, "pending", dev)
	checkMACReads(t, s, "pending", other)
	checkMACReads(t, s, "pending", mac(9)) // none
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	checkMACReads(t, s, "checkpointed", dev)
	checkEventIndex(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkMACReads(t, s, "reopened", dev)
	// An after past the newest: nothing.
	if evs, _, _, err := s.EventsOfMAC(dev, "", ^uint64(0), 0); err != nil || len(evs) != 0 {
		t.Errorf("EventsOfMAC after the newest = %+v, %v", evs, err)
	}
}

// TestEventsOfMACTrimmed: the log trimmed by count and by age, through
// bbolt transactions and through checkpoints of the journal, takes its
// events' events-by-mac entries with them (checkEventIndex: one entry
// per event with a MAC, no more), and a device's reads hold only the
// events kept.
func TestEventsOfMACTrimmed(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, EventRetention: 64})
	for i := range 400 {
		m := mac(i % 5)
		isp := []string{"alpha", "beta"}[i%2]
		if i%3 == 0 {
			b := testBinding(i)
			b.MAC, b.ISP = m, isp
			if _, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: m, ISP: isp}); err != nil {
				t.Fatal(err)
			}
		} else if _, err := s.AddEvent(Event{Kind: EventRenewed, MAC: m, ISP: isp}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	checkEventIndex(t, s)
	checkMACReads(t, s, "trimmed by count", mac(1))
	// By age: one event dated past the maximum age of every other.
	if _, err := s.AddEvent(Event{Kind: EventRenewed, MAC: mac(1), ISP: "alpha", Time: time.Now().Add(DefaultEventMaxAge + time.Hour)}); err != nil {
		t.Fatal(err)
	}
	checkEventIndex(t, s)
	for i := range 5 {
		want := 0
		if i == 1 {
			want = 1
		}
		if evs, _, _, err := s.NewestEventsOfMAC(mac(i), "", 0); err != nil || len(evs) != want {
			t.Errorf("%s after the age trim: %d events, %v; want %d", macString(mac(i)), len(evs), err, want)
		}
	}
}

// TestEventsOfMACDamaged: an event that does not decode is reported
// (ErrCorrupt) beside the others; a malformed entry too; an entry whose
// event is another device's (stale) or gone is skipped.
func TestEventsOfMACDamaged(t *testing.T) {
	numberFromOne(t)
	s, _ := openTest(t, Options{NoSync: true})
	dev := mac(7)
	for i := range 6 {
		m := dev
		if i%2 == 1 {
			m = mac(8)
		}
		if _, err := s.AddEvent(Event{Kind: EventRenewed, MAC: m, ISP: "alpha"}); err != nil {
			t.Fatal(err)
		}
	}
	// dev's events: Seq 1, 3, 5 (alpha's 1, 3, 5).
	putRaw(t, s, bucketEvents, seqKey(3), []byte{3, 0xff})                                                   // does not decode
	putRaw(t, s, bucketEventMACIndex, eventMACKey(dev, "alpha", 2), binary.BigEndian.AppendUint64(nil, 2))   // stale: seq 2 is mac 8's
	putRaw(t, s, bucketEventMACIndex, eventMACKey(dev, "alpha", 40), binary.BigEndian.AppendUint64(nil, 40)) // no such event
	putRaw(t, s, bucketEventMACIndex, append(eventMACKey(dev, "alpha", 4), 0), nil)                          // malformed key
	for _, isp := range []string{"", "alpha"} {
		evs, _, _, err := s.EventsOfMAC(dev, isp, 0, 0)
		var seqs []uint64
		for _, e := range evs {
			seqs = append(seqs, e.Seq)
		}
		if !slices.Equal(seqs, []uint64{1, 5}) || countCorrupt(err) != 2 {
			t.Errorf("EventsOfMAC(%q): Seqs %v, %v; want 1 5 and 2 corrupt", isp, seqs, err)
		}
		evs, _, _, err = s.NewestEventsOfMAC(dev, isp, 1)
		if len(evs) != 1 || evs[0].Seq != 5 || err != nil {
			t.Errorf("NewestEventsOfMAC(%q, 1) = %+v, %v; want Seq 5 (the damage is older)", isp, evs, err)
		}
	}
}

// TestMigrateMACIndexFixtures: the committed schema-1 and schema-2 files
// (testdata) get their events-by-mac index: every device's events read
// back as the log has them, an ISP's numbered by their Seq (their ISPSeq
// since schema 9); a second open changes nothing.
func TestMigrateMACIndexFixtures(t *testing.T) {
	for name, open := range map[string]func(*testing.T) string{"v1": openV1Copy, "v2": openV2Copy} {
		t.Run(name, func(t *testing.T) {
			path := open(t)
			s, err := Open(path, Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			all, err := s.Events(0, 0)
			if err != nil || len(all) == 0 {
				t.Fatalf("Events = %d, %v", len(all), err)
			}
			macs := map[MAC]bool{}
			for _, e := range all {
				if e.MAC != (MAC{}) {
					macs[e.MAC] = true
				}
			}
			for m := range macs {
				checkMACReads(t, s, name, m)
				for _, e := range macOracle(t, s, m, "") {
					if e.ISP != "" && e.ISPSeq != e.Seq {
						t.Errorf("%s: event %d of %s has ISPSeq %d, want its Seq", name, e.Seq, macString(m), e.ISPSeq)
					}
				}
			}
			checkEventIndex(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			sum := fileSum(t, path)
			if s, err = Open(path, Options{NoSync: true}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if fileSum(t, path) != sum {
				t.Error("a second open of the migrated file changed it")
			}
		})
	}
}

// TestMigrateMACIndexV9: a file of schema 9 (the current one without
// events-by-mac), with events of two ISPs, of none and without a MAC, and
// binding journal records its ispmux left unapplied (a crash): the
// migration indexes the file's events with their ISPSeqs, the replay the
// journal's, and the index then follows appends and trims.
func TestMigrateMACIndexV9(t *testing.T) {
	numberFromOne(t)
	s, path := openTest(t, Options{NoSync: true})
	for i := range 30 {
		isp := []string{"alpha", "beta", ""}[i%3]
		m := mac(i % 4)
		if i%7 == 6 {
			m = MAC{}
		}
		if _, err := s.AddEvent(Event{Kind: EventRenewed, MAC: m, ISP: isp}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	downgradeToV9(t, path)
	// Its journal: three records past the file's newest event (Seq 30).
	jr, _, err := openJournal(path, true)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*jrec
	for i, isp := range []string{"alpha", "beta", "alpha"} {
		b := testBinding(i)
		b.MAC, b.ISP = mac(1), isp
		e := Event{Seq: uint64(31 + i), Kind: EventBound, ISP: isp, MAC: b.MAC, IP: b.IP, Time: time.Now()}
		recs = append(recs, &jrec{lsn: uint64(1 + i), key: bindingKey(b.Access, b.VLAN, b.MAC), val: encodeBinding(&b), ev: &e, evVal: encodeEvent(&e)})
	}
	if err := errors.Join(jr.append(recs), jr.close()); err != nil {
		t.Fatal(err)
	}

	if s, err = Open(path, Options{NoSync: true, EventRetention: 32}); err != nil {
		t.Fatalf("Open of a schema-9 file: %v", err)
	}
	defer func() { s.Close() }()
	if v := rawSchemaOf(t, s); v != schemaVersion {
		t.Errorf("schema after migration = %d, want %d", v, schemaVersion)
	}
	if evs, _, _, err := s.NewestEventsOfMAC(mac(1), "alpha", 2); err != nil || len(evs) != 2 || evs[0].Seq != 31 || evs[1].Seq != 33 {
		t.Errorf("mac 1's newest alpha events: %+v, %v; want the journal's Seq 31 and 33", evs, err)
	}
	for i := range 4 {
		checkMACReads(t, s, "migrated", mac(i))
	}
	checkEventIndex(t, s)
	// Appends that trim (retention 32, no slack below 64).
	for i := range 5 {
		if _, err := s.AddEvent(Event{Kind: EventRenewed, MAC: mac(i % 4), ISP: "beta"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 {
		checkMACReads(t, s, "migrated, trimmed", mac(i))
	}
	checkEventIndex(t, s)
}

// rawSchemaOf is the schema byte of s's file.
func rawSchemaOf(t *testing.T, s *Store) byte {
	t.Helper()
	var v []byte
	s.view(func(tx *bolt.Tx) error {
		v = append(v, tx.Bucket(bucketMeta).Get(keySchema)...)
		return nil
	})
	if len(v) != 1 {
		t.Fatalf("schema %x", v)
	}
	return v[0]
}

// TestEventsOfMACSpans: a device's events in several events-by-mac spans
// (4096 Seqs each), across the jump of a restored copy (2^32 numbers that
// hold no span), read whole, paged and newest first; a log trimmed past
// whole spans keeps one entry per event.
func TestEventsOfMACSpans(t *testing.T) {
	numberFromOne(t)
	s, _ := openTest(t, Options{NoSync: true, EventRetention: 9000})
	write := func(s *Store, n int) {
		t.Helper()
		for i := 0; i < n; i += 2000 {
			var w TenantWrite
			for j := i; j < i+2000 && j < n; j++ {
				w.Events = append(w.Events, Event{Kind: EventRenewed, MAC: mac(j % 400), ISP: []string{"alpha", "beta", ""}[j%3]})
			}
			if _, err := s.ApplyTenant(w); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(s, 12000) // Seq 1..12000: spans 0..2, the first 3000 trimmed
	checkEventIndex(t, s)
	for _, m := range []MAC{mac(3), mac(7)} {
		checkMACReads(t, s, "spans", m)
	}
	c, _ := restoreCopy(t, s, Options{NoSync: true, EventRetention: 9000})
	write(c, 5000) // past the jump: 3000 more trimmed
	for i := range 3 {
		b := testBinding(i)
		b.MAC = mac(7)
		if _, err := c.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: b.ISP}); err != nil {
			t.Fatal(err)
		}
	}
	if evs, _, _, err := c.NewestEventsOfMAC(mac(7), "", 0); err != nil || len(evs) < 20 || evs[0].Seq >= 1<<32 || evs[len(evs)-1].Seq < 1<<32 {
		t.Fatalf("mac 7's events in the copy: %d, %v; want its events before and after the jump", len(evs), err)
	}
	for _, m := range []MAC{mac(3), mac(7)} {
		checkMACReads(t, c, "across the jump", m)
	}
	if err := c.checkpoint(); err != nil {
		t.Fatal(err)
	}
	checkEventIndex(t, c)
}

// TestMigrateMACIndexSpans: the 9 → 10 migration over a log of several
// events-by-mac spans (it sorts and writes one span at a time) indexes
// every event, each with its ISPSeq, and reads back whole.
func TestMigrateMACIndexSpans(t *testing.T) {
	const n = 3*(1<<macSpanBits) + 100
	s, path := openTest(t, Options{NoSync: true, EventRetention: n})
	for i := 0; i < n; i += 1000 {
		var w TenantWrite
		for j := i; j < min(i+1000, n); j++ {
			w.Events = append(w.Events, Event{Kind: EventRenewed, MAC: mac(j % 97), ISP: []string{"alpha", "beta", ""}[j%3]})
		}
		if _, err := s.ApplyTenant(w); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	downgradeToV9(t, path)
	s, err := Open(path, Options{NoSync: true, EventRetention: n})
	if err != nil {
		t.Fatalf("Open of a schema-9 file: %v", err)
	}
	defer s.Close()
	checkEventIndex(t, s)
	for _, i := range []int{0, 1, 50, 96} {
		checkMACReads(t, s, "migrated spans", mac(i))
	}
}

// downgradeToV9 makes the closed store at path what schema 9 wrote: no
// events-by-mac bucket, schema byte 9.
func downgradeToV9(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketEventMACIndex); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keySchema, []byte{9})
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
}

// TestMigratedFrom: Open says which schema it migrated a file from (the
// start logs it: an older ispmux refuses the file from then on), and
// nothing for a new file or one already current.
func TestMigratedFrom(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	if got := s.MigratedFrom(); got != 0 {
		t.Errorf("a new file: MigratedFrom = %d, want 0", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	downgradeToV9(t, path)
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.MigratedFrom(); got != 9 {
		t.Errorf("a schema-9 file: MigratedFrom = %d, want 9", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.MigratedFrom(); got != 0 {
		t.Errorf("reopened after the migration: MigratedFrom = %d, want 0", got)
	}
}

// downgradeToV10 rewrites the store at path as schema 10 wrote it: the
// events-by-mac keys without the ISP (span, MAC, low bits).
func downgradeToV10(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		type kv struct{ k, v []byte }
		var old []kv
		if err := tx.Bucket(bucketEventMACIndex).ForEach(func(k, v []byte) error {
			seq, _, ok := parseMACKey(k)
			if !ok {
				return fmt.Errorf("malformed key %x", k)
			}
			k10 := append(bytes.Clone(k[:14]), byte(seq>>8&0x0f), byte(seq))
			old = append(old, kv{k10, bytes.Clone(v)})
			return nil
		}); err != nil {
			return err
		}
		if err := tx.DeleteBucket(bucketEventMACIndex); err != nil {
			return err
		}
		bk, err := tx.CreateBucket(bucketEventMACIndex)
		if err != nil {
			return err
		}
		for _, e := range old {
			if err := bk.Put(e.k, e.v); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchema, []byte{10})
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateMACIndexV10: a schema-10 file's events-by-mac index (keys
// without the ISP) is built again with the ISP in its keys: every entry
// as a new store writes it, every device's events read back by the
// operator and by each ISP as before, and the file at the current schema.
func TestMigrateMACIndexV10(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	for i := range 50 {
		isp := []string{"alpha", "beta", ""}[i%3]
		if _, err := s.AddEvent(Event{Kind: EventRenewed, MAC: mac(1 + i%4), ISP: isp}); err != nil {
			t.Fatal(err)
		}
	}
	type read struct {
		n    int
		seqs []uint64
	}
	reads := func(s *Store) map[string]read {
		out := map[string]read{}
		for m := range 4 {
			for _, isp := range []string{"", "alpha", "beta"} {
				evs, _, _, err := s.EventsOfMAC(mac(1+m), isp, 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				r := read{n: len(evs)}
				for _, e := range evs {
					r.seqs = append(r.seqs, e.Seq, e.ISPSeq)
				}
				out[fmt.Sprint(m, isp)] = r
			}
		}
		return out
	}
	want := reads(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	downgradeToV10(t, path)
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.MigratedFrom(); got != 10 {
		t.Errorf("MigratedFrom = %d, want 10", got)
	}
	if got := reads(s); !reflect.DeepEqual(got, want) {
		t.Errorf("after the migration: %v, want %v", got, want)
	}
	checkEventIndex(t, s)
	if v := rawSchemaOf(t, s); v != schemaVersion {
		t.Errorf("schema after migration = %d, want %d", v, schemaVersion)
	}
}

// TestEventsOfMACReadsOnlyOwnEntries: an ISP's read of a device looks at
// its own events-by-mac entries alone. Alpha's 200 events of the device
// are made undecodable: beta's read of it reports no damage (it did not
// read them) and takes no more index entries than a read of a device
// with no events; the operator's read reports all 200. Before schema 11,
// beta's read decoded every one of alpha's events to drop it, and its
// time told beta that alpha's device was there and how busy (a security
// review: 563 µs against 1.7 µs for 2,000 events).
func TestEventsOfMACReadsOnlyOwnEntries(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	dev := mac(7)
	var alpha []uint64
	for i := range 201 {
		isp := "alpha"
		if i == 200 {
			isp = "beta"
		}
		e, err := s.AddEvent(Event{Kind: EventRenewed, MAC: dev, ISP: isp})
		if err != nil {
			t.Fatal(err)
		}
		if isp == "alpha" {
			alpha = append(alpha, e.Seq)
		}
	}
	for _, seq := range alpha {
		putRaw(t, s, bucketEvents, seqKey(seq), []byte{3, 0xff}) // does not decode
	}
	evs, _, _, err := s.EventsOfMAC(dev, "beta", 0, 0)
	if err != nil || len(evs) != 1 || evs[0].ISP != "beta" {
		t.Errorf("beta's read of the device: %d events, %v; want its one, no damage seen", len(evs), err)
	}
	evs, _, _, err = s.NewestEventsOfMAC(dev, "beta", 10)
	if err != nil || len(evs) != 1 {
		t.Errorf("beta's newest of the device: %d events, %v; want its one, no damage seen", len(evs), err)
	}
	if _, _, _, err := s.EventsOfMAC(dev, "", 0, 0); countCorrupt(err) != len(alpha) {
		t.Errorf("the operator's read: %d corrupt, want %d", countCorrupt(err), len(alpha))
	}
}
