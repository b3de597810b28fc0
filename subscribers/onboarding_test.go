package subscribers

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func testOnboarding(i byte, exp time.Time) OnboardingLease {
	return OnboardingLease{MAC: MAC{2, 0, 0, 0, 9, i}, Access: "acc0", VLAN: 7,
		IP: netip.AddrFrom4([4]byte{100, 64, 0, 10 + i}), Granted: exp.Add(-20 * time.Second), Expires: exp}
}

// Commit, renew (no event), list, end (event), end again (nothing); the
// events have no ISP, so no ISP's index sees them; the leases are not
// bindings.
func TestOnboardingLeases(t *testing.T) {
	numberFromOne(t)
	s, path := openTest(t, Options{NoSync: true})
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 5, time.UTC)
	a, b := testOnboarding(2, t0), testOnboarding(1, t0.Add(time.Second))
	for _, l := range []OnboardingLease{a, b} {
		e, err := s.CommitOnboarding(l, Event{Kind: EventOnboarded, MAC: l.MAC, Access: l.Access, IP: l.IP, LeaseEnd: l.Expires, Reason: "onboarding lease 20s"})
		if err != nil || e.Seq == 0 || e.Kind != EventOnboarded {
			t.Fatalf("CommitOnboarding: %+v, %v", e, err)
		}
	}
	// A renewal: a new lease end, no event.
	a.Expires = t0.Add(time.Minute)
	if e, err := s.CommitOnboarding(a, Event{}); err != nil || e != (Event{}) {
		t.Fatalf("renewal: %+v, %v; want no event", e, err)
	}
	ls, err := s.OnboardingLeases()
	if err != nil || len(ls) != 2 || ls[0] != b || ls[1] != a {
		t.Fatalf("OnboardingLeases = %+v, %v\nwant %+v, %+v (sorted by MAC)", ls, err, b, a)
	}
	if bs, err := s.Bindings(); err != nil || len(bs) != 0 {
		t.Errorf("Bindings = %+v, %v; onboarding leases are not bindings", bs, err)
	}

	e, found, err := s.EndOnboarding(a.MAC, Event{Kind: EventOnboardingEnded, MAC: a.MAC, Access: a.Access, IP: a.IP, Reason: OnboardingEndReleased})
	if err != nil || !found || e.Seq != 3 || e.Reason != OnboardingEndReleased {
		t.Fatalf("EndOnboarding: %+v, %v, %v", e, found, err)
	}
	e, found, err = s.EndOnboarding(a.MAC, Event{Kind: EventOnboardingEnded, MAC: a.MAC, Reason: OnboardingEndExpired})
	if err != nil || found || e != (Event{}) {
		t.Fatalf("second EndOnboarding: %+v, %v, %v; want nothing", e, found, err)
	}
	evs, err := s.Events(0, 0)
	if err != nil || len(evs) != 3 {
		t.Fatalf("Events = %+v, %v; want 3 (2 grants, 1 end)", evs, err)
	}
	if evs[0].Kind != EventOnboarded || !evs[0].LeaseEnd.Equal(t0) || evs[0].ISP != "" || evs[0].IP != a.IP || evs[0].Access != "acc0" ||
		evs[2].Kind != EventOnboardingEnded || evs[2].Reason != "released" {
		t.Errorf("events %+v", evs)
	}
	// Not in any ISP's index.
	s.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketEventIndex).Stats().KeyN; n != 0 {
			t.Errorf("events-by-isp has %d entries, want 0", n)
		}
		return nil
	})
	if got, err := s.EventsOf("alpha", 0, 0); err != nil || len(got) != 0 {
		t.Errorf("EventsOf(alpha) = %+v, %v", got, err)
	}

	// Survives a reopen.
	s.Close()
	s2, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if ls, err := s2.OnboardingLeases(); err != nil || len(ls) != 1 || ls[0] != b {
		t.Errorf("after reopen: %+v, %v; want %+v", ls, err, b)
	}
}

