package lab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/internal/privtest"
)

// TestIsLabNamespace: a lab's teardown takes exactly its own namespaces,
// ID and a role, not those of a lab whose ID starts with "ID-" (ID-b-s1 is
// lab ID-b's), nor a namespace of somebody else's that starts with "ID-".
func TestIsLabNamespace(t *testing.T) {
	for _, c := range []struct {
		id, ns string
		want   bool
	}{
		{"X", "X-app", true},
		{"X", "X-acc", true},
		{"X", "X-gen", true},
		{"X", "X-ispa", true},
		{"X", "X-isph", true},
		{"X", "X-ha", true},
		{"X", "X-hh", true},
		{"X", "X-s1", true},
		{"X", "X-s12", true},
		{"X", "X-s200", true},

		{"X", "X-b-s1", false}, // lab X-b's
		{"X", "X-b-app", false},
		{"X", "X-app-s1", false}, // lab X-app's
		{"X", "X-x", false},      // a user's
		{"X", "X-s0", false},
		{"X", "X-s01", false},
		{"X", "X-s201", false},
		{"X", "X-ispi", false},
		{"X", "X-hi", false},
		{"X", "X-isp", false},
		{"X", "X-", false},
		{"X", "X", false},
		{"X", "Xs1", false},
		{"X", "XX-s1", false},
		{"X", "Y-s1", false},
		{"X", "x-s1", false},

		{"X-b", "X-b-s1", true},
		{"X-b", "X-b-app", true},
		{"X-b", "X-s1", false}, // lab X's
		{"X-b", "X-b-c-s1", false},
	} {
		if got := isLabNamespace(c.id, c.ns); got != c.want {
			t.Errorf("isLabNamespace(%q, %q) = %v, want %v", c.id, c.ns, got, c.want)
		}
	}
}

func TestLabOf(t *testing.T) {
	for ns, want := range map[string]string{
		"X-s1": "X", "X-s12": "X", "X-b-s1": "X-b", "tA7-b-app": "tA7-b", "X-app-s1": "X-app",
		"X-x": "", "X-s201": "", "X": "", "-s1": "", "X-b-": "",
	} {
		id, ok := labOf(ns)
		if id != want || ok != (want != "") {
			t.Errorf("labOf(%q) = %q, %v; want %q", ns, id, ok, want)
		}
	}
}

// TestPlanNamespacesAreRoles: every namespace plan makes is recognised by
// teardown as its lab's, and as no other lab's (names.go is the one
// source of both).
func TestPlanNamespacesAreRoles(t *testing.T) {
	for _, id := range []string{"X", "tA7-b", "X-app", DefaultID} {
		topo, err := plan(Options{ID: id, Subscribers: maxSubscribers, ISPs: len(ispNames), Generator: true})
		if err != nil {
			t.Fatal(err)
		}
		nss := topo.namespaces()
		if len(nss) != 2+2*len(ispNames)+maxSubscribers+1 {
			t.Errorf("%s: %d namespaces", id, len(nss))
		}
		seen := map[string]bool{}
		for _, ns := range nss {
			if seen[ns] {
				t.Errorf("%s: %s twice", id, ns)
			}
			seen[ns] = true
			if !isLabNamespace(id, ns) {
				t.Errorf("%s: plan's %s is not the lab's for teardown", id, ns)
			}
			if got, ok := labOf(ns); !ok || got != id {
				t.Errorf("labOf(%q) = %q, %v; want %q", ns, got, ok, id)
			}
			for _, other := range []string{"X", "X-b", "tA7", "tA7-b-x", id + "-b", id + "-s1"} {
				if other != id && isLabNamespace(other, ns) {
					t.Errorf("lab %s's %s taken for lab %s's", id, ns, other)
				}
			}
		}
		if len(roles()) != len(nss) {
			t.Errorf("roles: %d, the largest lab has %d namespaces", len(roles()), len(nss))
		}
	}
}

const netnsList = `tA7-b-s2 (id: 12)
tA7-b-s1 (id: 11)
tA7-b-app
tA7-s1 (id: 3)
tA7-app
tA7-x
tA1-x
tA7-s12
tA7-s201
other
`

func TestFilterLab(t *testing.T) {
	if got, want := filterLab("tA7", netnsList), []string{"tA7-s1", "tA7-app", "tA7-s12"}; !slices.Equal(got, want) {
		t.Errorf("lab tA7: %q, want %q", got, want)
	}
	if got, want := filterLab("tA7-b", netnsList), []string{"tA7-b-s2", "tA7-b-s1", "tA7-b-app"}; !slices.Equal(got, want) {
		t.Errorf("lab tA7-b: %q, want %q", got, want)
	}
	if got := filterLab("tA1", netnsList); len(got) != 0 {
		t.Errorf("lab tA1 (only a user's tA1-x exists): %q", got)
	}
}

// TestLabIDs: Sweep's IDs, IDs with dashes included, and no lab for a
// namespace that is no lab's.
func TestLabIDs(t *testing.T) {
	if got, want := labIDs(netnsList), []string{"tA7-b", "tA7"}; !slices.Equal(got, want) {
		t.Errorf("labIDs: %q, want %q", got, want)
	}
}

