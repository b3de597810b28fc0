package subscribers

// A store damaged while it is open (bit rot, a stray write under a running
// ispmux): what the store does after a recovered bbolt panic, read or
// write. Each test runs its work in a child process (storeChild) and logs
// every operation's result, or that it hung (5 s); a hang or a dead child
// fails it. From the review of the write guard (filecheck.go update,
// boltUpdate, beginRead): before the fixes, the two races and the damaged
// meta pages hung the store, and a listing with damaged meta pages killed
// the process.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// liveOp runs fn with a deadline and logs its result, or HUNG.
func liveOp(t *testing.T, what string, fn func() error) {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		t.Logf("CHILD: %s corrupt=%v: %v", what, errors.Is(err, ErrCorrupt), err)
	case <-time.After(5 * time.Second):
		t.Logf("CHILD: %s HUNG", what)
	}
}

// damage overwrites [off, off+n) of the file at p with junk.
func damage(t *testing.T, p string, off, n int64) {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, n)
	for k := range junk {
		junk[k] = byte(k*7 + 3)
	}
	if _, err := f.WriteAt(junk, off); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func liveReads(t *testing.T, s *Store, round string) {
	liveOp(t, round+" Registrations", func() error { _, err := s.Registrations(); return err })
	liveOp(t, round+" Bindings", func() error { _, err := s.Bindings(); return err })
	liveOp(t, round+" Events", func() error { _, err := s.Events(0, 10); return err })
}

// livePut is liveOp of a PutRegistration of device n (one write), logged
// as what.
func livePut(t *testing.T, s *Store, what string, n int) {
	liveOp(t, what, func() error {
		return s.PutRegistration(Registration{MAC: mac(n), CustomerID: fmt.Sprint("c-", n), ISP: "isp-1", Source: "api"})
	})
}

