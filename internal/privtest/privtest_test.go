package privtest

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The child tests do something only inside TestRequire's subprocesses, run
// as a user that is not root and has no Kea; elsewhere they return at once.
func child() bool {
	if os.Getenv("PRIVTEST_CHILD") == "" {
		return false
	}
	geteuid = func() int { return 1000 }
	lookPath = func(string) (string, error) { return "", errors.New("not found") }
	sbin = nil
	return true
}

func TestChildRequire(t *testing.T) {
	if !child() {
		return
	}
	Require(t)
	t.Log("ran")
}

func TestChildLab(t *testing.T) {
	if !child() {
		return
	}
	Lab(t)
	t.Log("ran")
}

func TestChildTool(t *testing.T) {
	if !child() {
		return
	}
	Tool(t, "kea-dhcp4")
	t.Log("ran")
}

// TestRequire runs the child tests as a non-root user: without the
// variable each fails; with it each skips and the binary prints the banner
// once; with -short the lab test skips without the variable, and the others
// still fail.
func TestRequire(t *testing.T) {
	run := func(env string, args ...string) (string, bool) {
		cmd := exec.Command(os.Args[0], append([]string{"-test.run", "^TestChild", "-test.v", "-test.count=1"}, args...)...)
		cmd.Env = append(os.Environ(), "PRIVTEST_CHILD=1", Env+"="+env)
		out, err := cmd.CombinedOutput()
		return string(out), err == nil
	}
	out, ok := run("")
	if ok || strings.Count(out, "--- FAIL: TestChild") != 3 || strings.Contains(out, "ran") || strings.Contains(out, Banner) {
		t.Errorf("not root, no %s: want three failures and no banner:\n%s", Env, out)
	}
	out, ok = run("1")
	if !ok || strings.Count(out, "--- SKIP: TestChild") != 3 || strings.Count(out, Banner) != 1 || strings.Contains(out, "ran") {
		t.Errorf("not root, %s=1: want three skips and the banner once:\n%s", Env, out)
	}
	out, ok = run("0")
	if ok || strings.Count(out, "--- FAIL: TestChild") != 3 {
		t.Errorf("%s=0 is not 1: want three failures:\n%s", Env, out)
	}
	out, ok = run("", "-test.short")
	if ok || !strings.Contains(out, "--- SKIP: TestChildLab") || strings.Count(out, "--- FAIL: TestChild") != 2 || strings.Contains(out, Banner) {
		t.Errorf("-short: want the lab test skipped, the others failed, no banner:\n%s", out)
	}
}

// TestRootRuns: as root (or with the program installed) nothing skips,
// whatever the variable says.
func TestRootRuns(t *testing.T) {
	defer func(g func() int) { geteuid = g }(geteuid)
	geteuid = func() int { return 0 }
	t.Setenv(Env, "1")
	Require(t)
	defer func(l func(string) (string, error)) { lookPath = l }(lookPath)
	lookPath = func(name string) (string, error) { return "/opt/" + name, nil }
	if p := Tool(t, "kea-dhcp4"); p != "/opt/kea-dhcp4" {
		t.Errorf("Tool = %q", p)
	}
}
