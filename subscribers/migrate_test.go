package subscribers

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// openV1Copy copies testdata/v1.db (see testdata/README.md) to a temporary
// directory and returns the copy's path.
func openV1Copy(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "v1.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "v1.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkV1Contents checks that s holds exactly v1Fixture.
func checkV1Contents(t *testing.T, s *Store) {
	t.Helper()
	regs, binds, evs := v1Fixture()
	gotR, err := s.Registrations()
	if err != nil {
		t.Fatalf("Registrations: %v", err)
	}
	if !slices.EqualFunc(gotR, regs, func(a, b Registration) bool { return a == normR(b) }) {
		t.Errorf("Registrations = %+v\nwant %+v", gotR, regs)
	}
	gotB, err := s.Bindings()
	if err != nil {
		t.Fatalf("Bindings: %v", err)
	}
	want := slices.Clone(binds)
	slices.SortFunc(want, func(a, b Binding) int {
		return bytes.Compare(bindingKey(a.Access, a.VLAN, a.MAC), bindingKey(b.Access, b.VLAN, b.MAC))
	})
	if len(gotB) != len(want) {
		t.Fatalf("Bindings = %d, want %d", len(gotB), len(want))
	}
	for i := range want {
		if !bindingEqual(gotB[i], normB(want[i])) {
			t.Errorf("Bindings[%d] = %+v\nwant %+v", i, gotB[i], want[i])
		}
	}
	gotE, err := s.Events(0, 0)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	if !slices.Equal(gotE, evs) {
		t.Errorf("Events = %+v\nwant %+v", gotE, evs)
	}
	s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketExpiry) != nil {
			t.Errorf("bucket %s survived the migration (schema 6 drops it)", bucketExpiry)
		}
		return nil
	})
	if in, err := s.Intents(); err != nil || len(in) != 0 {
		t.Errorf("Intents = %+v, %v; want none", in, err)
	}
}

// rawSchema reads the meta schema byte of the closed store file at path.
func rawSchema(t *testing.T, path string) []byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v []byte
	db.View(func(tx *bolt.Tx) error {
		v = bytes.Clone(tx.Bucket(bucketMeta).Get(keySchema))
		return nil
	})
	return v
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

