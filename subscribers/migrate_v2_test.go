package subscribers

import (
	"bytes"
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
