package datapath

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ispmux/ispmux/internal/privtest"
)

// lockChildEnv names the lock directories of a child started by
// TestInterfaceLockAcrossUsers (TestMain runs it as that child).
const lockChildEnv = "ISPMUX_TEST_LOCK_DIRS"

func TestMain(m *testing.M) {
	if dirs := os.Getenv(lockChildEnv); dirs != "" {
		lockDirs = strings.Split(dirs, ":")
		_, err := lockFile("lock-test")
		fmt.Println("lockFile:", err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The packaged service runs as the user ispmux, an operator's ispmux by
// hand as root: both lock their interfaces in /run/ispmux. A lock file the
// other user created (0644) could not be opened read-write, and the lock
// was then taken in the next directory (the temporary directory, private
// to the service under PrivateTmp): no mutual exclusion, two ispmux on one
// interface. A lock needs no write access: the file is opened read-only,
// and an existing lock directory is never skipped.
func TestInterfaceLockAcrossUsers(t *testing.T) {
	const uid = 64127 // an id no account uses: the service's user
	base := otherUserBase(t)
	run, fallback := filepath.Join(base, "run"), filepath.Join(base, "tmp")
	for _, d := range []string{run, fallback} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, uid); err != nil { // the service's RuntimeDirectory
			t.Fatal(err)
		}
	}
	old := lockDirs
	lockDirs = []string{run, fallback}
	defer func() { lockDirs = old }()
	f, err := lockFile("lock-test") // root's ispmux holds the interface
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := lockAs(t, uid, base, run, fallback)
	if !strings.Contains(out, "in use by another process") {
		t.Errorf("the service's user locking an interface root's ispmux holds: %q; want \"in use by another process\"", out)
	}
}

// otherUserBase returns a new temporary directory another user may
// traverse (it and its parent 0755).
func otherUserBase(t *testing.T) string {
	t.Helper()
	privtest.Require(t)
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return base
}

// lockAs runs lockFile("lock-test") as user uid with lock directories dirs,
// in a child process (this test binary, copied into base, where uid may
// run it: TestMain), and returns what the child printed, trimmed.
func lockAs(t *testing.T, uid int, base string, dirs ...string) string {
	t.Helper()
	setpriv := privtest.Tool(t, "setpriv")
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "datapath.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid="+strconv.Itoa(uid), "--regid="+strconv.Itoa(uid), "--clear-groups", bin)
	cmd.Env = append(os.Environ(), lockChildEnv+"="+strings.Join(dirs, ":"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// The design (xsk.go lockFile) has the users of two ispmux (root by
// hand, the service's user) lock in the same file, each opening the
// other's read-only. The file and the directory root's ispmux makes must
// be readable by the other user whatever root's umask: made under 027 or
// 077 (hardened boxes) they were 0640/0600 and 0750/0700, and the other
// user's ispmux could not open the lock (it failed to start).
func TestLockModesIgnoreUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	base := t.TempDir()
	run := filepath.Join(base, "run")
	oldDirs := lockDirs
	lockDirs = []string{run}
	defer func() { lockDirs = oldDirs }()
	f, err := lockFile("umask-test")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("lock file made under umask 077: mode %v, want 0644 (another user's ispmux opens it read-only)", fi.Mode().Perm())
	}
	di, err := os.Stat(run)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o755 {
		t.Errorf("lock directory made under umask 077: mode %v, want 0755", di.Mode().Perm())
	}
}

// A non-root ispmux (capabilities) whose first lock directory is root's
// and closed to it (made under umask 027/077) cannot tell whether a lock
// file is there: as when it cannot create one there, it takes its lock in
// the next directory rather than fail to start.
func TestLockDirClosedToOtherUser(t *testing.T) {
	const uid = 64128 // an id no account uses
	base := otherUserBase(t)
	closed, fallback := filepath.Join(base, "run"), filepath.Join(base, "tmp")
	if err := os.Mkdir(closed, 0o700); err != nil { // root's, closed to uid
		t.Fatal(err)
	}
	if err := os.Mkdir(fallback, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(fallback, uid, uid); err != nil {
		t.Fatal(err)
	}
	if got := lockAs(t, uid, base, closed, fallback); got != "lockFile: <nil>" {
		t.Errorf("locking with the first lock directory closed to us: %q; want the lock taken in %s", got, fallback)
	}
}
