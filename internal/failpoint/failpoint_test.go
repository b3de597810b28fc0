package failpoint

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestHit re-executes the test binary with a failpoint armed: built with
// the tag it must die by SIGKILL at the second hit; built without, Hit is
// a no-op and the child exits normally.
func TestHit(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") != "" {
		Hit(BindAfterCommit)
		Hit(RelayBeforeSend)
		Hit(BindAfterCommit)
		os.Stderr.WriteString("survived\n")
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestHit$")
	cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=1", "ISPMUX_FAILPOINT="+BindAfterCommit+"@2")
	out, err := cmd.CombinedOutput()
	if !Enabled {
		if err != nil || !strings.Contains(string(out), "survived") {
			t.Fatalf("without the tag the child must survive: %v\n%s", err, out)
		}
		return
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child not killed by SIGKILL: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "failpoint "+BindAfterCommit+": SIGKILL") || strings.Contains(string(out), "survived") {
		t.Fatalf("child output:\n%s", out)
	}
}
