// Package privtest decides, in one place, what a test does when it needs
// what an ordinary user lacks: root (network namespaces, AF_XDP, the netns
// lab, the end-to-end and benchmark labs) or a program of the lab (Kea).
//
// Such a test fails when it cannot run: a suite that passes is a suite that
// ran. Only two things make it skip instead, both visible:
//
//   - go test -short (make unit): tests that build namespaces or run the lab
//     or Kea skip ([Lab], [LabTool]). That is the unit run's definition, and
//     it sets nothing else.
//   - ISPMUX_SKIP_PRIVILEGED=1 in the environment of a run that is not root
//     (or lacks the program): the test skips, and the test binary prints one
//     loud line to stderr saying the datapath was not tested. As root the
//     variable changes nothing: a test that can run, runs.
//
// Nothing else (no CI variable, no guess about the machine) changes what a
// test does.
package privtest

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// Env is the variable that lets a non-root run skip the privileged tests.
const Env = "ISPMUX_SKIP_PRIVILEGED"

// Banner is the line a test binary prints (once) when it skips a privileged
// test because Env is set.
const Banner = Env + "=1: privileged tests SKIPPED — this run does not test the datapath"

var once sync.Once

// geteuid is os.Geteuid; the package's own test replaces it.
var geteuid = os.Geteuid

// lookPath is exec.LookPath; the package's own test replaces it.
var lookPath = exec.LookPath

// sbin are the directories searched after PATH.
var sbin = []string{"/usr/sbin", "/sbin"}

// allowed reports whether Env permits skipping.
func allowed() bool { return os.Getenv(Env) == "1" }

// announce prints Banner once per test binary.
func announce() {
	once.Do(func() { fmt.Fprintln(os.Stderr, Banner) })
}

// Require fails t unless the process is root. With ISPMUX_SKIP_PRIVILEGED=1
// it skips t instead (and the binary prints Banner once).
func Require(t testing.TB) {
	t.Helper()
	if geteuid() == 0 {
		return
	}
	if allowed() {
		announce()
		t.Skipf("needs root (network namespaces, AF_XDP): skipped because %s=1", Env)
	}
	t.Fatalf("privileged test: needs root (network namespaces, AF_XDP, the netns lab). "+
		"Run it as root, or set %s=1 to skip it knowingly (make unit runs without it)", Env)
}

// Lab is Require for a test that builds network namespaces or runs the lab:
// with -short (make unit) it skips, whoever runs it.
func Lab(t testing.TB) {
	t.Helper()
	Short(t)
	Require(t)
}

// Short skips t in -short runs (make unit): for tests that build network
// namespaces, run the lab or run Kea.
func Short(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds network namespaces or runs the lab or Kea: skipped in -short (make unit); make test runs it")
	}
}

// Tool returns the path of program name (searched on PATH, then in /usr/sbin
// and /sbin, where Debian puts Kea). A missing program fails t, unless
// ISPMUX_SKIP_PRIVILEGED=1, which skips it (and prints Banner once).
// lab/deps.sh installs the lab's programs.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p, err := lookPath(name); err == nil {
		return p
	}
	for _, dir := range sbin {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	Missing(t, name+" not installed", "lab/deps.sh installs it")
	return ""
}

// Missing fails t because what the test needs (a program, a Kea hook) is
// missing; hint says how to get it. With ISPMUX_SKIP_PRIVILEGED=1 it skips
// t instead (and the binary prints Banner once).
func Missing(t testing.TB, what, hint string) {
	t.Helper()
	if allowed() {
		announce()
		t.Skipf("%s: skipped because %s=1 (%s)", what, Env, hint)
	}
	t.Fatalf("%s: %s (or set %s=1 to skip this test knowingly)", what, hint, Env)
}
