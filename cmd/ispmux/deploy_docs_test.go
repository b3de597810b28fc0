package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ispmux/ispmux/internal/privtest"
)

// TestTokenFileReplaceKeepsModeAndGroup: on a packaged box the service runs
// as the user ispmux and reads its token files as root:ispmux 0640
// (docs/DEPLOY.md, "The service"). Replacing such a file with `ispmux ctl
// token --file` (docs/API.md, rotation: "remove (or replace) the old
// file, SIGHUP") must leave it readable by the service: same mode, same
// group. Otherwise the SIGHUP is refused and the next restart fails.
func TestTokenFileReplaceKeepsModeAndGroup(t *testing.T) {
	file := filepath.Join(t.TempDir(), "beta-1.token")
	if err := os.WriteFile(file, []byte("sha256:"+strings.Repeat("0", 64)+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o640); err != nil {
		t.Fatal(err)
	}
	gid := os.Getgid()
	if os.Geteuid() == 0 {
		gid = 64124 // the service's group: not root's
		if err := os.Chown(file, 0, gid); err != nil {
			t.Fatal(err)
		}
	}
	if _, errOut, err := runCmd(t, "", "ctl", "token", "--file", file, "--force"); err != nil {
		t.Fatalf("token --file: %v %s", err, errOut)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("token --file over a root:ispmux 0640 file left mode %v, want 0640: the service (user ispmux) can no longer read it", fi.Mode().Perm())
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Gid) != gid {
		t.Errorf("token --file over a file of group %d left group %d: the service's group can no longer read it", gid, st.Gid)
	}
}

// TestRestoreProcedureLeavesStoreUsable runs docs/OPERATIONS.md's restore
// step 3 ("Put the copy in place", as root on the box) on a state
// directory owned by the service's user, as systemd's StateDirectory=
// leaves /var/lib/ispmux for User=ispmux (contrib/systemd/ispmux.service),
// with a copy as `ispmux ctl backup` writes it (root, 0600). Step 4
// starts the service: its user must then be able to open the store
// read-write (bbolt), or ispmux does not start.
func TestRestoreProcedureLeavesStoreUsable(t *testing.T) {
	privtest.Require(t)
	setpriv := privtest.Tool(t, "setpriv")
	raw, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i := strings.Index(doc, "Put the copy in place")
	if i < 0 {
		t.Fatal("docs/OPERATIONS.md: no restore step 3")
	}
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(doc[i:])
	if block == nil {
		t.Fatal("docs/OPERATIONS.md: restore step 3 has no commands")
	}
	const uid = 64125 // the service's user: an id no account uses
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} { // the service's user may traverse them, as /var/lib
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(base, "state")
	if err := os.Mkdir(state, 0o750); err != nil { // StateDirectoryMode=0750
		t.Fatal(err)
	}
	if err := os.Chown(state, uid, uid); err != nil {
		t.Fatal(err)
	}
	copyFile := filepath.Join(base, "ispmux-2026-12-04.db")
	if err := os.WriteFile(copyFile, []byte("a store copy"), 0o600); err != nil { // as ctl backup leaves it
		t.Fatal(err)
	}
	var script []string
	for _, l := range strings.Split(strings.TrimSpace(block[1]), "\n") {
		l = strings.TrimSpace(l)
		l = strings.ReplaceAll(l, "/var/lib/ispmux", state)
		l = strings.ReplaceAll(l, "COPY", copyFile)
		script = append(script, l)
	}
	if out, err := exec.Command("sh", "-euc", "umask 022\n"+strings.Join(script, "\n")).CombinedOutput(); err != nil {
		t.Fatalf("restore step 3 %q: %v %s", script, err, out)
	}
	if err := exec.Command(setpriv, "--reuid="+strconv.Itoa(uid), "--regid="+strconv.Itoa(uid), "--clear-groups", "test", "-w", state).Run(); err != nil {
		t.Fatalf("the service's user cannot write its state directory %s: %v", state, err)
	}
	db := filepath.Join(state, "ispmux.db")
	cmd := exec.Command(setpriv, "--reuid="+strconv.Itoa(uid), "--regid="+strconv.Itoa(uid), "--clear-groups", "sh", "-c", `test -r "$1" && test -w "$1"`, "sh", db)
	if err := cmd.Run(); err != nil {
		fi, _ := os.Stat(db)
		st := fi.Sys().(*syscall.Stat_t)
		t.Errorf("after docs/OPERATIONS.md's restore (%q), %s is %d:%d %v: the service's user (owner of the state directory) cannot open it read-write, so `systemctl start ispmux` (step 4) fails",
			script, db, st.Uid, st.Gid, fi.Mode().Perm())
	}
}
