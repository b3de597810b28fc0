package subscribers

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/crashtest"
	"github.com/ispmux/ispmux/internal/failpoint"
	bolt "go.etcd.io/bbolt"
)

// macChunkEvents is the log of the chunked build's tests: five spans and
// a part, of 40 devices, of alpha, beta and none.
const macChunkEvents = 5<<macSpanBits + 300

// seedV10 writes a store of macChunkEvents events at path and makes it
// schema 10 (downgradeToV10); it returns every device's reads, by the
// operator and by each ISP, as the store answered them before.
func seedV10(t *testing.T, path string) map[string][]uint64 {
	t.Helper()
	s, err := Open(path, Options{NoSync: true, EventRetention: macChunkEvents})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < macChunkEvents; i += 5000 {
		var w TenantWrite
		for j := i; j < min(i+5000, macChunkEvents); j++ {
			w.Events = append(w.Events, Event{Kind: EventRenewed, MAC: mac(j % 40), ISP: []string{"alpha", "beta", ""}[j%3]})
		}
		if _, err := s.ApplyTenant(w); err != nil {
			t.Fatal(err)
		}
	}
	want := macReads(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	downgradeToV10(t, path)
	return want
}

// macReads is every device's EventsOfMAC of seedV10's log: Seq and
// ISPSeq of each event.
func macReads(t *testing.T, s *Store) map[string][]uint64 {
	t.Helper()
	out := map[string][]uint64{}
	for m := range 40 {
		for _, isp := range []string{"", "alpha", "beta"} {
			evs, _, _, err := s.EventsOfMAC(mac(m), isp, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			var r []uint64
			for _, e := range evs {
				r = append(r, e.Seq, e.ISPSeq)
			}
			out[fmt.Sprint(m, isp)] = r
		}
	}
	return out
}

// macRebuildFrom reads the closed store's marker (ok false: none) and
// schema byte.
func macRebuildFrom(t *testing.T, path string) (from uint64, ok bool, schema byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyMACRebuild); len(v) == 8 {
			from, ok = binary.BigEndian.Uint64(v), true
		}
		schema = meta.Get(keySchema)[0]
		return nil
	})
	return from, ok, schema
}

// checkMigrated opens the store at path and checks the migration done:
// the marker gone, the current schema, every entry as a new store writes it, and
// the reads as before. It returns what the Open logged (Options.Logger).
func checkMigrated(t *testing.T, path string, want map[string][]uint64) (logged string) {
	t.Helper()
	var log bytes.Buffer
	s, err := Open(path, Options{NoSync: true, EventRetention: macChunkEvents, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := macReads(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("reads after the migration differ from before")
	}
	checkEventIndex(t, s)
	s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyMACRebuild); v != nil {
			t.Errorf("marker %x left after Open", v)
		}
		return nil
	})
	if v := rawSchemaOf(t, s); v != schemaVersion {
		t.Errorf("schema %d, want %d", v, schemaVersion)
	}
	return log.String()
}

// TestMigrateMACIndexResumes: the events-by-mac build of a migrated file
// stopped after k of its transactions (one span each here), as a crash
// leaves it: the file is at the current schema with the marker at the first event
// of span k, the index holds the entries of the spans before it alone,
// and the next Open builds the rest, every read as before.
func TestMigrateMACIndexResumes(t *testing.T) {
	numberFromOne(t)
	defer func(n uint64) { macRebuildSpans = n }(macRebuildSpans)
	macRebuildSpans = 1
	for _, k := range []int{0, 1, 3, 5} {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			want := seedV10(t, path)
			migrateStopped(t, path, k)
			got, ok, schema := macRebuildFrom(t, path)
			// k = 0: the migration's 0, from the log's start.
			if wantFrom := uint64(k) << macSpanBits; !ok || got != wantFrom || schema != schemaVersion {
				t.Errorf("after %d transactions: marker %d (%v), schema %d; want %d, %d", k, got, ok, schema, wantFrom, schemaVersion)
			}
			checkResumeLogged(t, checkMigrated(t, path, want), k)
		})
	}
}

