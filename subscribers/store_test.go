package subscribers

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTest(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s, path
}

func mac(i int) MAC {
	m := MAC{0x02, 0x00}
	binary.BigEndian.PutUint32(m[2:], uint32(i))
	return m
}

// testBinding returns a binding whose every field depends on i, so a mixed
// up or truncated record shows.
func testBinding(i int) Binding {
	return Binding{
		MAC:      mac(i),
		Access:   fmt.Sprintf("acc%d", i%3),
		VLAN:     uint16(100 + i%7),
		ISP:      fmt.Sprintf("isp-%d", i%2),
		IP:       netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}),
		Circuit:  fmt.Sprintf("acc%d:%d", i%3, 100+i%7),
		ServerID: netip.MustParseAddr("192.0.2.1"),
		Relay:    netip.MustParseAddr("2001:db8::53"),
		Expires:  time.Date(2030, 1, 2, 3, 4, 5, 600+i, time.UTC),
		Updated:  time.Date(2029, 1, 2, 3, 4, 5, 7, time.UTC),
	}
}

// norm makes times comparable with ==.
func normB(b Binding) Binding {
	b.Expires, b.Updated = b.Expires.UTC(), b.Updated.UTC()
	return b
}

func normR(r Registration) Registration {
	r.Updated, r.Created = r.Updated.UTC(), r.Created.UTC()
	return r
}