// liveParent is the parent's part of a live-damage test: it runs the test
// named name in a child process (storeChild) with env naming a copy of a
// closed store of 5000 bindings, logs the child's output and returns it.
// The child must exit cleanly after logging its Close, and nothing it did
// may have hung.
func liveParent(t *testing.T, name, env string) string {
	p := filepath.Join(t.TempDir(), "live.db")
	if err := os.WriteFile(p, storeOf5000(t), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := storeChild(t, name, env+"="+p)
	t.Logf("child (err %v):\n%s", err, tail(out, 4000))
	if err != nil || !strings.Contains(out, "CHILD: Close") {
		t.Fatalf("the process died or did not reach Close (%v)", err)
	}
	if strings.Contains(out, "HUNG") {
		t.Errorf("an operation hung after a recovered bbolt panic")
	}
	return out
}

// liveChild is the child's part: in the child (env set), it opens the
// store env names and returns it and its path; in the parent, ok is false.
func liveChild(t *testing.T, env string) (s *Store, path string, ok bool) {
	path = os.Getenv(env)
	if path == "" {
		return nil, "", false
	}
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, path, true
}

// damagePastMetas overwrites every page of the file at p past the two meta
// pages (the freelist included, which bbolt holds in memory).
func damagePastMetas(t *testing.T, p string) {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	damage(t, p, 2*4096, fi.Size()-2*4096)
}

// damageMetas overwrites the root bucket field of both meta pages (page
// header 16 bytes, then magic, version, page size, flags: 16 bytes): their
// checksums no longer match.
func damageMetas(t *testing.T, p string) {
	damage(t, p, 32, 8)
	damage(t, p, 4096+32, 8)
}

// TestLiveDamageReadsAfterWritePanic: pages past the metas and the freelist
// damaged under the open store, as TestCorruptPageWriteNoCrash; the first
// write panics (recovered, the store is broken); do reads still return?
func TestLiveDamageReadsAfterWritePanic(t *testing.T) {
	if s, p, ok := liveChild(t, "ISPMUX_TEST_LIVE_WRITE_THEN_READ"); ok {
		damagePastMetas(t, p)
		livePut(t, s, "PutRegistration", 9999)
		// The failed write is counted for the operator (metrics:
		// ispmux_store_write_errors_total).
		n := s.CommitStats().WriteErrors
		if n == 0 {
			t.Errorf("CommitStats().WriteErrors = 0 after a write the damage failed")
		}
		// Every later write, refused by the broken store, counts too:
		// the alert stays up while the store refuses writes.
		if err := s.PutRegistration(Registration{MAC: MAC{2, 0, 0, 0, 0x27, 0x0f}, ISP: "alpha", CustomerID: "c", Source: "api"}); err == nil {
			t.Errorf("a write after the damage was accepted")
		}
		if m := s.CommitStats().WriteErrors; m != n+1 {
			t.Errorf("CommitStats().WriteErrors = %d after a refused write, want %d", m, n+1)
		}
		liveReads(t, s, "after write")
		liveOp(t, "Close", s.Close)
		return
	}
	liveParent(t, "TestLiveDamageReadsAfterWritePanic", "ISPMUX_TEST_LIVE_WRITE_THEN_READ")
}

// TestLiveDamageMetaNoHang: both meta pages damaged under the open
// store (bit rot, or a stray write, on the file's first 8 KiB). bbolt's
// DB.meta() panics in beginTx with db.metalock held and db.mmaplock
// read-locked (bbolt takes and releases them without defer there):
// guardRead turned the first read's panic into ErrCorrupt, but the locks
// stayed held, and every later read, every write, and Close (db.Close
// waits for mmaplock) waited for ever. Now the store is dead after it
// (beginRead): everything returns the error at once.
func TestLiveDamageMetaNoHang(t *testing.T) {
	if s, p, ok := liveChild(t, "ISPMUX_TEST_LIVE_META"); ok {
		damageMetas(t, p)
		liveReads(t, s, "first")
		liveReads(t, s, "second")
		livePut(t, s, "PutRegistration", 9999)
		liveOp(t, "Close", s.Close)
		fmt.Fprintln(os.Stderr, "child done")
		return
	}
	liveParent(t, "TestLiveDamageMetaNoHang", "ISPMUX_TEST_LIVE_META")
}

// TestLiveDamageMetaWriteFirst: the same damage, met first by a write
// (update recovers it: beginRWTx released metalock by defer, rwlock
// stays held, the store is broken). The first read then panics in
// beginTx and is recovered by guardRead with metalock held: every later
// read waits for ever (a "reads keep working" store that serves nothing,
// and the API's and the DHCP proxy's readers pile up).
func TestLiveDamageMetaWriteFirst(t *testing.T) {
	if s, p, ok := liveChild(t, "ISPMUX_TEST_LIVE_META_W"); ok {
		damageMetas(t, p)
		livePut(t, s, "PutRegistration", 9999)
		liveReads(t, s, "first")
		liveOp(t, "Close", s.Close)
		return
	}
	liveParent(t, "TestLiveDamageMetaWriteFirst", "ISPMUX_TEST_LIVE_META_W")
}

// TestLiveDamageOwnWriteRacesCheckpoint: a background checkpoint
// (checkpointRecords: its own bbolt transaction, outside the group
// commit) meets a damaged page and bbolt's rollback panics on the
// freelist page, leaving db.rwlock held. An updateOwn write (a webhook
// cursor: ten a second on a busy box; a Backup's mark) that the leader
// began meanwhile passed boltUpdate's broken check before the store was
// marked broken (own writes do not take s.bmu, which serialises the
// checkpointing ones), and waits in bbolt's Begin for the writer lock for
// ever: the leader never hands over, its followers never wake, and Close
// waits for ever for s.mu (the stuck leader's read lock). The damage is
// simulated by testHookApplied (in the checkpoint's transaction): junk
// over every page past the metas, then a panic, as a Put meeting one
// would.
func TestLiveDamageOwnWriteRacesCheckpoint(t *testing.T) {
	if s, p, ok := liveChild(t, "ISPMUX_TEST_LIVE_OWN_RACE"); ok {
		withMaxPending(t, 16, nil, nil)
		own := make(chan error, 1)
		hooked := make(chan struct{})
		var fired bool
		testHookApplied = func() {
			if fired {
				return
			}
			fired = true
			go func() { own <- s.SetWebhookCursor("isp-1", 5) }()
			time.Sleep(300 * time.Millisecond) // the own write waits in bbolt's Begin
			damagePastMetas(t, p)
			close(hooked)
			panic("simulated: a page of the checkpoint's descent is damaged")
		}
		defer func() { testHookApplied = nil }()
		for i := range 20 {
			if err := s.CommitBinding(testBinding(i)); err != nil {
				t.Logf("CHILD: CommitBinding %d: %v", i, err)
			}
		}
		select {
		case <-hooked:
		case <-time.After(5 * time.Second):
			t.Fatalf("no background checkpoint ran")
		}
		time.Sleep(100 * time.Millisecond)
		liveOp(t, "SetWebhookCursor (begun during the checkpoint)", func() error { return <-own })
		livePut(t, s, "PutRegistration (after)", 9999)
		liveOp(t, "Close", s.Close)
		return
	}
	liveParent(t, "TestLiveDamageOwnWriteRacesCheckpoint", "ISPMUX_TEST_LIVE_OWN_RACE")
}

// TestLiveDamageMetaListingNoCrash: with both meta pages damaged, a
// listing read through snapshotView (Bindings, Events) first: its
// s.db.Begin(false) ran outside guardRead, and bbolt's panic in DB.meta()
// ended the process. Now it begins through beginRead.
func TestLiveDamageMetaListingNoCrash(t *testing.T) {
	if s, p, ok := liveChild(t, "ISPMUX_TEST_LIVE_META_SNAP"); ok {
		damageMetas(t, p)
		liveOp(t, "Bindings", func() error { _, err := s.Bindings(); return err })
		liveOp(t, "Close", s.Close)
		return
	}
	out := liveParent(t, "TestLiveDamageMetaListingNoCrash", "ISPMUX_TEST_LIVE_META_SNAP")
	if !strings.Contains(out, "CHILD: Bindings") {
		t.Fatalf("the listing did not return")
	}
}

// TestLiveDamageCheckpointRacesOwnWrite is the same race the other way
// round: an updateOwn write in the leader (a webhook cursor) meets the
// damage and its rollback panics (db.rwlock held) while a background
// checkpoint, begun before the store was marked broken, waits in bbolt's
// Begin. The checkpoint held s.bmu (write) for ever, so every listing
// through snapshotView (Bindings, Events, the event readers of the API
// and webhooks) waited for ever too, besides Close. The own write's panic
// is simulated inside its transaction after the damage, as a Put meeting
// a damaged page would.
func TestLiveDamageCheckpointRacesOwnWrite(t *testing.T) {
	if s, p, ok := liveChild(t, "ISPMUX_TEST_LIVE_CKPT_RACE"); ok {
		ownInside := make(chan struct{})
		withMaxPending(t, 16, func() { <-ownInside }, nil)
		for i := range 16 {
			if err := s.CommitBinding(testBinding(i)); err != nil {
				t.Logf("CHILD: CommitBinding %d: %v", i, err)
			}
		}
		liveOp(t, "updateOwn (panics in its transaction)", func() error {
			return s.updateOwn(func(tx *bolt.Tx) error {
				close(ownInside)
				time.Sleep(300 * time.Millisecond) // the checkpoint waits in Begin
				damagePastMetas(t, p)
				panic("simulated: the cursor's Put meets a damaged page")
			})
		})
		liveOp(t, "Registrations", func() error { _, err := s.Registrations(); return err })
		liveOp(t, "Bindings", func() error { _, err := s.Bindings(); return err })
		liveOp(t, "Events", func() error { _, err := s.Events(0, 10); return err })
		liveOp(t, "Close", s.Close)
		if os.Getenv("ISPMUX_TEST_LIVE_STACKS") != "" {
			pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		}
		return
	}
	liveParent(t, "TestLiveDamageCheckpointRacesOwnWrite", "ISPMUX_TEST_LIVE_CKPT_RACE")
}