// checkResumeLogged checks that the Open that resumed an events-by-mac
// build stopped after k transactions (one span each) of seedV10's log
// said so, with the events the stopped Open indexed (those before span
// k: Seq 0 is not an event), and that the build ended, in the log lines
// it wrote, logged.
func checkResumeLogged(t *testing.T, logged string, k int) {
	t.Helper()
	indexed := 0
	if k > 0 {
		indexed = k<<macSpanBits - 1
	}
	want := fmt.Sprintf(`msg="resuming the events-by-MAC index build an earlier start left unfinished" indexed=%d events=%d`, indexed, macChunkEvents)
	if !strings.Contains(logged, want) || !strings.Contains(logged, `msg="events-by-MAC index built" events=`+fmt.Sprint(macChunkEvents)) {
		t.Errorf("the resuming Open logged:\n%s\nwant a line with %s, and the build's end", logged, want)
	}
	if strings.Contains(logged, "of the migrated store") {
		t.Errorf("a resumed build logged as a migration's:\n%s", logged)
	}
}

// TestMigrateMACIndexLogs: the Open that migrates a file of schema 10
// says it builds the index, how far it is every macRebuildLogEvery (here
// every transaction: a line per span done, the events before the next
// span), and that it is done; at the default every 5 s, a build of a
// fraction of a second logs no progress line.
func TestMigrateMACIndexLogs(t *testing.T) {
	numberFromOne(t) // a file of schema 10 was made by a build that numbered from 1
	defer func(n uint64, every time.Duration) { macRebuildSpans, macRebuildLogEvery = n, every }(macRebuildSpans, macRebuildLogEvery)
	macRebuildSpans = 1
	for _, every := range []time.Duration{0, macRebuildLogEvery} {
		t.Run(every.String(), func(t *testing.T) {
			macRebuildLogEvery = every
			path := filepath.Join(t.TempDir(), "state.db")
			want := seedV10(t, path)
			logged := checkMigrated(t, path, want)
			lines := []string{fmt.Sprintf(`msg="building the events-by-MAC index of the migrated store" events=%d`, macChunkEvents)}
			if every == 0 {
				for k := 1; k<<macSpanBits < macChunkEvents; k++ {
					lines = append(lines, fmt.Sprintf(`msg="building the events-by-MAC index" indexed=%d events=%d`, k<<macSpanBits-1, macChunkEvents))
				}
			}
			lines = append(lines, fmt.Sprintf(`msg="events-by-MAC index built" events=%d took=`, macChunkEvents))
			var got []string
			for _, ln := range strings.Split(strings.TrimSpace(logged), "\n") {
				if i := strings.Index(ln, "msg="); i >= 0 {
					got = append(got, ln[i:])
				}
			}
			if len(got) != len(lines) {
				t.Fatalf("logged:\n%s\nwant %d lines:\n%s", logged, len(lines), strings.Join(lines, "\n"))
			}
			for i := range lines {
				if !strings.HasPrefix(got[i], lines[i]) {
					t.Errorf("line %d: %s\nwant %s", i, got[i], lines[i])
				}
			}
		})
	}
}

const migrateCrashEnv = "SUBSCRIBERS_MIGRATE_CRASH_CHILD"

