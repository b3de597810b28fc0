package bench

import (
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ispmux/ispmux/internal/privtest"
)

// newBenchLab starts a privileged bench lab test: it skips or fails t as
// privtest.Lab does (root, and not in -short), builds cmd/ispmux into a
// temporary directory of t and picks a lab ID, prefix and 4 random hex
// digits (a prefix per test names whose lab a leftover is). It returns
// the directory, the binary (for --exe) and the ID (for --id).
func newBenchLab(t *testing.T, prefix string) (dir, exe, labID string) {
	t.Helper()
	privtest.Lab(t)
	dir = t.TempDir()
	exe = filepath.Join(dir, "ispmux")
	if out, err := exec.Command("go", "build", "-o", exe, "github.com/ispmux/ispmux/cmd/ispmux").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	id := make([]byte, 2)
	if _, err := rand.Read(id); err != nil {
		t.Fatal(err)
	}
	return dir, exe, prefix + hex.EncodeToString(id)
}

// checkLabGone fails t if a network namespace of lab labID is left.
func checkLabGone(t *testing.T, labID string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), labID+"-") {
		t.Errorf("lab %s left behind:\n%s", labID, out)
	}
}
