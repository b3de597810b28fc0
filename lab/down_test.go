package lab

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/privtest"
)

// TestDownTerminatesFirst: Down gives the lab's processes SIGTERM and time
// to exit cleanly (ispmux detaches XDP on it) before SIGKILL, which only
// the processes that ignore SIGTERM get, after downGrace.
func TestDownTerminatesFirst(t *testing.T) {
	privtest.Lab(t)
	id := testID(t)
	topo := up(t, Options{ID: id, Subscribers: 1})
	downGrace = 2 * time.Second
	t.Cleanup(func() { downGrace = 5 * time.Second })
	mark := filepath.Join(t.TempDir(), "terminated")

	// A process that cleans up on SIGTERM, and one that ignores it.
	clean := topo.Cmd(context.Background(), topo.Appliance.NS, "sh", "-c",
		`trap 'echo clean > `+mark+`; exit 0' TERM; while :; do sleep 0.05; done`)
	stubborn := topo.Cmd(context.Background(), topo.Subscribers[0].NS, "sh", "-c",
		`trap '' TERM; while :; do sleep 0.05; done`)
	waits := map[string]chan error{}
	for name, c := range map[string]*exec.Cmd{"clean": clean, "stubborn": stubborn} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		ch := make(chan error, 1)
		go func() { ch <- c.Wait() }()
		waits[name] = ch
	}
	time.Sleep(200 * time.Millisecond) // the traps are set

	start := time.Now()
	if err := Down(context.Background(), id); err != nil {
		t.Fatalf("Down: %v", err)
	}
	took := time.Since(start)

	if err := <-waits["clean"]; err != nil {
		t.Errorf("the process that handles SIGTERM: %v, want a clean exit", err)
	}
	if b, err := os.ReadFile(mark); err != nil || strings.TrimSpace(string(b)) != "clean" {
		t.Errorf("its SIGTERM handler did not run: %q %v", b, err)
	}
	var ee *exec.ExitError
	if err := <-waits["stubborn"]; !errors.As(err, &ee) || !strings.Contains(ee.String(), "killed") {
		t.Errorf("the process that ignores SIGTERM: %v, want killed", err)
	}
	// The upper bound only says Down did not wait on the stubborn
	// process (its "killed" above says who ended it): the namespaces'
	// teardown after it took 5.7 s of a loaded CI run.
	if took < downGrace || took > downGrace+30*time.Second {
		t.Errorf("Down took %v, want the grace of %v and then SIGKILL", took, downGrace)
	}
	if ns := labNamespaces(t, id); len(ns) != 0 {
		t.Errorf("namespaces left: %v", ns)
	}
}

// TestDownNoWaitWhenAllExit: processes that exit on SIGTERM do not make
// Down wait for the grace period.
func TestDownNoWaitWhenAllExit(t *testing.T) {
	privtest.Lab(t)
	id := testID(t)
	topo := up(t, Options{ID: id, Subscribers: 1})
	c := topo.Cmd(context.Background(), topo.Appliance.NS, "sleep", "60")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	start := time.Now()
	if err := Down(context.Background(), id); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if took := time.Since(start); took > downGrace/2 {
		t.Errorf("Down took %v with only a process that exits on SIGTERM", took)
	}
	var ee *exec.ExitError
	if err := <-done; !errors.As(err, &ee) || !strings.Contains(ee.String(), "terminated") {
		t.Errorf("sleep: %v, want terminated (SIGTERM)", err)
	}
}
