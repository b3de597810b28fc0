package subscribers

import (
	"errors"
	"maps"

	"bytes"
	bolt "go.etcd.io/bbolt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// openV2Copy copies testdata/v2.db (see testdata/README.md) to a temporary
// directory and returns the copy's path.
func openV2Copy(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "v2.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "v2.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestMigrateV2 opens a copy of the committed schema-2 file: everything in
// it reads back unchanged, the devices-by-customer and events-by-isp
// indexes are built from it, the customers bucket and the change feed are
// empty, and a second open changes nothing.
func TestMigrateV2(t *testing.T) {
	path := openV2Copy(t)
	if v := rawSchema(t, path); !bytes.Equal(v, []byte{2}) {
		t.Fatalf("testdata/v2.db has schema %x, want 02", v)
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open of a schema-2 file: %v", err)
	}
	regs, binds, intent, evs := v2Fixture()

	gotR, err := s.Registrations()
	if err != nil || !slices.EqualFunc(gotR, regs, func(a, b Registration) bool { return a == normR(b) }) {
		t.Errorf("Registrations = %+v, %v\nwant %+v", gotR, err, regs)
	}
	gotB, err := s.Bindings()
	if err != nil || len(gotB) != len(binds) {
		t.Fatalf("Bindings = %d, %v; want %d", len(gotB), err, len(binds))
	}
	for i := range binds {
		if !bindingEqual(gotB[i], normB(binds[i])) {
			t.Errorf("Bindings[%d] = %+v\nwant %+v", i, gotB[i], binds[i])
		}
	}
	ins, err := s.Intents()
	if err != nil || len(ins) != 1 || ins[0].ID != intent.ID || !bytes.Equal(ins[0].Message, intent.Message) || ins[0].Created != intent.Created {
		t.Errorf("Intents = %+v, %v; want %+v", ins, err, intent)
	}
	gotE, err := s.Events(0, 0)
	if err != nil || !slices.Equal(gotE, evs) {
		t.Errorf("Events = %+v, %v\nwant %+v", gotE, err, evs)
	}

	// The indexes were built.
	d, err := s.DevicesOf("alpha", "c-1")
	if err != nil || len(d) != 2 || d[0] != normR(regs[0]) || d[1] != normR(regs[1]) {
		t.Errorf("DevicesOf(alpha, c-1) = %+v, %v; want regs 0 and 1", d, err)
	}
	d, _, err = s.Devices("beta", "", "", 0)
	if err != nil || len(d) != 1 || d[0] != normR(regs[3]) {
		t.Errorf("Devices(beta) = %+v, %v; want reg 3", d, err)
	}
	var alpha []Event
	for _, e := range evs {
		if e.ISP == "alpha" {
			alpha = append(alpha, legacyNumbered(e))
		}
	}
	if got, err := s.EventsOf("alpha", 0, 0); err != nil || !slices.Equal(got, alpha) {
		t.Errorf("EventsOf(alpha) = %+v, %v\nwant %+v", got, err, alpha)
	}
	if got, err := s.EventsOf("beta", 0, 0); err != nil || len(got) != 1 || got[0] != legacyNumbered(evs[1]) {
		t.Errorf("EventsOf(beta) = %+v, %v; want event 2", got, err)
	}
	if cs, err := s.AllCustomers(); err != nil || len(cs) != 0 {
		t.Errorf("AllCustomers = %+v, %v; want none", cs, err)
	}
	if seq, err := s.ChangeSeq(); err != nil || seq != 0 {
		t.Errorf("ChangeSeq = %d, %v; want 0 (the feed starts at the migration)", seq, err)
	}
	// The sequences carry on.
	e, err := s.AddEvent(Event{Kind: EventRenewed, ISP: "beta", Time: evs[4].Time.Add(time.Second)})
	if err != nil || e.Seq != 6 {
		t.Errorf("AddEvent after migration: seq %d, %v; want 6", e.Seq, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v := rawSchema(t, path); !bytes.Equal(v, []byte{schemaVersion}) {
		t.Errorf("schema after migration = %x, want %02x", v, schemaVersion)
	}

	sum := fileSum(t, path)
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	if got, err := s.EventsOf("beta", 0, 0); err != nil || len(got) != 2 {
		t.Errorf("EventsOf(beta) after reopen = %+v, %v; want 2", got, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fileSum(t, path) != sum {
		t.Error("a second Open of a migrated file changed it")
	}
}

// TestMigrateV1Indexes: a schema-1 file goes through both steps: its
// registrations and events are indexed too.
func TestMigrateV1Indexes(t *testing.T) {
	s, err := Open(openV1Copy(t), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	regs, _, evs := v1Fixture()
	if d, err := s.DevicesOf("beta", "cust-2"); err != nil || len(d) != 1 || d[0] != normR(regs[1]) {
		t.Errorf("DevicesOf(beta, cust-2) = %+v, %v", d, err)
	}
	if d, err := s.DevicesOf("alpha", ""); err != nil || len(d) != 1 || d[0] != normR(regs[2]) {
		t.Errorf("DevicesOf(alpha, \"\") = %+v, %v (a device without a customer ID)", d, err)
	}
	if got, err := s.EventsOf("beta", 0, 0); err != nil || len(got) != 2 || got[0] != legacyNumbered(evs[1]) || got[1] != legacyNumbered(evs[4]) {
		t.Errorf("EventsOf(beta) = %+v, %v", got, err)
	}
}

// legacyNumbered is e as its ISP reads it after the migration to schema
// 9: an event of an older store keeps its Seq as its ISPSeq.
func legacyNumbered(e Event) Event {
	e.ISPSeq = e.Seq
	return e
}

// TestMigrateISPSeqsReaders: the 8 → 9 migration (per-ISP numbers) as the
// readers of an ISP's events see it, on testdata/v2.db (events alpha 1,
// beta 2, none 3, alpha 4, alpha 5) with webhook cursors stored before
// the upgrade (alpha 2: its worker had moved past beta's 2; beta 0: set
// when the log was empty). The old numbers (the Seqs) read back with the
// same cursors; the ISPs' new numbers go on above the base (5) with no
// event reported missed across the jump; an ISP's position in a hole of
// its old numbers (numbers of other ISPs' events) is not taken for
// events of its own that were trimmed: the ISP's oldest is the log's, as
// before the upgrade, while its oldest event is an old one. Through the
// calls the API (EventsPage: missed, a stream's reset) and the webhook
// worker (WebhookEvents: events-lost when cursor+1 < oldest) use.
func TestMigrateISPSeqsReaders(t *testing.T) {
	path := openV2Copy(t)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucket(bucketWebhooks)
		if err != nil {
			return err
		}
		if err := bk.Put([]byte("alpha"), seqKey(2)); err != nil {
			return err
		}
		return bk.Put([]byte("beta"), seqKey(0))
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	opts := Options{NoSync: true, EventRetention: 8} // the 9th event trims Seq 1
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()

	type page struct {
		seqs           []uint64 // ISPSeqs
		oldest, newest uint64
	}
	read := func(isp string, after uint64, limit int) page {
		t.Helper()
		evs, oldest, newest, err := s.EventsPage(isp, after, limit)
		if err != nil {
			t.Fatalf("EventsPage(%s, %d): %v", isp, after, err)
		}
		wevs, wo, wn, err := s.WebhookEvents(isp, after, limit)
		if err != nil || len(wevs) != len(evs) || wo != oldest || wn != newest {
			t.Fatalf("WebhookEvents(%s, %d) = %d events %d..%d, %v; EventsPage %d events %d..%d", isp, after, len(wevs), wo, wn, err, len(evs), oldest, newest)
		}
		p := page{oldest: oldest, newest: newest}
		for _, e := range evs {
			if e.ISP != isp {
				t.Fatalf("%s's page holds %+v", isp, e)
			}
			p.seqs = append(p.seqs, e.ISPSeq)
		}
		return p
	}
	// expect checks isp's page after `after`, and that a reader there is
	// told it missed events (after+1 < oldest: API missed, stream reset,
	// webhook events-lost) exactly when lost says.
	expect := func(what, isp string, after uint64, limit int, want []uint64, newest uint64, lost bool) {
		t.Helper()
		p := read(isp, after, limit)
		if !slices.Equal(p.seqs, want) || p.newest != newest || (after+1 < p.oldest) != lost {
			t.Errorf("%s: %s after %d: ISPSeqs %v, bounds %d..%d; want %v, newest %d, missed %v", what, isp, after, p.seqs, p.oldest, p.newest, want, newest, lost)
		}
	}

	// The old numbers, with the old cursors.
	expect("migrated", "alpha", 0, 0, []uint64{1, 4, 5}, 5, false)
	expect("migrated", "alpha", 1, 1, []uint64{4}, 5, false)
	expect("migrated", "beta", 0, 0, []uint64{2}, 5, false)
	for isp, want := range map[string]uint64{"alpha": 2, "beta": 0} {
		if c, ok, err := s.WebhookCursor(isp); err != nil || !ok || c != want {
			t.Errorf("WebhookCursor(%s) = %d, %v, %v; want %d (stored before the upgrade)", isp, c, ok, err, want)
		}
	}
	expect("beta's cursor stored before the upgrade", "beta", 0, 0, []uint64{2}, 5, false)
	expect("alpha's cursor stored before the upgrade", "alpha", 2, 0, []uint64{4, 5}, 5, false)
	for isp, want := range map[string]uint64{"alpha": 5, "beta": 5} {
		if n, err := s.LastEventSeqOf(isp); err != nil || n != want {
			t.Errorf("LastEventSeqOf(%s) = %d, %v; want %d (the base)", isp, n, err, want)
		}
	}

	// New events: numbered above the base; the 4th (Seq 9) trims Seq 1
	// (by count: dated after the fixture's, none is trimmed by age).
	_, _, _, fixture := v2Fixture()
	at := fixture[len(fixture)-1].Time
	add := func(isp string, wantISPSeq uint64) {
		t.Helper()
		at = at.Add(time.Second)
		e, err := s.AddEvent(Event{Kind: EventCustomerCreated, ISP: isp, Time: at})
		if err != nil || e.ISPSeq != wantISPSeq {
			t.Fatalf("AddEvent(%s): ISPSeq %d, %v; want %d", isp, e.ISPSeq, err, wantISPSeq)
		}
	}
	add("beta", 6)
	add("alpha", 6)
	add("", 0)
	add("beta", 7)
	if evs, _ := s.Events(0, 1); len(evs) != 1 || evs[0].Seq != 2 {
		t.Fatalf("log's oldest: %+v; want Seq 2 (Seq 1 trimmed)", evs)
	}
	// The operator's page: each event with its ISP's number (old: its Seq).
	if evs, _, _, err := s.EventsPage("", 0, 0); err == nil {
		got := map[uint64]uint64{}
		for _, e := range evs {
			got[e.Seq] = e.ISPSeq
		}
		if want := map[uint64]uint64{2: 2, 3: 0, 4: 4, 5: 5, 6: 6, 7: 6, 8: 0, 9: 7}; !maps.Equal(got, want) {
			t.Errorf("the operator's page: Seq → ISPSeq %v, want %v", got, want)
		}
	} else {
		t.Fatal(err)
	}
	expect("after the jump", "alpha", 5, 0, []uint64{6}, 6, false)
	expect("after the jump", "beta", 2, 0, []uint64{6, 7}, 7, false)
	expect("after the jump, paged", "beta", 6, 0, []uint64{7}, 7, false)
	// alpha's 1 was trimmed: a reader before it missed it.
	if p := read("alpha", 0, 0); p.oldest != 2 {
		t.Errorf("alpha's oldest with its 1 trimmed: %d, want 2 (a webhook cursor 0 is told 1..1 was lost)", p.oldest)
	}
	// alpha's webhook cursor 2 sits in a hole of its old numbers (3 was an
	// event of no ISP): it resumes at 4 with nothing lost.
	expect("alpha's old cursor, its 1 trimmed", "alpha", 2, 0, []uint64{4, 5, 6}, 6, false)
	expect("alpha's old cursor, its 1 trimmed", "alpha", 3, 0, []uint64{4, 5, 6}, 6, false)

	// Every old event trimmed: the gaps the migration recorded (beta: 2..5)
	// are no events missed; a reader before an old event is told.
	for range 4 {
		add("", 0)
	}
	if evs, _ := s.Events(0, 1); len(evs) != 1 || evs[0].Seq != 6 {
		t.Fatalf("log's oldest: %+v; want Seq 6 (every old event trimmed)", evs)
	}
	expect("old events trimmed", "alpha", 5, 0, []uint64{6}, 6, false)
	expect("old events trimmed", "alpha", 4, 0, []uint64{6}, 6, true)
	expect("old events trimmed", "beta", 2, 0, []uint64{6, 7}, 7, false)
	expect("old events trimmed", "beta", 1, 0, []uint64{6, 7}, 7, true)

	// Reopened: the numbers go on.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path, Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	add("alpha", 7)
	add("beta", 8)
	expect("reopened", "alpha", 5, 0, []uint64{6, 7}, 7, false)
	expect("reopened", "beta", 2, 0, []uint64{6, 7, 8}, 8, false)
}

// TestMigrateISPSeqsTrimmedBefore: an ISP all of whose events the log
// trimmed before the upgrade (beta's 2 in testdata/v2.db, with Seq 1 and 2
// trimmed) has no index entry for the migration to start from. A reader
// of its events still behind them (its webhook cursor 0) was told, before
// the upgrade, that 1..2 were lost (the log's oldest was 3); after it, the
// same: the numbers below the log's oldest at the upgrade may have been
// its events, while those from there to the base were not.
func TestMigrateISPSeqsTrimmedBefore(t *testing.T) {
	path := openV2Copy(t)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucket(bucketWebhooks)
		if err != nil {
			return err
		}
		if err := bk.Put([]byte("beta"), seqKey(0)); err != nil {
			return err
		}
		if err := bk.Put([]byte("gamma"), seqKey(4)); err != nil {
			return err
		}
		for seq := range uint64(2) {
			if err := tx.Bucket(bucketEvents).Delete(seqKey(seq + 1)); err != nil {
				return err
			}
		}
		return nil
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range []struct {
		isp            string
		after          uint64
		oldest, newest uint64
	}{
		{"beta", 0, 3, 5},  // 1..2 lost (beta's 2 among them), as before the upgrade
		{"beta", 2, 3, 5},  // nothing lost
		{"gamma", 4, 3, 5}, // an ISP with no event ever: its cursor at 4 lost nothing
		{"alpha", 3, 3, 5}, // alpha's 4 and 5 kept, the log's oldest 3
	} {
		evs, oldest, newest, err := s.WebhookEvents(c.isp, c.after, 0)
		if err != nil || oldest != c.oldest || newest != c.newest {
			t.Errorf("WebhookEvents(%s, %d): %d events, bounds %d..%d, %v; want bounds %d..%d", c.isp, c.after, len(evs), oldest, newest, err, c.oldest, c.newest)
		}
	}
	if e, err := s.AddEvent(Event{Kind: EventCustomerCreated, ISP: "beta"}); err != nil || e.ISPSeq != 6 {
		t.Fatalf("beta's next: %d, %v; want 6", e.ISPSeq, err)
	}
	if _, oldest, _, err := s.WebhookEvents("beta", 0, 0); err != nil || oldest != 3 {
		t.Errorf("beta's oldest after its 6: %d, %v; want 3 (1..2 lost, 3..5 a gap)", oldest, err)
	}
}

// TestMigrateISPSeqsJournal: an ispmux of schema 8 that stopped without
// a checkpoint (a crash, a kill) leaves events in its binding journal,
// which its ISPs' readers had read by their Seq (the pending events are
// read without a checkpoint): alpha's webhook delivered its 6 and 8 and
// stored its cursor, 8. The upgrade replays them with those numbers, and
// the ISPs' sequences go on above them: before, the migration started
// them at the file's newest Seq (5), the replay numbered alpha's 6 and 8
// as 6 and 7, and its next event was 8, at its webhook's cursor: never
// delivered.
func TestMigrateISPSeqsJournal(t *testing.T) {
	path := openV2Copy(t)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucket(bucketWebhooks)
		if err != nil {
			return err
		}
		return bk.Put([]byte("alpha"), seqKey(8))
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	_, _, _, fixture := v2Fixture()
	at := fixture[len(fixture)-1].Time
	jr, _, err := openJournal(path, true)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*jrec
	for i, isp := range []string{"alpha", "beta", "alpha"} { // Seq 6, 7, 8
		b := testBinding(i)
		b.ISP = isp
		e := Event{Seq: uint64(6 + i), Kind: EventBound, ISP: isp, MAC: b.MAC, IP: b.IP, Time: at.Add(time.Duration(i+1) * time.Second)}
		recs = append(recs, &jrec{lsn: uint64(i + 1), key: bindingKey(b.Access, b.VLAN, b.MAC), val: encodeBinding(&b), ev: &e, evVal: encodeEvent(&e)})
	}
	if err := errors.Join(jr.append(recs), jr.close()); err != nil {
		t.Fatal(err)
	}

	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	numbers := func(isp string) []uint64 {
		t.Helper()
		evs, err := s.EventsOf(isp, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var ns []uint64
		for _, e := range evs {
			ns = append(ns, e.ISPSeq)
		}
		return ns
	}
	check := func(what string, alpha ...uint64) {
		t.Helper()
		if got, want := numbers("alpha"), append([]uint64{1, 4, 5, 6, 8}, alpha...); !slices.Equal(got, want) {
			t.Errorf("%s: alpha's events %v, want %v (the journal's 6 and 8: their Seqs, as its readers knew them)", what, got, want)
		}
		if got := numbers("beta"); !slices.Equal(got, []uint64{2, 7}) {
			t.Errorf("%s: beta's events %v, want 2 7", what, got)
		}
	}
	check("replayed")
	for isp, want := range map[string]uint64{"alpha": 8, "beta": 8, "gamma": 8} {
		if n, err := s.LastEventSeqOf(isp); err != nil || n != want {
			t.Errorf("LastEventSeqOf(%s) = %d, %v; want %d (the base: the replayed log's newest)", isp, n, err, want)
		}
	}
	e, err := s.AddEvent(Event{Kind: EventCustomerCreated, ISP: "alpha", Time: at.Add(time.Minute)})
	if err != nil || e.ISPSeq != 9 {
		t.Fatalf("alpha's next event: ISPSeq %d, %v; want 9 (past its webhook's cursor, 8)", e.ISPSeq, err)
	}
	evs, oldest, newest, err := s.WebhookEvents("alpha", 8, 0)
	if err != nil || len(evs) != 1 || evs[0].ISPSeq != 9 || oldest > 9 || newest != 9 {
		t.Errorf("alpha's webhook after its cursor 8: %d events, bounds %d..%d, %v; want its 9", len(evs), oldest, newest, err)
	}
	// Reopened (the migration done): the numbers stay.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path, Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	check("reopened", 9)
	if e, err := s.AddEvent(Event{Kind: EventCustomerCreated, ISP: "beta", Time: at.Add(2 * time.Minute)}); err != nil || e.ISPSeq != 9 {
		t.Fatalf("beta's next event: ISPSeq %d, %v; want 9", e.ISPSeq, err)
	}
}
