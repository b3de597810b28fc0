package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/internal/privtest"
	"github.com/ispmux/ispmux/subscribers"
)

// ispmux compact -c FILE: the configuration's store rewritten smaller
// after its customers were deleted, what it kept intact; refused while
// the store is open (ispmux running).
func TestCompactCommand(t *testing.T) {
	cfg, state := testConfig(t)
	path := filepath.Join(state, appliance.StoreName)
	st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	deletedCustomers(t, st, 5000, 1, subscribers.TenantWrite{})
	if _, _, err := runCmd(t, "", "compact", "-c", cfg); err == nil || !strings.Contains(err.Error(), "ispmux running") {
		t.Errorf("compact of an open store: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCmd(t, "", "compact", "-c", cfg)
	if err != nil || !strings.Contains(out, "compacted "+path) || !strings.Contains(out, "iB →") {
		t.Fatalf("compact: %v %q", err, out)
	}
	st, err = subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Customer("alpha", "c-00000"); err != nil {
		t.Errorf("the customer kept: %v", err)
	}
}

const compactOwnerEnv = "ISPMUX_COMPACT_OWNER_CHILD"

// TestCompactAsStateDirOwner: root's ispmux compact of a state_dir the
// service's user owns (uid 65534 here) works as that user (a security
// review: root working in that user's directory followed the links it
// planted there, a hard link among them, which no O_NOFOLLOW stops). A
// journal file that is a hard link to a file of root's (fs.protected_
// hardlinks aside: root made it here) is not written, the compaction
// refused; without it, the store is compacted, and every file it made
// is that user's with no chown.
func TestCompactAsStateDirOwner(t *testing.T) {
	if cfg := os.Getenv(compactOwnerEnv); cfg != "" {
		out, errOut, err := runCmd(t, "", "compact", "-c", cfg)
		fmt.Printf("uid %d euid %d gid %d\n", os.Getuid(), os.Geteuid(), os.Getgid())
		if err != nil {
			fmt.Printf("compact: %v\n%s", err, errOut)
			os.Exit(3)
		}
		fmt.Print(out)
		os.Exit(0)
	}
	privtest.Require(t)
	const uid, gid = 65534, 65534
	dir, err := os.MkdirTemp("", "ispmux-compact-owner-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // the user reaches its state_dir
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ispmux.toml")
	writeTestConfig(t, cfg, state, 0o600) // root's alone: read before the switch
	path := filepath.Join(state, appliance.StoreName)
	st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	deletedCustomers(t, st, 3000, 1, subscribers.TenantWrite{})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{state, path, path + ".journal", path + ".journal.1"} { // the service's files
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	victim := filepath.Join(dir, "victim")
	const secret = "root's file"
	if err := os.WriteFile(victim, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	child := func() (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCompactAsStateDirOwner$", "-test.count=1")
		cmd.Env = append(os.Environ(), compactOwnerEnv+"="+cfg)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	checkVictim := func(when string) {
		t.Helper()
		b, err := os.ReadFile(victim)
		fi, serr := os.Stat(victim)
		if err != nil || serr != nil || string(b) != secret || fi.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("%s: root's file changed: %d bytes (%v), %v (%v)", when, len(b), err, fi, serr)
		}
	}

	// The journal a hard link to root's file: not opened, compact refused.
	if err := os.Remove(path + ".journal"); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(victim, path+".journal"); err != nil {
		t.Fatal(err)
	}
	out, err := child()
	if err == nil || !strings.Contains(out, "uid 65534 euid 65534 gid 65534") || !strings.Contains(out, appliance.StoreName+".journal: permission denied") ||
		!strings.Contains(out, "compact works as uid 65534") {
		t.Errorf("compact with a journal linked to root's file: %v\n%s\nwant refused as uid 65534 (the journal: permission denied), saying so", err, out)
	}
	checkVictim("a journal linked to root's file")

	// Without it: compacted, as the user.
	if err := os.Remove(path + ".journal"); err != nil {
		t.Fatal(err)
	}
	out, err = child()
	if err != nil || !strings.Contains(out, "uid 65534 euid 65534 gid 65534") || !strings.Contains(out, "compacted "+path) {
		t.Fatalf("compact: %v\n%s\nwant compacted as uid 65534", err, out)
	}
	checkVictim("compacted")
	ents, err := os.ReadDir(state)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		fi, err := os.Lstat(filepath.Join(state, e.Name()))
		if err != nil || fi.Sys().(*syscall.Stat_t).Uid != uid || fi.Sys().(*syscall.Stat_t).Gid != gid || !fi.Mode().IsRegular() {
			t.Errorf("%s after the compaction: %v %v, want a file of %d:%d", e.Name(), fi, err, uid, gid)
		}
		if strings.HasSuffix(e.Name(), ".compact") {
			t.Errorf("%s left", e.Name())
		}
	}
	st, err = subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Customer("alpha", "c-00000"); err != nil {
		t.Errorf("the customer kept: %v", err)
	}
}

// A state_dir of root's that its group or others may write: compact,
// which would work in it as root, refuses, and says how to fix it (its
// group's users could plant links there as in TestCompactAsStateDirOwner).
func TestCompactRefusesSharedRootStateDir(t *testing.T) {
	privtest.Require(t)
	cfg, state := testConfig(t)
	if err := os.Chmod(state, 0o775); err != nil {
		t.Fatal(err)
	}
	st, err := subscribers.Open(filepath.Join(state, appliance.StoreName), subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd(t, "", "compact", "-c", cfg); err == nil || !strings.Contains(err.Error(), "writable by its group or others") ||
		!strings.Contains(err.Error(), "install -d -o ispmux") {
		t.Errorf("compact of a group-writable root state_dir: %v, want refused saying how to fix it", err)
	}
}

// deletedCustomers writes n customers of alpha c-00000, c-00001, ...
// (device limit 10) and also's records in one write, then deletes every
// customer but the first keep in another: a store whose pages the
// deleted ones left free, for compaction.
func deletedCustomers(t *testing.T, st *subscribers.Store, n, keep int, also subscribers.TenantWrite) {
	t.Helper()
	w, del := also, subscribers.TenantWrite{}
	for i := range n {
		c := subscribers.Customer{ISP: "alpha", ID: fmt.Sprintf("c-%05d", i), Status: "active", DeviceLimit: 10, Source: "api"}
		w.PutCustomers = append(w.PutCustomers, c)
		if i >= keep {
			del.DeleteCustomers = append(del.DeleteCustomers, subscribers.CustomerKey{ISP: "alpha", ID: c.ID})
		}
	}
	if _, err := st.ApplyTenant(w); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ApplyTenant(del); err != nil {
		t.Fatal(err)
	}
}

// TestCompactSmallStore: compact of a store holding nothing prints its
// size after as the file's, in a unit that shows it ("0.0 MiB" was all
// it said).
func TestCompactSmallStore(t *testing.T) {
	cfg, state := testConfig(t)
	path := filepath.Join(state, appliance.StoreName)
	st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCmd(t, "", "compact", "-c", cfg)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s (the file: %d bytes)", strings.TrimSpace(out), fi.Size())
	if fi.Size() >= 1<<20 {
		t.Fatalf("an empty store compacted is %d bytes: not a small store", fi.Size())
	}
	if want := "→ " + humanSize(fi.Size()) + "\n"; !strings.HasSuffix(out, want) || strings.Contains(out, "0.0 ") {
		t.Errorf("compact of an empty store printed %q, want it to end %q", out, want)
	}
}

// TestHumanSize: compact's sizes show small stores in bytes or KiB (a
// 48 KiB store printed "0.0 MiB") and large ones in MiB or GiB.
func TestHumanSize(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1, "1 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {49152, "48.0 KiB"}, {100 << 10, "100.0 KiB"},
		{1<<20 - 1, "1.0 MiB"}, {1 << 20, "1.0 MiB"}, {16 << 20, "16.0 MiB"}, {1536 << 20, "1.5 GiB"}, {3 << 40, "3.0 TiB"},
		{5 << 50, "5120.0 TiB"},
	} {
		if got := humanSize(c.n); got != c.want {
			t.Errorf("humanSize(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}