// TestMigrateMACIndexCrash: ispmux SIGKILLed at the first start after an
// upgrade from schema 10, after 1, 2 and 5 of the events-by-mac build's
// transactions (one span each): the restart finds the marker where the
// crash left it (the work before it kept: a crash does not start the
// build over) and completes the build, every device's reads as before
// the upgrade. With the build in the migration's one transaction
// (before), the child was never killed at the point: it has none.
func TestMigrateMACIndexCrash(t *testing.T) {
	if dir := os.Getenv(migrateCrashEnv); dir != "" {
		macRebuildSpans = 1
		s, err := Open(filepath.Join(dir, "state.db"), Options{EventRetention: macChunkEvents})
		if err == nil {
			s.Close()
		}
		t.Fatalf("child: the failpoint was not hit (Open: %v)", err)
	}
	for _, p := range failpoint.Points {
		if strings.HasPrefix(p, "migrate/") && p != failpoint.MigrateAfterChunk {
			t.Errorf("failpoint %s: not crashed at", p)
		}
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	numberFromOne(t) // a file of schema 10 was made by a build that numbered from 1
	for _, k := range []int{1, 2, 5} {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.db")
			want := seedV10(t, path)
			crashtest.KillAt(t, "TestMigrateMACIndexCrash", migrateCrashEnv+"="+dir, fmt.Sprintf("%s@%d", failpoint.MigrateAfterChunk, k))
			got, ok, schema := macRebuildFrom(t, path)
			if !ok || got != uint64(k)<<macSpanBits || schema != schemaVersion {
				t.Errorf("killed after %d transactions: marker %d (%v), schema %d; want %d, %d", k, got, ok, schema, k<<macSpanBits, schemaVersion)
			}
			checkResumeLogged(t, checkMigrated(t, path, want), k)
		})
	}
}

// TestMigrateMACIndexDamagedISPEntry: an events-by-isp entry whose value
// (its event's Seq) is damaged, pointing past the log, costs the build
// that one event's ISPSeq (doc.go: an event whose entry is damaged gets
// none), not those of its ISP's later events: the rebuild reads each
// ISP's entries up to the transaction's last span and stopped at the
// damaged one in every transaction, so no later event of alpha had its
// ISPSeq in its events-by-mac entry, and none showed in alpha's reads of
// its devices (past the damaged entry's ISPSeq: before it, the read
// itself seeks from the damaged Seq).
func TestMigrateMACIndexDamagedISPEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	want := seedV10(t, path)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var damaged, damagedISPSeq uint64 // the event whose entry is damaged
	err = db.Update(func(tx *bolt.Tx) error {
		idx := tx.Bucket(bucketEventIndex)
		k, v := idx.Cursor().Seek([]byte("alpha\x00"))
		if len(k) != 6+8 || len(v) != 8 {
			return fmt.Errorf("alpha's first entry %x = %x: not an ISPSeq and a Seq", k, v)
		}
		damaged, damagedISPSeq = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(k[6:])
		return idx.Put(bytes.Clone(k), binary.BigEndian.AppendUint64(nil, 1<<40))
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{NoSync: true, EventRetention: macChunkEvents})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var without []uint64 // alpha's entries without an ISPSeq: their Seqs
	s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEventMACIndex).ForEach(func(k, v []byte) error {
			if seq, isp, ok := parseMACKey(k); ok && string(isp) == "alpha" && len(v) == 0 {
				without = append(without, seq)
			}
			return nil
		})
	})
	if len(without) != 1 || without[0] != damaged {
		t.Errorf("alpha's events-by-mac entries without an ISPSeq: %d (first Seqs %v), want the damaged one's alone (Seq %d)", len(without), without[:min(len(without), 5)], damaged)
	}
	for m := range 40 {
		var w []uint64 // alpha's read past the damaged ISPSeq
		for i, k := 0, fmt.Sprint(m, "alpha"); i < len(want[k]); i += 2 {
			if want[k][i+1] > damagedISPSeq {
				w = append(w, want[k][i], want[k][i+1])
			}
		}
		evs, _, _, err := s.EventsOfMAC(mac(m), "alpha", damagedISPSeq, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, e := range evs {
			got = append(got, e.Seq, e.ISPSeq)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("device %d: alpha's read past ISPSeq %d has %d events, want %d", m, damagedISPSeq, len(got)/2, len(w)/2)
		}
	}
}