func TestCheckID(t *testing.T) {
	for _, id := range []string{"ispmux", "tE1", "tE1-b", "a.b_c", strings.Repeat("x", 40)} {
		if err := checkID(id); err != nil {
			t.Errorf("checkID(%q): %v", id, err)
		}
	}
	for _, id := range []string{"", "a/b", "../x", "a b", "a\tb", "a\nb", strings.Repeat("x", 41)} {
		if err := checkID(id); err == nil {
			t.Errorf("checkID(%q): accepted", id)
		}
		if _, err := plan(Options{ID: id}); id != "" && err == nil {
			t.Errorf("plan with ID %q: accepted", id)
		}
	}
	// Down refuses before touching anything (no root needed to see it).
	if err := Down(context.Background(), "../x"); err == nil || !strings.Contains(err.Error(), "bad id") {
		t.Errorf("Down(\"../x\"): %v", err)
	}
}

func TestRemoveResolvers(t *testing.T) {
	old := resolvDir
	resolvDir = t.TempDir()
	t.Cleanup(func() { resolvDir = old })
	for _, ns := range []string{"X-s1", "X-s12", "X-b-s1", "X-x", "Y-s1"} {
		if err := os.MkdirAll(filepath.Join(resolvDir, ns), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(resolvDir, ns, "resolv.conf"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeResolvers("X"); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(resolvDir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if want := []string{"X-b-s1", "X-x", "Y-s1"}; !slices.Equal(left, want) {
		t.Errorf("left: %q, want %q", left, want)
	}
}

// TestRemoveXDPLocksOf: Down removes the lock files of its namespaces'
// inodes that nobody holds, and nothing else.
func TestRemoveXDPLocksOf(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "absent")}
	const ino = 4026532174
	mine := []string{"xdp-4026532174-2.lock", "xdp-4026532174-13.lock", "xdp-4026532174-name-portal0.lock"}
	others := []string{"xdp-40265321745-2.lock", "xdp-402653217-2.lock", "xdp-4026532175-2.lock", "xdp-4026532174-2.lockx", "ydp-4026532174-2.lock"}
	for _, d := range dirs[:2] {
		for _, n := range append(append([]string{}, mine...), others...) {
			if err := os.WriteFile(filepath.Join(d, n), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A running ispmux's lock (here: another open file description).
	held := filepath.Join(dirs[1], "xdp-4026532174-7.lock")
	f, err := os.OpenFile(held, os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if err := removeXDPLocksOf(ino, dirs); err != nil {
		t.Fatal(err)
	}
	for i, d := range dirs[:2] {
		for _, n := range mine {
			if _, err := os.Stat(filepath.Join(d, n)); err == nil {
				t.Errorf("dir %d: %s left", i, n)
			}
		}
		for _, n := range others {
			if _, err := os.Stat(filepath.Join(d, n)); err != nil {
				t.Errorf("dir %d: %s (not the namespace's) removed: %v", i, n, err)
			}
		}
	}
	if _, err := os.Stat(held); err != nil {
		t.Errorf("the lock a process holds was removed: %v", err)
	}
}

// TestDownOnlyItsLab: Down (and Up, which starts with it) removes its own
// lab's namespaces only: not those of a lab whose ID starts with its own
// and a dash, nor a namespace of somebody else's named ID-something, nor
// their resolver files; and it removes the unheld XDP lock files of its
// namespaces.
func TestDownOnlyItsLab(t *testing.T) {
	privtest.Lab(t)
	id := testID(t)
	up(t, Options{ID: id + "-b", Subscribers: 1})
	topo := up(t, Options{ID: id, Subscribers: 1})
	mine := id + "-x"
	if out, err := exec.Command("ip", "netns", "add", mine).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", mine).Run() })
	for _, ns := range []string{id + "-b-s1", mine} {
		dir := filepath.Join(resolvDir, ns)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, topo.Appliance.NS), &st); err != nil {
		t.Fatal(err)
	}
	lockDir := t.TempDir()
	old := xdpLockDirs
	xdpLockDirs = []string{lockDir}
	t.Cleanup(func() { xdpLockDirs = old })
	lock := filepath.Join(lockDir, "xdp-"+strconv.FormatUint(st.Ino, 10)+"-2.lock")
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	if err := Down(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	left := labNamespaces(t, id)
	want := []string{id + "-b-acc", id + "-b-app", id + "-b-ha", id + "-b-hb", id + "-b-ispa", id + "-b-ispb", id + "-b-s1", mine}
	slices.Sort(left)
	if !slices.Equal(left, want) {
		t.Errorf("after Down %s: %q, want %q", id, left, want)
	}
	for _, ns := range []string{id + "-b-s1", mine} {
		if _, err := os.Stat(filepath.Join(resolvDir, ns)); err != nil {
			t.Errorf("resolver dir of %s: %v", ns, err)
		}
	}
	if _, err := os.Stat(lock); err == nil {
		t.Errorf("the lab's XDP lock file %s left", lock)
	}
}
