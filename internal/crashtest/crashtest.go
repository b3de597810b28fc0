// Package crashtest runs a test's own binary as a child that a failpoint
// (package failpoint, built with -tags failpoints) kills with SIGKILL at a
// named point: the crash tests then check what the child left behind (a
// store file, a journal) the way a restarted ispmux finds it. For tests
// only.
package crashtest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// KillAt runs the test named test of this test binary
// (-test.run=^test$) as a child, with env (KEY=VALUE: how the child knows
// it is the child, and where to work) and ISPMUX_FAILPOINT=point (NAME or
// NAME@N, as package failpoint reads it), and fails t unless the failpoint
// killed the child there: SIGKILL, and its "failpoint NAME: SIGKILL" line
// on stderr. A child that ends otherwise
// (the point never hit, a failure) fails t with its stderr.
func KillAt(t testing.TB, test, env, point string) {
	t.Helper()
	name, _, _ := strings.Cut(point, "@") // "NAME@N": the N-th hit of NAME
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env, "ISPMUX_FAILPOINT="+point)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL ||
		!bytes.Contains(stderr.Bytes(), []byte("failpoint "+name+": SIGKILL")) {
		t.Fatalf("child %s not killed at %s: %v\n%s", test, point, err, stderr.String())
	}
}