// TestMigrateMACIndexReadsISPIndexOnce: the build reads each
// events-by-isp entry once for the whole build, and at most one more per
// ISP and transaction (the first past its spans, read again by the next),
// not each ISP's entries from its start in every transaction: quadratic
// in the transactions, 153 of them at 10M events, which
// TestMigrateMACIndexLinear's times do not tell from linear at its sizes.
func TestMigrateMACIndexReadsISPIndexOnce(t *testing.T) {
	defer func(n uint64) { macRebuildSpans = n }(macRebuildSpans)
	macRebuildSpans = 1
	path := filepath.Join(t.TempDir(), "state.db")
	seedV10(t, path)
	var entries uint64
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error {
		entries = uint64(tx.Bucket(bucketEventIndex).Stats().KeyN)
		return nil
	})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before := macRebuildISPReads.Load()
	s, err := Open(path, Options{NoSync: true, EventRetention: macChunkEvents})
	if err != nil {
		t.Fatal(err)
	}
	reads := macRebuildISPReads.Load() - before
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// 6 transactions (5 spans and a part), 2 ISPs.
	if limit := entries + 6*2; reads > limit {
		t.Errorf("the build read %d events-by-isp entries, of %d: at most %d", reads, entries, limit)
	}
	t.Logf("the build read %d events-by-isp entries, of %d", reads, entries)
}

// TestMigrateMACIndexJournal: a schema-10 file whose binding journal
// holds records a crash left (bindings with their events; one binding
// committed, then released by a checkpointing delete), opened by this
// ispmux as it is, after the migration's transaction alone, and after
// two of the build's: the build ends before the replay appends the
// journal's events (with their entries) and trims the oldest (the
// retention): every event stored has its one entry, its ISP's reads show
// it, every journaled binding is there and the released one is not.
func TestMigrateMACIndexJournal(t *testing.T) {
	defer func(n uint64) { macRebuildSpans = n }(macRebuildSpans)
	macRebuildSpans = 1
	for _, k := range []int{-1, 0, 2} { // -1: not opened since the upgrade
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			orig := filepath.Join(t.TempDir(), "state.db")
			s, err := Open(orig, Options{EventRetention: macChunkEvents})
			if err != nil {
				t.Fatal(err)
			}
			var w TenantWrite
			for j := range macChunkEvents {
				w.Events = append(w.Events, Event{Kind: EventRenewed, MAC: mac(j % 40), ISP: []string{"alpha", "beta", ""}[j%3]})
			}
			if _, err := s.ApplyTenant(w); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			released := testBinding(999)
			if err := s.CommitBinding(released); err != nil {
				t.Fatal(err)
			}
			if found, err := s.DeleteBinding(released.Access, released.VLAN, released.MAC); err != nil || !found {
				t.Fatalf("DeleteBinding = %v, %v", found, err)
			}
			const n = 200
			for i := range n {
				b := testBinding(i)
				if _, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: b.ISP, IP: b.IP}); err != nil {
					t.Fatal(err)
				}
			}
			if got := len(s.pendingBindings()); got != n {
				t.Fatalf("%d bindings pending in the journal, want %d", got, n)
			}
			path := copyStore(t, orig, nil)
			// The copy's file back at schema 10, its index of the
			// old keys (the journal's format is the same): the old
			// ispmux's crash.
			downgradeToV10(t, path)
			if k >= 0 {
				migrateStopped(t, path, k)
			}
			c, err := Open(path, Options{NoSync: true, EventRetention: macChunkEvents})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			checkEventIndex(t, c)
			if _, err := c.Binding(released.Access, released.VLAN, released.MAC); !errors.Is(err, ErrNotFound) {
				t.Errorf("released binding after the crash: %v, want ErrNotFound", err)
			}
			for i := range n {
				want := testBinding(i)
				if got, err := c.Binding(want.Access, want.VLAN, want.MAC); err != nil || !bindingEqual(got, want) {
					t.Fatalf("binding %d after the crash: %+v, %v", i, got, err)
				}
				// Its event, once, in its ISP's read of the device
				// and in the operator's.
				for _, isp := range []string{want.ISP, ""} {
					evs, _, _, err := c.EventsOfMAC(want.MAC, isp, 0, 0)
					if err != nil {
						t.Fatal(err)
					}
					bound := 0
					for _, e := range evs {
						if e.Kind == EventBound {
							bound++
						}
					}
					if bound != 1 {
						t.Errorf("binding %d: %d of its bound events in the read of %q, want 1", i, bound, isp)
					}
				}
			}
		})
	}
}