func TestOnboardingInvalid(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	t0 := time.Now()
	for name, l := range map[string]OnboardingLease{
		"no access": {MAC: MAC{2}, IP: netip.MustParseAddr("100.64.0.2"), Expires: t0},
		"IPv6":      {MAC: MAC{2}, Access: "a", IP: netip.MustParseAddr("2001:db8::1"), Expires: t0},
		"no end":    {MAC: MAC{2}, Access: "a", IP: netip.MustParseAddr("100.64.0.2")},
	} {
		if _, err := s.CommitOnboarding(l, Event{Kind: EventOnboarded}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, _, err := s.EndOnboarding(MAC{2}, Event{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("EndOnboarding without a kind: %v, want ErrInvalid", err)
	}
	if evs, _ := s.Events(0, 0); len(evs) != 0 {
		t.Errorf("events written by refused calls: %+v", evs)
	}
}

// A value that does not decode (or is for another MAC) is reported, the
// others are returned.
func TestOnboardingCorrupt(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	good := testOnboarding(1, time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC))
	if _, err := s.CommitOnboarding(good, Event{}); err != nil {
		t.Fatal(err)
	}
	other := testOnboarding(3, good.Expires)
	bad := []byte{2, 0, 0, 0, 9, 2}
	putRaw(t, s, bucketOnboarding, bad, encodeOnboarding(&other))
	ls, err := s.OnboardingLeases()
	checkCorrupt(t, "OnboardingLeases", err, bucketOnboarding, bad)
	if len(ls) != 1 || ls[0] != good {
		t.Errorf("OnboardingLeases = %+v, want the good one", ls)
	}
	v := encodeOnboarding(&good)
	for n := range len(v) {
		if _, err := decodeOnboarding(good.MAC[:], v[:n]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("truncated to %d: %v", n, err)
		}
	}
}

// TestMigrateV4: a schema-4 file (no onboarding bucket) is migrated:
// the bucket is created, everything else is as it was, a second open
// changes nothing.
func TestMigrateV4(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	if err := s.CommitBinding(testBinding(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddEvent(Event{Kind: EventBound, ISP: "alpha"}); err != nil {
		t.Fatal(err)
	}
	// Make it what schema 4 wrote: no onboarding bucket, schema byte 4.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketOnboarding); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keySchema, []byte{4})
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open of a schema-4 file: %v", err)
	}
	if bs, err := s.Bindings(); err != nil || len(bs) != 1 {
		t.Errorf("Bindings after migration = %+v, %v", bs, err)
	}
	if evs, err := s.EventsOf("alpha", 0, 0); err != nil || len(evs) != 1 {
		t.Errorf("EventsOf(alpha) after migration = %+v, %v", evs, err)
	}
	if ls, err := s.OnboardingLeases(); err != nil || len(ls) != 0 {
		t.Errorf("OnboardingLeases after migration = %+v, %v", ls, err)
	}
	l := testOnboarding(1, time.Now().Add(time.Minute))
	if _, err := s.CommitOnboarding(l, Event{Kind: EventOnboarded}); err != nil {
		t.Errorf("CommitOnboarding after migration: %v", err)
	}
	s.Close()
	if v := rawSchema(t, path); !bytes.Equal(v, []byte{schemaVersion}) {
		t.Errorf("schema after migration = %x, want %02x", v, schemaVersion)
	}
	sum := fileSum(t, path)
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ls, err := s.OnboardingLeases(); err != nil || len(ls) != 1 {
		t.Errorf("after reopen: %+v, %v", ls, err)
	}
	s.Close()
	if fileSum(t, path) != sum {
		t.Error("a second Open of a migrated file changed it")
	}
}

// The committed schema-1 and schema-2 fixtures migrate all the way, with
// an (empty) onboarding bucket.
func TestMigrateFixturesOnboarding(t *testing.T) {
	for _, path := range []string{openV1Copy(t), openV2Copy(t)} {
		s, err := Open(path, Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		if ls, err := s.OnboardingLeases(); err != nil || len(ls) != 0 {
			t.Errorf("%s: OnboardingLeases = %+v, %v", path, ls, err)
		}
		s.Close()
		if v := rawSchema(t, path); !bytes.Equal(v, []byte{schemaVersion}) {
			t.Errorf("%s: schema %x", path, v)
		}
	}
}