func TestRegistrationRoundTrip(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	cet := time.FixedZone("CET", 3600)
	want := []Registration{
		{MAC: mac(1), CustomerID: "cust-1", ISP: "alpha", Access: "eth1", Source: SourceConfig, Updated: time.Date(2026, 5, 6, 7, 8, 9, 123456789, cet), Created: time.Date(2025, 5, 6, 7, 8, 9, 1, cet)},
		{MAC: mac(2), ISP: "beta", Blocked: true, Source: SourceAPI, Updated: time.Unix(1, 0), Created: time.Unix(1, 0)},
		{MAC: mac(3), CustomerID: strings.Repeat("x", 300), ISP: "ü-isp", Source: SourceAPI, Updated: time.Unix(-5, 1), Created: time.Unix(-7, 3)},
	}
	for _, r := range want {
		if err := s.PutRegistration(r); err != nil {
			t.Fatalf("PutRegistration: %v", err)
		}
	}
	for _, r := range want {
		got, err := s.Registration(r.MAC)
		if err != nil {
			t.Fatalf("Registration(%x): %v", r.MAC, err)
		}
		if got != normR(r) {
			t.Errorf("Registration(%x) = %+v, want %+v", r.MAC, got, normR(r))
		}
	}
	all, err := s.Registrations()
	if err != nil || len(all) != len(want) {
		t.Fatalf("Registrations = %d, %v; want %d", len(all), err, len(want))
	}
	for i := range all {
		if all[i] != normR(want[i]) {
			t.Errorf("Registrations[%d] = %+v, want %+v", i, all[i], normR(want[i]))
		}
	}

	// Zero Updated is filled in.
	before := time.Now()
	if err := s.PutRegistration(Registration{MAC: mac(4), ISP: "alpha", Source: SourceAPI}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Registration(mac(4)); got.Updated.Before(before.Truncate(time.Second)) {
		t.Errorf("Updated = %v, want >= %v", got.Updated, before)
	}
	// Replace.
	r := want[0]
	r.ISP = "gamma"
	if err := s.PutRegistration(r); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Registration(r.MAC); got.ISP != "gamma" {
		t.Errorf("after replace ISP = %q", got.ISP)
	}
	// Delete.
	if ok, err := s.DeleteRegistration(mac(1)); !ok || err != nil {
		t.Errorf("DeleteRegistration = %v, %v; want true, nil", ok, err)
	}
	if ok, err := s.DeleteRegistration(mac(1)); ok || err != nil {
		t.Errorf("second DeleteRegistration = %v, %v; want false, nil", ok, err)
	}
	if _, err := s.Registration(mac(1)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Registration after delete: %v, want ErrNotFound", err)
	}
	// Invalid.
	if err := s.PutRegistration(Registration{MAC: mac(9), ISP: "a"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("PutRegistration without source: %v, want ErrInvalid", err)
	}
}

func TestBindingRoundTrip(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	var want []Binding
	for i := range 20 {
		b := testBinding(i)
		if i == 5 {
			b.ServerID = netip.Addr{} // unknown: stays invalid
			b.Relay = netip.MustParseAddr("fe80::1%eth0")
			b.Expires = b.Expires.In(time.FixedZone("X", -7200))
		}
		want = append(want, b)
		if err := s.CommitBinding(b); err != nil {
			t.Fatalf("CommitBinding(%d): %v", i, err)
		}
	}
	for _, b := range want {
		got, err := s.Binding(b.Access, b.VLAN, b.MAC)
		if err != nil {
			t.Fatalf("Binding: %v", err)
		}
		if !bindingEqual(got, normB(b)) {
			t.Errorf("Binding = %+v\nwant      %+v", got, normB(b))
		}
	}
	all, err := s.Bindings()
	if err != nil || len(all) != len(want) {
		t.Fatalf("Bindings = %d, %v", len(all), err)
	}
	on, err := s.BindingsOn("acc1")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range want {
		if b.Access == "acc1" {
			n++
		}
	}
	if len(on) != n {
		t.Errorf("BindingsOn(acc1) = %d bindings, want %d", len(on), n)
	}
	for _, b := range on {
		if b.Access != "acc1" {
			t.Errorf("BindingsOn(acc1) returned %s", b.Access)
		}
	}

	// Same MAC on another VLAN is another binding.
	b := want[0]
	b.VLAN++
	if _, err := s.Binding(b.Access, b.VLAN, b.MAC); !errors.Is(err, ErrNotFound) {
		t.Errorf("Binding on other VLAN: %v, want ErrNotFound", err)
	}
	if ok, err := s.DeleteBinding(want[0].Access, want[0].VLAN, want[0].MAC); !ok || err != nil {
		t.Errorf("DeleteBinding = %v, %v", ok, err)
	}
	if ok, err := s.DeleteBinding(want[0].Access, want[0].VLAN, want[0].MAC); ok || err != nil {
		t.Errorf("second DeleteBinding = %v, %v", ok, err)
	}
	if _, err := s.Binding(want[0].Access, want[0].VLAN, want[0].MAC); !errors.Is(err, ErrNotFound) {
		t.Errorf("Binding after delete: %v", err)
	}

	for name, b := range map[string]Binding{
		"no access":  {IP: want[1].IP, Expires: want[1].Expires},
		"NUL access": {Access: "a\x00b", IP: want[1].IP, Expires: want[1].Expires},
		"no IP":      {Access: "a", Expires: want[1].Expires},
		"no expiry":  {Access: "a", IP: want[1].IP},
	} {
		if err := s.CommitBinding(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("CommitBinding(%s) = %v, want ErrInvalid", name, err)
		}
	}
}

func TestSyncRegistrations(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	apiReg := Registration{MAC: mac(100), ISP: "alpha", CustomerID: "portal-1", Source: SourceAPI}
	if err := s.PutRegistration(apiReg); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := []Registration{
		{MAC: mac(1), ISP: "alpha", CustomerID: "c1", Updated: old},
		{MAC: mac(2), ISP: "beta", CustomerID: "c2", Updated: old},
	}
	added, _, removed, err := s.SyncRegistrations(SourceConfig, cfg)
	if err != nil || added != 2 || removed != 0 {
		t.Fatalf("first sync = %d, %d, %v; want 2, 0, nil", added, removed, err)
	}
	if r, _ := s.Registration(mac(1)); r.Source != SourceConfig {
		t.Errorf("synced Source = %q, want %q", r.Source, SourceConfig)
	}

	// Keep 1 unchanged, drop 2, add 3.
	cfg2 := []Registration{
		{MAC: mac(1), ISP: "alpha", CustomerID: "c1"}, // unchanged (Updated zero)
		{MAC: mac(3), ISP: "beta", CustomerID: "c3", Blocked: true},
	}
	added, _, removed, err = s.SyncRegistrations(SourceConfig, cfg2)
	if err != nil || added != 1 || removed != 1 {
		t.Fatalf("second sync = %d, %d, %v; want 1, 1, nil", added, removed, err)
	}
	if r, _ := s.Registration(mac(1)); !r.Updated.Equal(old) {
		t.Errorf("unchanged registration Updated = %v, want kept %v", r.Updated, old)
	}
	if _, err := s.Registration(mac(2)); !errors.Is(err, ErrNotFound) {
		t.Errorf("dropped registration: %v, want ErrNotFound", err)
	}
	if r, err := s.Registration(mac(3)); err != nil || !r.Blocked {
		t.Errorf("added registration = %+v, %v", r, err)
	}
	if r, err := s.Registration(mac(100)); err != nil || r.Source != SourceAPI || r.CustomerID != "portal-1" || r.ISP != "alpha" {
		t.Errorf("API registration after sync = %+v, %v", r, err)
	}

	// A changed entry is rewritten, not counted as added.
	cfg2[0].ISP = "beta"
	added, changed, removed, err := s.SyncRegistrations(SourceConfig, cfg2)
	if err != nil || added != 0 || changed != 1 || removed != 0 {
		t.Fatalf("third sync = %d added, %d changed, %d removed, %v; want 0, 1, 0, nil", added, changed, removed, err)
	}
	if r, _ := s.Registration(mac(1)); r.ISP != "beta" || r.Updated.Equal(old) {
		t.Errorf("changed registration = %+v", r)
	}

	// Duplicate MACs: error, nothing changed.
	if _, _, _, err := s.SyncRegistrations(SourceConfig, []Registration{{MAC: mac(7), ISP: "a"}, {MAC: mac(7), ISP: "b"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("sync with duplicate: %v, want ErrInvalid", err)
	}
	if _, err := s.Registration(mac(7)); !errors.Is(err, ErrNotFound) {
		t.Errorf("failed sync wrote mac 7: %v", err)
	}

	// Empty set removes every config entry, keeps the API one.
	added, _, removed, err = s.SyncRegistrations(SourceConfig, nil)
	if err != nil || added != 0 || removed != 2 {
		t.Fatalf("empty sync = %d, %d, %v; want 0, 2, nil", added, removed, err)
	}
	all, _ := s.Registrations()
	if len(all) != 1 || all[0].MAC != mac(100) {
		t.Errorf("after empty sync: %+v, want only the API entry", all)
	}

	// Config takes over an API MAC.
	added, _, _, err = s.SyncRegistrations(SourceConfig, []Registration{{MAC: mac(100), ISP: "beta"}})
	if err != nil || added != 1 {
		t.Fatalf("takeover sync = %d, %v", added, err)
	}
	if r, _ := s.Registration(mac(100)); r.Source != SourceConfig || r.ISP != "beta" {
		t.Errorf("taken-over registration = %+v", r)
	}
}

func TestBindingsSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutRegistration(Registration{MAC: mac(1), ISP: "alpha", Source: SourceAPI}); err != nil {
		t.Fatal(err)
	}
	ev, err := s.AddEvent(Event{Kind: EventBound, MAC: mac(1)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	all, err := s.Bindings()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("after reopen: %d bindings, want %d", len(all), n)
	}
	got := map[MAC]Binding{}
	for _, b := range all {
		got[b.MAC] = b
	}
	for i := range n {
		if !bindingEqual(got[mac(i)], normB(testBinding(i))) {
			t.Errorf("binding %d after reopen = %+v, want %+v", i, got[mac(i)], testBinding(i))
		}
	}
	if _, err := s.Registration(mac(1)); err != nil {
		t.Errorf("registration after reopen: %v", err)
	}
	ev2, err := s.AddEvent(Event{Kind: EventRenewed, MAC: mac(1)})
	if err != nil || ev2.Seq != ev.Seq+1 {
		t.Errorf("event after reopen Seq = %d, %v; want %d", ev2.Seq, err, ev.Seq+1)
	}
}

func TestConcurrentCommit(t *testing.T) {
	numberFromOne(t)
	s, _ := openTest(t, Options{}) // fsync on: the real group commit
	const workers, per = 64, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*per)
	for w := range workers {
		wg.Go(func() {
			for j := range per {
				i := w*per + j
				if err := s.CommitBinding(testBinding(i)); err != nil {
					errs <- err
				}
				if j%3 == 0 {
					if _, err := s.AddEvent(Event{Kind: EventBound, MAC: mac(i)}); err != nil {
						errs <- err
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	all, err := s.Bindings()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != workers*per {
		t.Fatalf("%d bindings landed, want %d", len(all), workers*per)
	}
	for _, b := range all {
		i := int(binary.BigEndian.Uint32(b.MAC[2:]))
		if !bindingEqual(b, normB(testBinding(i))) {
			t.Errorf("binding %d = %+v, want %+v", i, b, testBinding(i))
		}
	}
	evs, err := s.Events(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := workers * ((per + 2) / 3); len(evs) != want {
		t.Errorf("%d events, want %d", len(evs), want)
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has Seq %d: sequence has a gap or duplicate", i, e.Seq)
		}
	}
}

func TestEventsOrderingAndRetention(t *testing.T) {
	numberFromOne(t)
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{NoSync: true, EventRetention: 10})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := range 25 {
		e := Event{Seq: 999, Kind: EventBound, MAC: mac(i), ISP: "alpha", IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), Reason: fmt.Sprint("r", i)}
		if i > 0 {
			e.Time = t0.Add(time.Duration(i) * time.Second)
		}
		got, err := s.AddEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		if got.Seq != uint64(i+1) {
			t.Fatalf("AddEvent %d: Seq = %d, want %d", i, got.Seq, i+1)
		}
		if got.Time.IsZero() {
			t.Fatalf("AddEvent %d: Time not set", i)
		}
	}
	evs, err := s.Events(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 10 {
		t.Fatalf("Events = %d, want 10 (retention)", len(evs))
	}
	for j, e := range evs {
		i := 15 + j
		want := Event{Seq: uint64(i + 1), Time: t0.Add(time.Duration(i) * time.Second), Kind: EventBound, MAC: mac(i), ISP: "alpha", IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), Reason: fmt.Sprint("r", i)}
		if e != want {
			t.Errorf("Events[%d] = %+v, want %+v", j, e, want)
		}
	}
	page, err := s.Events(20, 2)
	if err != nil || len(page) != 2 || page[0].Seq != 21 || page[1].Seq != 22 {
		t.Errorf("Events(20, 2) = %+v, %v; want seqs 21, 22", page, err)
	}
	if page, _ := s.Events(25, 10); len(page) != 0 {
		t.Errorf("Events(25) = %d events, want 0", len(page))
	}
	if page, _ := s.Events(^uint64(0), 10); len(page) != 0 {
		t.Errorf("Events(max) = %d events, want 0", len(page))
	}
	if last, _ := s.LastEventSeq(); last != 25 {
		t.Errorf("LastEventSeq = %d, want 25", last)
	}
	s.Close()

	// Lower retention on reopen: the next add trims to 3; Seq continues.
	s, err = Open(path, Options{NoSync: true, EventRetention: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := s.AddEvent(Event{Kind: EventExpired, Time: t0.Add(26 * time.Second)})
	if err != nil || e.Seq != 26 {
		t.Fatalf("AddEvent after reopen = %d, %v; want 26", e.Seq, err)
	}
	evs, _ = s.Events(0, 0)
	if len(evs) != 3 || evs[0].Seq != 24 || evs[2].Seq != 26 {
		t.Errorf("after trim to 3: %+v", evs)
	}
	if _, err := s.AddEvent(Event{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddEvent without kind: %v, want ErrInvalid", err)
	}
}

func TestOpenLocked(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	_ = s
	start := time.Now()
	s2, err := Open(path, Options{})
	took := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a held file succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Open: %v, want ErrLocked", err)
	}
	for _, want := range []string{path, "another ispmux"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if took > 3*time.Second {
		t.Errorf("second Open took %v, want about %v", took, DefaultLockTimeout)
	}
	t.Logf("second Open after %v: %v", took, err)
}

func TestClosed(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitBinding(testBinding(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("CommitBinding after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Bindings(); !errors.Is(err, ErrClosed) {
		t.Errorf("Bindings after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
}

func putRaw(t *testing.T, s *Store, bucket, key, val []byte) {
	t.Helper()
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(key, val) }); err != nil {
		t.Fatal(err)
	}
}

func checkCorrupt(t *testing.T, what string, err error, bucket []byte, key []byte) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("%s: %v, want ErrCorrupt", what, err)
		return
	}
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Bucket != string(bucket) || !bytes.Equal(ce.Key, key) {
		t.Errorf("%s: %v does not name bucket %s key %x", what, err, bucket, key)
	}
	if !strings.Contains(err.Error(), string(bucket)) || !strings.Contains(err.Error(), fmt.Sprintf("%x", key)) {
		t.Errorf("%s: message %q lacks bucket or key", what, err)
	}
}

func TestCorruptValue(t *testing.T) {
	numberFromOne(t)
	s, _ := openTest(t, Options{NoSync: true})
	for i := range 3 {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
		if err := s.PutRegistration(Registration{MAC: mac(i), ISP: "a", Source: SourceAPI}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddEvent(Event{Kind: EventBound, MAC: mac(i)}); err != nil {
			t.Fatal(err)
		}
	}
	b1 := testBinding(1)
	m1 := mac(1)
	bkey := bindingKey(b1.Access, b1.VLAN, b1.MAC)
	putRaw(t, s, bucketBindings, bkey, []byte{1, 0xff, 0xff})
	putRaw(t, s, bucketRegistrations, m1[:], []byte{9, 1, 2})
	putRaw(t, s, bucketEvents, seqKey(2), []byte{})

	_, err := s.Binding(b1.Access, b1.VLAN, b1.MAC)
	checkCorrupt(t, "Binding", err, bucketBindings, bkey)
	bs, err := s.Bindings()
	checkCorrupt(t, "Bindings", err, bucketBindings, bkey)
	if len(bs) != 2 {
		t.Errorf("Bindings returned %d good values, want 2", len(bs))
	}
	_, err = s.Registration(mac(1))
	checkCorrupt(t, "Registration", err, bucketRegistrations, m1[:])
	rs, err := s.Registrations()
	checkCorrupt(t, "Registrations", err, bucketRegistrations, m1[:])
	if len(rs) != 2 {
		t.Errorf("Registrations returned %d good values, want 2", len(rs))
	}
	evs, err := s.Events(0, 0)
	checkCorrupt(t, "Events", err, bucketEvents, seqKey(2))
	if len(evs) != 2 {
		t.Errorf("Events returned %d good values, want 2", len(evs))
	}

	// A value stored under the wrong key is corrupt too.
	good := encodeBinding(&b1)
	other := bindingKey("elsewhere", 1, b1.MAC)
	putRaw(t, s, bucketBindings, other, good)
	_, err = s.Binding("elsewhere", 1, b1.MAC)
	checkCorrupt(t, "Binding under wrong key", err, bucketBindings, other)
	if _, err := s.DeleteBinding("elsewhere", 1, b1.MAC); err != nil {
		t.Fatal(err)
	}

	// A commit repairs a corrupt binding.
	if err := s.CommitBinding(b1); err != nil {
		t.Fatalf("CommitBinding over corrupt value: %v", err)
	}
	if got, err := s.Binding(b1.Access, b1.VLAN, b1.MAC); err != nil || !bindingEqual(got, normB(b1)) {
		t.Errorf("after repair: %+v, %v", got, err)
	}
	if bs, err := s.Bindings(); err != nil || len(bs) != 3 {
		t.Errorf("Bindings after repair = %d, %v; want 3, nil", len(bs), err)
	}
}

// TestDecodeTruncated feeds every prefix and a few mutations of valid
// encodings to the decoders: each must fail cleanly.
func TestDecodeTruncated(t *testing.T) {
	b := testBinding(7)
	b.Relay = netip.MustParseAddr("fe80::1%eth0")
	bkey := bindingKey(b.Access, b.VLAN, b.MAC)
	m7 := mac(7)
	r := Registration{MAC: mac(7), CustomerID: "c", ISP: "i", Access: "a", Source: "api", Updated: time.Unix(5, 5)}
	e := Event{Time: time.Unix(5, 5), Kind: EventNak, MAC: mac(7), ISP: "i", IP: b.IP, Reason: "no"}
	b2 := b
	b2.ClientID, b2.Option82, b2.Options, b2.LeaseTime, b2.Customer = []byte{1, 2}, []byte{1, 1, 'x'}, []byte{3, 4, 1, 2, 3, 4}, time.Hour, "c"
	e2 := e
	e2.Customer, e2.Access = "c", "acc0.7"
	in := Intent{Kind: IntentDecline, ISP: "i", MAC: mac(7), Access: "a", VLAN: 7, IP: b.IP, Message: []byte{1, 2, 3}, Created: time.Unix(5, 5)}
	cases := []struct {
		name string
		val  []byte
		dec  func([]byte) error
	}{
		{"binding", encodeBinding(&b), func(v []byte) error { _, err := decodeBinding(bkey, v); return err }},
		{"registration", encodeRegistration(&r), func(v []byte) error { _, err := decodeRegistration(m7[:], v); return err }},
		{"event", encodeEvent(&e), func(v []byte) error { _, err := decodeEvent(seqKey(1), v); return err }},
		{"binding v2", encodeBinding(&b2), func(v []byte) error { _, err := decodeBinding(bkey, v); return err }},
		{"event v2", encodeEvent(&e2), func(v []byte) error { _, err := decodeEvent(seqKey(1), v); return err }},
		{"intent", encodeIntent(&in), func(v []byte) error { _, err := decodeIntent(seqKey(1), v); return err }},
	}
	for _, c := range cases {
		if err := c.dec(c.val); err != nil {
			t.Fatalf("%s: valid value: %v", c.name, err)
		}
		for n := range len(c.val) {
			if err := c.dec(c.val[:n]); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s truncated to %d bytes: %v, want ErrCorrupt", c.name, n, err)
			}
		}
		if err := c.dec(append(bytes.Clone(c.val), 0)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s with trailing byte: %v, want ErrCorrupt", c.name, err)
		}
		v := bytes.Clone(c.val)
		v[0] = formatVersion + 1
		if err := c.dec(v); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "version") {
			t.Errorf("%s with future version: %v, want ErrCorrupt naming the version", c.name, err)
		}
	}
	if _, err := decodeEvent([]byte{1}, encodeEvent(&e)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("event with short key: %v", err)
	}
	if _, err := decodeIntent([]byte{1}, encodeIntent(&in)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("intent with short key: %v", err)
	}
	v1 := encodeIntent(&in)
	v1[0] = formatV1
	if _, err := decodeIntent(seqKey(1), v1); !errors.Is(err, ErrCorrupt) {
		t.Errorf("intent in format 1: %v, want ErrCorrupt", err)
	}
}

func FuzzDecode(f *testing.F) {
	b := testBinding(1)
	f.Add(encodeBinding(&b))
	// Format 5 (before Since): format 6 with a zero Since less its flag
	// byte (TestBindingSince: the format 5 encoder's bytes).
	v5 := encodeBinding(&b)
	v5 = v5[:len(v5)-1]
	v5[0] = 5
	f.Add(v5)
	b.Since = time.Date(2026, 12, 1, 2, 3, 4, 5, time.UTC)
	f.Add(encodeBinding(&b))
	r := Registration{MAC: mac(1), ISP: "i", Source: "api", Updated: time.Unix(5, 5)}
	f.Add(encodeRegistration(&r))
	e := Event{Kind: EventBound, Customer: "c"}
	f.Add(encodeEvent(&e))
	in := Intent{Kind: IntentRelease, ISP: "i", Access: "a", IP: b.IP, Message: []byte{1}}
	f.Add(encodeIntent(&in))
	f.Fuzz(func(t *testing.T, v []byte) {
		if b, err := decodeBinding(bindingKey(b.Access, b.VLAN, b.MAC), v); err == nil {
			b2, err := decodeBinding(bindingKey(b.Access, b.VLAN, b.MAC), encodeBinding(&b))
			if err != nil || !bindingEqual(b2, b) {
				t.Fatalf("binding does not re-encode: %+v -> %+v, %v", b, b2, err)
			}
		}
		if r, err := decodeRegistration(r.MAC[:], v); err == nil {
			r2, err := decodeRegistration(r.MAC[:], encodeRegistration(&r))
			if err != nil || r2 != r {
				t.Fatalf("registration does not re-encode: %+v -> %+v, %v", r, r2, err)
			}
		}
		if in, err := decodeIntent(seqKey(1), v); err == nil {
			in2, err := decodeIntent(seqKey(1), encodeIntent(&in))
			if err != nil || !intentEqual(in, in2) {
				t.Fatalf("intent does not re-encode: %+v -> %+v, %v", in, in2, err)
			}
		}
		if e, err := decodeEvent(seqKey(1), v); err == nil {
			e2, err := decodeEvent(seqKey(1), encodeEvent(&e))
			if err != nil || e2 != e {
				t.Fatalf("event does not re-encode: %+v -> %+v, %v", e, e2, err)
			}
		}
	})
}

func TestCommitBindingEvent(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := Binding{MAC: MAC{2, 0, 0, 0, 1, 1}, Access: "acc0", ISP: "alpha", IP: netip.MustParseAddr("100.64.0.100"), Expires: time.Now().Add(time.Hour)}
	e, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: "alpha", IP: b.IP})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Binding("acc0", 0, b.MAC); err != nil || got.IP != b.IP {
		t.Errorf("binding %+v, %v", got, err)
	}
	evs, err := s.Events(0, 10)
	if err != nil || len(evs) != 1 || evs[0].Seq != e.Seq || evs[0].Kind != EventBound {
		t.Errorf("events %+v (returned %+v), %v", evs, e, err)
	}
	// An invalid binding stores neither.
	if _, err := s.CommitBindingEvent(Binding{MAC: b.MAC}, Event{Kind: EventBound}); !errors.Is(err, ErrInvalid) {
		t.Errorf("invalid binding: %v", err)
	}
	if evs, _ := s.Events(0, 10); len(evs) != 1 {
		t.Errorf("event stored with an invalid binding: %d events", len(evs))
	}
}

// TestForEachBindingBorrowed: the borrowed walk yields what the copying
// one does, allocates nothing per binding, and a Clone outlives the walk
// (the transaction closed, the store written since).
func TestForEachBindingBorrowed(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	const n = 300
	for i := range n {
		b := testBinding(i)
		b.ClientID, b.Option82, b.Options, b.Customer = []byte{1, byte(i)}, []byte{2, 1, byte(i)}, []byte{58, 4, 0, 0, 0, byte(i)}, fmt.Sprintf("cust-%d", i)
		b.LeaseTime = time.Hour
		if err := s.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	var want []Binding
	if err := s.ForEachBinding(func(b Binding) error { want = append(want, b); return nil }); err != nil {
		t.Fatal(err)
	}
	var kept []Binding
	i := 0
	if err := s.ForEachBindingBorrowed(func(b *Binding) error {
		if !reflect.DeepEqual(*b, want[i]) {
			t.Errorf("binding %d: %+v, want %+v", i, *b, want[i])
		}
		kept = append(kept, b.Clone())
		i++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if i != n {
		t.Fatalf("walked %d of %d", i, n)
	}
	for j := range 50 { // rewrite pages the walk lent
		if err := s.CommitBinding(testBinding(n + j)); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(kept, want) {
		t.Error("clones changed after the walk")
	}
	allocs := testing.AllocsPerRun(3, func() {
		_ = s.ForEachBindingBorrowed(func(*Binding) error { return nil })
	})
	if per := allocs / float64(n+50); per > 0.1 {
		t.Errorf("%.0f allocations for a walk of %d (%.2f each)", allocs, n+50, per)
	}
}
