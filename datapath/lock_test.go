package datapath

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
	privtest.Require(t)
	setpriv := privtest.Tool(t, "setpriv")
	const uid = 64127 // an id no account uses: the service's user
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run, fallback, bin := filepath.Join(base, "run"), filepath.Join(base, "tmp"), filepath.Join(base, "datapath.test")
	for _, d := range []string{run, fallback} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, uid); err != nil { // the service's RuntimeDirectory
			t.Fatal(err)
		}
	}
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	old := lockDirs
	lockDirs = []string{run, fallback}
	defer func() { lockDirs = old }()
	f, err := lockFile("lock-test") // root's ispmux holds the interface
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(setpriv, "--reuid="+strconv.Itoa(uid), "--regid="+strconv.Itoa(uid), "--clear-groups", bin)
	cmd.Env = append(os.Environ(), lockChildEnv+"="+run+":"+fallback)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v %s", err, out)
	}
	if !strings.Contains(string(out), "in use by another process") {
		t.Errorf("the service's user locking an interface root's ispmux holds: %q; want \"in use by another process\"", strings.TrimSpace(string(out)))
	}
}