// resumeMACRebuild runs k transactions of the events-by-mac build on db
// (from its marker), as the Open a crash stopped after them did.
func resumeMACRebuild(db *bolt.DB, k int) error {
	var pos map[string][]byte
	for range k {
		_, more, err := rebuildMACChunk(db, &pos)
		if err != nil {
			return err
		}
		if !more {
			return errors.New("no events left")
		}
	}
	return nil
}

// migrateStopped leaves the closed store at path (of schema 10 or older)
// as a crash at the first start after an upgrade does: the migration's
// transaction done, then k of the events-by-mac build's.
func migrateStopped(t *testing.T, path string, k int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { _, err := setUp(tx, nil); return err })
	if err == nil {
		err = resumeMACRebuild(db, k)
	}
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateMACIndexCompactMidBuild: ispmux compact of a file a crash
// left in the middle of the events-by-mac build (the marker copied or
// not) leaves it whole: Compact's Open completes the build before the
// copy, and the copy has neither the marker nor a hole in the index.
func TestMigrateMACIndexCompactMidBuild(t *testing.T) {
	defer func(n uint64) { macRebuildSpans = n }(macRebuildSpans)
	macRebuildSpans = 1
	path := filepath.Join(t.TempDir(), "state.db")
	want := seedV10(t, path)
	migrateStopped(t, path, 2)
	if _, err := Compact(path, Options{NoSync: true, EventRetention: macChunkEvents}); err != nil {
		t.Fatal(err)
	}
	if from, ok, _ := macRebuildFrom(t, path); ok {
		t.Errorf("the compacted file has the marker (%d)", from)
	}
	checkMigrated(t, path, want)
}

// TestMigrateSchema11: a file of schema 11 (whose events-by-mac index the
// ispmux of that schema built whole, in one transaction) goes to schema
// 12 as it is: no marker, no build, every read as before. And a file in
// the middle of its build is at schema 12 from the migration's
// transaction on, which that ispmux refuses as newer: taken for schema
// 11, its index would have served as whole with the build half done.
func TestMigrateSchema11(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{NoSync: true, EventRetention: macChunkEvents})
	if err != nil {
		t.Fatal(err)
	}
	for j := range 3000 {
		if _, err := s.ApplyTenant(TenantWrite{Events: []Event{{Kind: EventRenewed, MAC: mac(j % 40), ISP: []string{"alpha", "beta", ""}[j%3]}}}); err != nil {
			t.Fatal(err)
		}
	}
	want := macReads(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	setRawSchema(t, path, 11)
	before := macRebuildISPReads.Load()
	s, err = Open(path, Options{NoSync: true, EventRetention: macChunkEvents})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.MigratedFrom(); got != 11 {
		t.Errorf("MigratedFrom = %d, want 11", got)
	}
	if n := macRebuildISPReads.Load() - before; n != 0 {
		t.Errorf("the index was built again (%d events-by-isp reads) for a file of schema 11", n)
	}
	if got := macReads(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("reads after 11 → 12 differ from before")
	}
	checkEventIndex(t, s)
	if v := rawSchemaOf(t, s); v != 12 {
		t.Errorf("schema %d, want 12", v)
	}
	s.Close()

	// Mid-build: the marker and schema 12 together.
	path = filepath.Join(t.TempDir(), "state.db")
	seedV10(t, path)
	if v := rawSchema(t, path); !bytes.Equal(v, []byte{10}) {
		t.Fatalf("seeded schema %x, want 0a", v)
	}
	migrateStopped(t, path, 0)
	if from, marked, schema := macRebuildFrom(t, path); !marked || from != 0 || schema != 12 {
		t.Errorf("a file of schema 10 after its migration's transaction: schema %d, marker %d (%v); want 12 and marked from 0", schema, from, marked)
	}
}

// setRawSchema writes schema byte v into the closed store at path.
func setRawSchema(t *testing.T, path string, v byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte{v}) }); err != nil {
		t.Fatal(err)
	}
}
