package subscribers

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ispmux/ispmux/internal/crashtest"
	"github.com/ispmux/ispmux/internal/failpoint"
)

// reopen closes s and opens its file again with opts (closed at the
// test's end).
func reopen(t *testing.T, s *Store, opts Options) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	o, err := Open(s.Path(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// restoreCopy writes a Backup of s to a new file and opens it.
func restoreCopy(t *testing.T, s *Store, opts Options) (*Store, string) {
	t.Helper()
	var buf bytes.Buffer
	if _, err := s.Backup(&buf); err != nil {
		t.Fatalf("Backup: %v", err)
	}
	path := filepath.Join(t.TempDir(), "restored.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open of the copy: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

func addEvents(t *testing.T, s *Store, n int, isp string) []uint64 {
	t.Helper()
	var seqs []uint64
	for i := range n {
		e, err := s.AddEvent(Event{Kind: EventBound, MAC: mac(i), ISP: isp})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, e.Seq)
	}
	return seqs
}

// A store restored from a backup copy must not give out again the numbers
// the original gave out after the backup: webhook receivers drop an id
// (the number) they have seen, and API pollers resume after their last
// one, so new events under reused numbers were silently lost to both.
// The copy's events keep their own numbers (the same events, the same
// ids); the original, unmarked after the copy, goes on without a jump.
func TestRestoredCopySkipsEventSeqs(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	before := addEvents(t, s, 5, "alpha")
	c, _ := restoreCopy(t, s, Options{NoSync: true})
	after := addEvents(t, s, 3, "alpha") // the original goes on after the backup
	if after[0] != before[4]+1 {
		t.Errorf("original after the backup: seq %d, want %d (no jump)", after[0], before[4]+1)
	}
	if c.OpenedFromCopy() < minCopyJump {
		t.Errorf("OpenedFromCopy = %d, want >= %d", c.OpenedFromCopy(), minCopyJump)
	}
	got := addEvents(t, c, 2, "alpha")
	if got[0] <= after[2] || got[0] != before[4]+c.OpenedFromCopy()+1 || got[1] != got[0]+1 {
		t.Errorf("restored copy's new events: %v; the original gave out up to %d, the copy's newest %d, jump %d", got, after[2], before[4], c.OpenedFromCopy())
	}
	evs, err := c.Events(0, 0)
	if err != nil || len(evs) != 7 || evs[4].Seq != before[4] {
		t.Fatalf("copy's log: %d events, %v; want the 5 copied with their numbers and 2 new", len(evs), err)
	}
	if last, _ := c.LastEventSeq(); last != got[1] {
		t.Errorf("LastEventSeq = %d, want %d", last, got[1])
	}
	// The jump is made once: reopened, the copy is a store like any other.
	c2 := reopen(t, c, Options{NoSync: true})
	if c2.OpenedFromCopy() != 0 {
		t.Errorf("reopened copy jumped again: %d", c2.OpenedFromCopy())
	}
	if e := addEvents(t, c2, 1, "alpha"); e[0] != got[1]+1 {
		t.Errorf("reopened copy: seq %d, want %d", e[0], got[1]+1)
	}
	// And the original, reopened, was not taken for a copy.
	o := reopen(t, s, Options{NoSync: true})
	if o.OpenedFromCopy() != 0 {
		t.Errorf("the original, reopened after a backup, jumped: %d", o.OpenedFromCopy())
	}
}

// The log is trimmed to its newest EventRetention events by count: the
// numbers a restored copy skipped are not events, and must not push the
// copy's own events out of the log at its first new event.
func TestRestoredCopyKeepsItsLog(t *testing.T) {
	numberFromOne(t)
	s, _ := openTest(t, Options{NoSync: true, EventRetention: 10})
	addEvents(t, s, 8, "alpha")
	c, _ := restoreCopy(t, s, Options{NoSync: true, EventRetention: 10})
	addEvents(t, c, 3, "alpha")
	evs, err := c.Events(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 10 || evs[0].Seq != 2 {
		var seqs []uint64
		for _, e := range evs {
			seqs = append(seqs, e.Seq)
		}
		t.Fatalf("copy's log after 3 new events: %v; want the newest 10 (copied 2..8 and the 3 new)", seqs)
	}
	// Trimming by count still works past the jump.
	addEvents(t, c, 20, "alpha")
	evs, err = c.Events(0, 0)
	if err != nil || len(evs) != 10 || evs[0].Seq <= 8 {
		t.Fatalf("after 20 more: %d events from %d, %v; want the newest 10, all new", len(evs), evs[0].Seq, err)
	}
}

// A mark with no record of a backup in progress beside the file (one an
// older ispmux, which kept no such record, left on its live store when it
// stopped between the copy and the removal of the mark) makes Open jump
// like a copy's: a gap in the numbers, nothing lost.
func TestBackupMarkLeftOnLiveStore(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	seqs := addEvents(t, s, 3, "")
	if err := s.updateOwn(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyBackupCopy, []byte("garbage")) // not 8 bytes: time unknown
	}); err != nil {
		t.Fatal(err)
	}
	o := reopen(t, s, Options{NoSync: true})
	if o.OpenedFromCopy() != minCopyJump {
		t.Errorf("jump %d, want %d (backup time unknown)", o.OpenedFromCopy(), minCopyJump)
	}
	evs, err := o.Events(0, 0)
	if err != nil || len(evs) != 3 {
		t.Fatalf("events kept: %d, %v", len(evs), err)
	}
	if e := addEvents(t, o, 1, ""); e[0] != seqs[2]+minCopyJump+1 {
		t.Errorf("next seq %d, want %d", e[0], seqs[2]+minCopyJump+1)
	}
}

// TestRestoredCopyJumpsISPSeqs: a restored copy's numbers, the log's and
// every ISP's (those with events in the copy, and one with none, whose
// sequence is at the base), go on above every number the original gave
// out after the backup: an ISP's receiver, which saw the original's, never
// gets a number again for another event. And the jump is a gap, in both:
// no reader is told it missed events across it (API missed, a stream's
// reset, webhook events-lost), whether its place is the copy's newest or
// a number the original gave out after the backup, also once the log has
// trimmed every copied event.
func TestRestoredCopyJumpsISPSeqs(t *testing.T) {
	numberFromOne(t)
	opts := Options{NoSync: true, EventRetention: 10}
	s, _ := openTest(t, opts)
	add := func(s *Store, isp string) Event {
		t.Helper()
		e, err := s.AddEvent(Event{Kind: EventCustomerCreated, ISP: isp})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	for _, isp := range []string{"alpha", "beta", "alpha", "", "beta", "alpha"} {
		add(s, isp)
	}
	c, _ := restoreCopy(t, s, opts)
	// The original goes on after the backup: a receiver may have seen these.
	seen := map[string]uint64{"": 0}
	for _, isp := range []string{"alpha", "gamma", "alpha", "", "beta", "gamma", "alpha"} {
		e := add(s, isp)
		if isp != "" {
			seen[isp] = e.ISPSeq
		}
		seen[""] = e.Seq
	}
	if seen["alpha"] != 6 || seen["beta"] != 3 || seen["gamma"] != 2 || seen[""] != 13 {
		t.Fatalf("the original's numbers after the backup: %v", seen)
	}
	copied := map[string]uint64{"alpha": 3, "beta": 2, "gamma": 0, "": 6} // the copy's newest
	jump := c.OpenedFromCopy()
	if jump < minCopyJump {
		t.Fatalf("OpenedFromCopy = %d", jump)
	}
	first := map[string]uint64{} // the copy's first new numbers
	for _, isp := range []string{"alpha", "gamma", "beta", ""} {
		e := add(c, isp)
		if _, ok := first[""]; !ok {
			first[""] = e.Seq
		}
		if isp != "" {
			first[isp] = e.ISPSeq
		}
	}
	for isp, n := range first {
		if n <= seen[isp] || n != copied[isp]+jump+1 {
			t.Errorf("copy's first new number of %q: %d; the original gave out up to %d, the copy's newest %d, jump %d", isp, n, seen[isp], copied[isp], jump)
		}
	}
	// A reader's place: the copy's newest, or the original's after the
	// backup (the copy's new events are then all unread), nothing missed.
	// missed: after+1 < oldest.
	check := func(what string) {
		t.Helper()
		for _, isp := range []string{"alpha", "beta", "gamma", ""} {
			for _, after := range []uint64{copied[isp], seen[isp]} {
				evs, oldest, newest, err := c.EventsPage(isp, after, 0)
				if err != nil || len(evs) == 0 || newest < first[isp] || after+1 < oldest {
					t.Errorf("%s: %q after %d: %d events, bounds %d..%d, %v; want the new ones, none missed", what, isp, after, len(evs), oldest, newest, err)
					continue
				}
				n := evs[0].ISPSeq
				if isp == "" {
					n = evs[0].Seq
				}
				if after >= copied[isp] && n != first[isp] {
					t.Errorf("%s: %q after %d: first event %d, want %d", what, isp, after, n, first[isp])
				}
				if isp == "" {
					continue
				}
				if _, wo, _, err := c.WebhookEvents(isp, after, 0); err != nil || after+1 < wo {
					t.Errorf("%s: webhook of %q at %d: oldest %d, %v: events-lost %d..%d", what, isp, after, wo, err, after+1, wo-1)
				}
			}
		}
	}
	check("copied events kept")
	// Every copied event trimmed (the copy's 6 and 4 new ones, and 6 more:
	// the newest 10 kept): the jump is still a gap, each reader's oldest
	// the number after its copied newest.
	for range 6 {
		add(c, "")
	}
	if evs, _ := c.Events(0, 1); len(evs) != 1 || evs[0].Seq != first[""] {
		t.Fatalf("copy's oldest: %+v; want Seq %d, its first new event", evs, first[""])
	}
	for isp, n := range copied {
		if _, oldest, _, err := c.EventsPage(isp, 0, 0); err != nil || oldest != n+1 {
			t.Errorf("%q's oldest with the copied events trimmed: %d, %v; want %d (the jump is no events)", isp, oldest, err, n+1)
		}
	}
	check("copied events trimmed")
}

func TestCopyJump(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	for _, c := range []struct {
		backup, now time.Time
		want        uint64
	}{
		{time.Time{}, at, minCopyJump},
		{at, at.Add(-time.Hour), minCopyJump}, // clock went back
		{at, at.Add(90 * time.Second), minCopyJump + 91*copyEventRate},
		{at, at.Add(100 * 365 * 24 * time.Hour), minCopyJump + (100*365*24*3600+1)*copyEventRate},
	} {
		if got := copyJump(c.backup, c.now); got != c.want {
			t.Errorf("copyJump(%v, %v) = %d, want %d", c.backup, c.now, got, c.want)
		}
		if got := copyJump(c.backup, c.now); got >= 1<<53 {
			t.Errorf("copyJump(%v, %v) = %d: past 2^53", c.backup, c.now, got)
		}
	}
}

// The newest n events of a restored copy's log reach back past the
// numbers it skipped (ctl's `events --last`, over the control socket).
func TestSeqBeforeAcrossTheJump(t *testing.T) {
	numberFromOne(t)
	s, _ := openTest(t, Options{NoSync: true})
	addEvents(t, s, 6, "")
	c, _ := restoreCopy(t, s, Options{NoSync: true})
	got := addEvents(t, c, 2, "")
	last := got[1]
	for _, tc := range []struct {
		n    uint64
		want int // events read
	}{{1, 1}, {2, 2}, {3, 3}, {5, 5}, {8, 8}, {100, 8}} {
		evs, err := c.Events(c.SeqBefore(last, tc.n), int(tc.n))
		if err != nil || len(evs) != tc.want || evs[len(evs)-1].Seq != last {
			t.Errorf("newest %d: %d events, %v; want %d ending at %d", tc.n, len(evs), err, tc.want, last)
		}
	}
	if got := s.SeqBefore(6, 2); got != 4 {
		t.Errorf("SeqBefore without a jump = %d, want 4", got)
	}
}

const backupCrashEnv = "SUBSCRIBERS_BACKUP_CRASH_CHILD"

// A Backup is SIGKILLed (the child, armed at the failpoint) after the
// live store's mark is durable and before any of the copy is written, and
// after the whole copy is written and before the mark is removed. The
// live store, reopened, is the store it was: its event numbers go on
// without a jump (it is not taken for a copy, and does not log that it
// was opened from one). A copy written whole before the crash is marked:
// opened, it jumps.
func TestBackupCrash(t *testing.T) {
	if dir := os.Getenv(backupCrashEnv); dir != "" {
		backupCrashChild(t, dir)
		return
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	for _, point := range []string{failpoint.BackupAfterMark, failpoint.BackupAfterCopy} {
		t.Run(point, func(t *testing.T) {
			dir := t.TempDir()
			crashtest.KillAt(t, "TestBackupCrash", backupCrashEnv+"="+dir, point)
			live, err := Open(filepath.Join(dir, "live.db"), Options{})
			if err != nil {
				t.Fatalf("reopen the live store: %v", err)
			}
			t.Cleanup(func() { live.Close() })
			if j := live.OpenedFromCopy(); j != 0 {
				t.Errorf("the live store, reopened after a crash at %s, was taken for a backup copy: its event numbers jumped %d", point, j)
			}
			// The child created the store: its numbers start past its
			// clock base.
			if e := addEvents(t, live, 1, "alpha"); e[0] != live.EventBase()+backupCrashEvents+1 {
				t.Errorf("the live store's next event: seq %d, want %d", e[0], live.EventBase()+backupCrashEvents+1)
			}
			if _, err := os.Stat(backupPendingPath(live.Path())); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the record of the unfinished backup is left beside the live store: %v", err)
			}
			if live2 := reopen(t, live, Options{}); live2.OpenedFromCopy() != 0 {
				t.Errorf("the live store jumped at its second Open: %d", live2.OpenedFromCopy())
			}
			if point != failpoint.BackupAfterCopy {
				return // nothing of the copy was written
			}
			c, err := Open(filepath.Join(dir, "copy.db"), Options{})
			if err != nil {
				t.Fatalf("open the copy written before the crash: %v", err)
			}
			defer c.Close()
			if c.OpenedFromCopy() < minCopyJump {
				t.Errorf("the copy written before the crash is not marked: jump %d, want >= %d", c.OpenedFromCopy(), minCopyJump)
			}
			if e := addEvents(t, c, 1, "alpha"); e[0] <= c.EventBase()+backupCrashEvents+minCopyJump {
				t.Errorf("the copy's next event: seq %d, want past %d", e[0], c.EventBase()+backupCrashEvents+minCopyJump)
			}
		})
	}
}

// backupCrashEvents is how many events TestBackupCrash's child writes
// before its Backup.
const backupCrashEvents = 3

// backupCrashChild writes events to dir/live.db and backs it up to
// dir/copy.db; the armed failpoint kills it in the Backup.
func backupCrashChild(t *testing.T, dir string) {
	s, err := Open(filepath.Join(dir, "live.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	addEvents(t, s, backupCrashEvents, "alpha")
	f, err := os.Create(filepath.Join(dir, "copy.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(f); err != nil {
		t.Fatal(err)
	}
	t.Fatal("child: the failpoint was not hit")
}

// A copy restored where a Backup that did not finish left its record of
// the backup in progress (another backup's mark) is still a copy: it
// jumps, and the stale record is removed.
func TestRestoredCopyBesideUnfinishedBackup(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	addEvents(t, s, 3, "alpha")
	var buf bytes.Buffer
	if _, err := s.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ispmux.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	other := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
	other = append(other, 1, 2, 3, 4, 5, 6, 7, 8)
	if err := os.WriteFile(backupPendingPath(path), other, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.OpenedFromCopy() < minCopyJump {
		t.Errorf("a copy beside another backup's record: jump %d, want >= %d", c.OpenedFromCopy(), minCopyJump)
	}
	if _, err := os.Stat(backupPendingPath(path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale record is left: %v", err)
	}
}

// TestBackupMarkNotThroughLink: a symbolic link planted at the backup
// mark's name (the state directory may be another user's) is replaced,
// not written through: the file it names keeps its bytes, and the backup
// succeeds. And a link there at Open is refused by name, not followed.
func TestBackupMarkNotThroughLink(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, backupPendingPath(path)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(io.Discard); err != nil {
		t.Fatalf("Backup with a link at the mark's name: %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("the link's target now holds %q: written through the link", b)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, backupPendingPath(path)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{NoSync: true}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Open with a link at the mark's name: %v, want it refused", err)
	}
}