// TestMigrateV1 opens a copy of the committed schema-1 file: everything in
// it reads back, every value is rewritten in format 2, the schema byte is
// 2, and a second open changes nothing in the file.
func TestMigrateV1(t *testing.T) {
	path := openV1Copy(t)
	if v := rawSchema(t, path); !bytes.Equal(v, []byte{1}) {
		t.Fatalf("testdata/v1.db has schema %x, want 01", v)
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open of a schema-1 file: %v", err)
	}
	checkV1Contents(t, s)
	// Every value is format 2 now.
	s.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketRegistrations, bucketBindings, bucketEvents} {
			tx.Bucket(name).ForEach(func(k, v []byte) error {
				if len(v) == 0 || v[0] != formatVersion {
					t.Errorf("bucket %s key %x: format %x after migration, want %d", name, k, v[:min(len(v), 1)], formatVersion)
				}
				return nil
			})
		}
		return nil
	})
	// The migrated file is written to like a new one.
	regs, binds, _ := v1Fixture()
	b := binds[0]
	b.ClientID, b.Customer = []byte{1, 2, 0, 0, 0, 0, 1}, "cust-1"
	e, err := s.CommitBindingEvent(b, Event{Kind: EventRenewed, MAC: b.MAC, Customer: "cust-1"})
	if err != nil || e.Seq != 6 {
		t.Errorf("CommitBindingEvent after migration: seq %d, %v; want 6 (the sequence carries on)", e.Seq, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v := rawSchema(t, path); !bytes.Equal(v, []byte{schemaVersion}) {
		t.Errorf("schema after migration = %x, want %02x", v, schemaVersion)
	}

	// A second open is a no-op: not one byte of the file changes.
	sum := fileSum(t, path)
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	if got, err := s.Binding(b.Access, b.VLAN, b.MAC); err != nil || !bindingEqual(got, normB(b)) {
		t.Errorf("binding after reopen = %+v, %v", got, err)
	}
	if r, err := s.Registration(regs[1].MAC); err != nil || r != normR(regs[1]) {
		t.Errorf("registration after reopen = %+v, %v", r, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fileSum(t, path) != sum {
		t.Error("a second Open of a migrated file changed it")
	}
}

// TestMigrateKeepsCorrupt: a schema-1 value that does not decode does not
// stop the migration; it stays as it was and is reported as before.
func TestMigrateKeepsCorrupt(t *testing.T) {
	path := openV1Copy(t)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := bindingKey("acc9", 1, mac(9))
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketBindings).Put(bad, []byte{1, 0xff}) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	bs, err := s.Bindings()
	checkCorrupt(t, "Bindings after migration", err, bucketBindings, bad)
	if len(bs) != 3 {
		t.Errorf("Bindings = %d good, want 3", len(bs))
	}
}

// TestDowngradeRefused: a file of a newer schema is refused, clearly, and
// left untouched.
func TestDowngradeRefused(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	if err := s.CommitBinding(testBinding(1)); err != nil {
		t.Fatal(err)
	}
	putRaw(t, s, bucketMeta, keySchema, []byte{schemaVersion + 1})
	s.Close()
	sum := fileSum(t, path)
	s2, err := Open(path, Options{})
	if err == nil {
		s2.Close()
		t.Fatalf("Open of a schema-%d file succeeded", schemaVersion+1)
	}
	if !errors.Is(err, ErrSchema) {
		t.Errorf("Open: %v, want ErrSchema", err)
	}
	for _, want := range []string{path, fmt.Sprintf("newer ispmux (schema %d)", schemaVersion+1), fmt.Sprintf("supports up to %d", schemaVersion), "refusing to open (downgrade)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if fileSum(t, path) != sum {
		t.Error("the refused file was changed")
	}
	t.Logf("refused: %v", err)

	// A schema byte that is not one can be is corrupt, not a downgrade.
	s3, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	p3 := s3.Path()
	putRaw(t, s3, bucketMeta, keySchema, []byte{0})
	s3.Close()
	if s4, err := Open(p3, Options{}); !errors.Is(err, ErrCorrupt) {
		if err == nil {
			s4.Close()
		}
		t.Errorf("Open with schema 0: %v, want ErrCorrupt", err)
	}
}

// TestMigrateV5: a schema-5 file's binding-expiry index (one entry per
// binding) is deleted; the bindings and events are as they were, and a
// second open changes nothing.
func TestMigrateV5(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	for i := range 500 {
		b := testBinding(i)
		if _, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: "alpha"}); err != nil {
			t.Fatal(err)
		}
	}
	want, err := s.Bindings()
	if err != nil {
		t.Fatal(err)
	}
	// Make it what schema 5 wrote: the index, schema byte 5.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		idx, err := tx.CreateBucket(bucketExpiry)
		if err != nil {
			return err
		}
		for _, b := range want {
			k := binary.BigEndian.AppendUint64(nil, uint64(b.Expires.Unix())^(1<<63))
			k = binary.BigEndian.AppendUint32(k, uint32(b.Expires.Nanosecond()))
			if err := idx.Put(append(k, bindingKey(b.Access, b.VLAN, b.MAC)...), nil); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchema, []byte{5})
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("Open of a schema-5 file: %v", err)
	}
	got, err := s.Bindings()
	if err != nil || !slices.EqualFunc(got, want, bindingEqual) {
		t.Errorf("Bindings after migration: %d, %v; want the %d before", len(got), err, len(want))
	}
	if evs, err := s.EventsOf("alpha", 0, 0); err != nil || len(evs) != len(want) {
		t.Errorf("EventsOf(alpha) after migration = %d, %v; want %d", len(evs), err, len(want))
	}
	s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketExpiry) != nil {
			t.Errorf("bucket %s survived the migration", bucketExpiry)
		}
		return nil
	})
	s.Close()
	if v := rawSchema(t, path); !bytes.Equal(v, []byte{schemaVersion}) || schemaVersion != 12 {
		t.Errorf("schema after migration = %x, want 0c", v)
	}
	sum := fileSum(t, path)
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if fileSum(t, path) != sum {
		t.Error("a second open changed the file")
	}
}
