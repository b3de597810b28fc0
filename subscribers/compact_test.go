package subscribers

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestCompact: a store that held 20k customers, deleted since, keeps its
// size until Compact rewrites it; the copy holds everything that was left
// (a customer, a binding written through the journal, the event log with
// its numbering going on from where it was, the ISP's own numbering too)
// and Compact refuses a store that is open (ispmux running).
func TestCompact(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	const n = 20000
	var w TenantWrite
	for i := range n {
		w.PutCustomers = append(w.PutCustomers, Customer{ISP: "alpha", ID: fmt.Sprintf("c-%06d", i), PasswordHash: "x", Status: "active", DeviceLimit: 1, Source: "api"})
	}
	if _, err := s.ApplyTenant(w); err != nil {
		t.Fatal(err)
	}
	var del TenantWrite
	for i := 1; i < n; i++ {
		del.DeleteCustomers = append(del.DeleteCustomers, CustomerKey{ISP: "alpha", ID: fmt.Sprintf("c-%06d", i)})
	}
	if _, err := s.ApplyTenant(del); err != nil {
		t.Fatal(err)
	}
	b := Binding{MAC: MAC{2, 0, 0, 0, 0, 1}, Access: "acc0", ISP: "alpha", IP: netip.MustParseAddr("100.64.0.9"), Expires: time.Now().Add(time.Hour), LeaseTime: time.Hour}
	if err := s.CommitBinding(b); err != nil {
		t.Fatal(err)
	}
	ev, err := s.AddEvent(Event{Kind: EventBound, ISP: "alpha", MAC: b.MAC})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Compact(path, Options{NoSync: true, LockTimeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("compact of an open store: %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The store's owner is kept: root compacting the ispmux user's store
	// (uid 65534 here, when the test runs as root).
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 65534, 65534
		if err := os.Chown(path, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range journalPaths(path) { // as a restore leaves it
		if err := os.Remove(j); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	res, err := Compact(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.After <= 0 || res.After*2 > res.Before {
		t.Errorf("compacted %d → %d bytes: want it at most half", res.Before, res.After)
	}
	if _, err := os.Stat(path + ".compact"); !os.IsNotExist(err) {
		t.Errorf("the temporary copy is left: %v", err)
	}
	t.Logf("%d → %d bytes", res.Before, res.After)
	if fi, err := os.Stat(path); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(uid) || fi.Sys().(*syscall.Stat_t).Gid != uint32(gid) || fi.Mode().Perm() != 0o600 {
		t.Errorf("the compacted file: %v %v; want owner %d:%d, mode 0600", fi.Sys(), err, uid, gid)
	}
	// The journal's files too: Open made them (they were removed, as
	// after a restore), and root's would keep ispmux's user out (a
	// review).
	for _, j := range journalPaths(path) {
		if fi, err := os.Stat(j); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
			t.Errorf("journal file %s: %v %v; want owner %d", j, fi.Sys(), err, uid)
		}
	}
	s2, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if c, err := s2.Customer("alpha", "c-000000"); err != nil || c.PasswordHash != "x" {
		t.Errorf("the customer left: %+v %v", c, err)
	}
	if _, err := s2.Customer("alpha", "c-000001"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a deleted customer: %v", err)
	}
	if got, err := s2.Binding("acc0", 0, b.MAC); err != nil || got.IP != b.IP {
		t.Errorf("the binding: %+v %v", got, err)
	}
	next, err := s2.AddEvent(Event{Kind: EventBound, ISP: "alpha", MAC: b.MAC})
	if err != nil || next.Seq != ev.Seq+1 || next.ISPSeq != ev.ISPSeq+1 {
		t.Errorf("the next event after compaction: seq %d, isp seq %d (%v); want %d, %d", next.Seq, next.ISPSeq, err, ev.Seq+1, ev.ISPSeq+1)
	}
}

// TestOpenRefusesReplacedFile: an Open that waited for the lock of a file
// that was replaced meanwhile (a compaction renamed its copy over it) is
// made again on the file now at the path: before, it went on in the
// unlinked file, and its writes were lost at the next start (a review).
func TestOpenRefusesReplacedFile(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	if err := s.PutRegistration(Registration{MAC: MAC{2, 0, 0, 0, 0, 1}, ISP: "alpha", CustomerID: "c-1", Source: "api"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan *Store, 1)
	go func() {
		s2, err := Open(path, Options{NoSync: true, LockTimeout: 5 * time.Second})
		if err != nil {
			t.Error(err)
		}
		done <- s2
	}()
	time.Sleep(300 * time.Millisecond) // the second Open waits for the lock
	// As Compact: a copy renamed over the path, then the old file's
	// lock released.
	cp := copyStore(t, path, nil)
	if err := os.Rename(cp, path); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := <-done
	if s2 == nil {
		t.FailNow()
	}
	if err := s2.PutRegistration(Registration{MAC: MAC{2, 0, 0, 0, 0, 2}, ISP: "alpha", CustomerID: "c-2", Source: "api"}); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	s3, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	for _, m := range []MAC{{2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2}} {
		if _, err := s3.Registration(m); err != nil {
			t.Errorf("%v after the reopen: %v (written into the unlinked file?)", m, err)
		}
	}
}

// TestCompactHeapBounded: the copy's transactions are small enough that
// a store of many small keys is compacted in bounded memory. Each key a
// bbolt transaction puts costs a node entry until it commits; at 64 MiB
// of keys and values a transaction (compactTxSize before), the copy of a
// store of a million subscribers peaked at 520 MB of heap (a trial), and
// this test's 150k customers and devices at 210 MB more than before it
// started (4 MiB: ~40 MB, garbage not yet collected included).
func TestCompactHeapBounded(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	const n, batch = 150000, 5000
	for lo := 0; lo < n; lo += batch {
		var w TenantWrite
		for i := lo; i < lo+batch; i++ {
			id := fmt.Sprintf("c-%07d", i)
			w.PutCustomers = append(w.PutCustomers, Customer{ISP: "alpha", ID: id, Status: "active", DeviceLimit: 4, Source: "api"})
			w.PutRegistrations = append(w.PutRegistrations, Registration{MAC: MAC{2, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}, CustomerID: id, ISP: "alpha", Source: "api"})
		}
		if _, err := s.ApplyTenant(w); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	res, err := Compact(path, Options{NoSync: true})
	close(done)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	grew := int64(peak.Load()) - int64(base)
	t.Logf("compacted %d → %d bytes; heap in use grew by %.1f MB at most", res.Before, res.After, float64(grew)/1e6)
	if grew > 100e6 {
		t.Errorf("the compaction's heap grew by %.1f MB (at most 100 MB): its transactions hold too many keys", float64(grew)/1e6)
	}
}

// TestCompactFollowsNoLink: Compact runs as root in a directory the
// store's owner may write, and a link planted there named a file of
// root's it would truncate and give that owner (a review: the journal's
// temporary name PATH.journal.compact, opened and chowned by name, and
// renamed into place as a link). A link at any name Compact makes is
// removed, not followed; a journal or store file that is a link is
// refused; the file named is left as it was.
func TestCompactFollowsNoLink(t *testing.T) {
	dir := t.TempDir()
	victim := dir + "/victim"
	const secret = "root's file, not the store's"
	check := func(when string) {
		t.Helper()
		b, err := os.ReadFile(victim)
		fi, serr := os.Lstat(victim)
		if err != nil || serr != nil || string(b) != secret || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
			t.Fatalf("%s: the file a link named changed: %d bytes (%v), mode and owner %v (%v)", when, len(b), err, fi, serr)
		}
	}
	if err := os.WriteFile(victim, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	newStore := func(name string) string {
		t.Helper()
		path := dir + "/" + name
		s, err := Open(path, Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddEvent(Event{Kind: EventBound, ISP: "alpha", MAC: MAC{2, 0, 0, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		for _, j := range journalPaths(path) { // as a restore leaves it
			if err := os.Remove(j); err != nil {
				t.Fatal(err)
			}
		}
		return path
	}

	// Links at the temporary names: removed, the compaction done.
	path := newStore("a.db")
	for _, tmp := range []string{path + ".journal.compact", path + ".journal.1.compact", path + ".compact"} {
		if err := os.Symlink(victim, tmp); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Compact(path, Options{NoSync: true}); err != nil {
		t.Fatalf("compact with links at its temporary names: %v", err)
	}
	check("links at the temporary names")
	js := journalPaths(path)
	for _, p := range append(js[:], path) {
		if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s after the compaction: %v %v, want a regular file", p, fi, err)
		}
	}
	for _, tmp := range []string{path + ".journal.compact", path + ".journal.1.compact", path + ".compact"} {
		if _, err := os.Lstat(tmp); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left: %v", tmp, err)
		}
	}

	// A journal that is a link: refused, by Compact and by Open.
	path = newStore("b.db")
	if err := os.Symlink(victim, path+".journal"); err != nil {
		t.Fatal(err)
	}
	if _, err := Compact(path, Options{NoSync: true}); err == nil {
		t.Error("compact of a store whose journal is a link: done, want refused")
	}
	check("a journal that is a link, compacted")
	if s, err := Open(path, Options{NoSync: true}); err == nil {
		s.Close()
		t.Error("open of a store whose journal is a link: done, want refused")
	}
	check("a journal that is a link, opened")

	// The store file a link: refused.
	if err := os.Symlink(newStore("c.db"), dir+"/d.db"); err != nil {
		t.Fatal(err)
	}
	if _, err := Compact(dir+"/d.db", Options{NoSync: true}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("compact of a link to a store: %v, want refused as not a regular file", err)
	}
}
