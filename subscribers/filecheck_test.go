package subscribers

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// storeChild runs the named test in a child process with env set, and
// returns its combined output and error (a fatal signal in the child is a
// failure here, not a crash of the whole test binary; a child that hangs
// fails within a minute, with its goroutines in the output).
func storeChild(t *testing.T, name string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.count=1", "-test.v", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestTruncatedStoreRefused: a store file cut short (a copy interrupted, a
// disk that filled while it was copied) or empty is refused by Open with an
// error (checkStoreFile). Before, the process died of SIGBUS in bbolt's
// Open at 8 KiB, 64 KiB and 256 KiB, and an empty file opened as an empty
// store. Each Open runs in a child process: a crash fails the test, not
// the test binary.
func TestTruncatedStoreRefused(t *testing.T) {
	if childOpen(t, "ISPMUX_TEST_TRUNC_PATH") {
		return
	}
	data := storeOf5000(t)
	for _, n := range []int{0, 100, 8192, 64 << 10, 256 << 10} {
		cut := filepath.Join(t.TempDir(), "cut.db")
		if err := os.WriteFile(cut, data[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := storeChild(t, "TestTruncatedStoreRefused", "ISPMUX_TEST_TRUNC_PATH="+cut)
		switch {
		case err != nil || !strings.Contains(out, "CHILD:"):
			t.Errorf("store of %d bytes cut to %d: the process died (%v):\n%s", len(data), n, err, tail(out, 600))
		case strings.Contains(out, "CHILD: Bindings = 0, <nil>"):
			t.Errorf("store of %d bytes cut to %d: opened as an empty store, no error:\n%s", len(data), n, tail(out, 600))
		default:
			t.Logf("cut to %d: %s", n, tail(out, 600))
		}
	}
}

// childOpen is the child process's part of the tests below: it opens the
// store named by the environment variable env and lists its bindings,
// logging what happened. It reports whether it ran (false: not the child).
func childOpen(t *testing.T, env string) bool {
	p := os.Getenv(env)
	if p == "" {
		return false
	}
	s, err := Open(p, Options{NoSync: true})
	if err != nil {
		t.Logf("CHILD: Open refused: %v", err)
		return true
	}
	defer s.Close()
	bs, err := s.Bindings()
	t.Logf("CHILD: Bindings = %d, %v", len(bs), err)
	return true
}

// storeOf5000 returns the file of a closed store of 5000 bindings.
func storeOf5000(t *testing.T) []byte {
	s, path := openTest(t, Options{NoSync: true})
	for i := range 5000 {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// TestCorruptPageNoCrash: a store file with one data page overwritten
// (bit rot, a bad copy) gives errors wrapping ErrCorrupt (guardRead), not a
// dead process: bbolt's page check panicked, in the child as it would in
// the restore at start.
func TestCorruptPageNoCrash(t *testing.T) {
	if childOpen(t, "ISPMUX_TEST_CORRUPT_PATH") {
		return
	}
	data := storeOf5000(t)
	for _, pg := range []int{20, 60, 100} {
		d := append([]byte(nil), data...)
		for k := pg * 4096; k < (pg+1)*4096; k++ {
			d[k] = byte(k*7 + 3)
		}
		p := filepath.Join(t.TempDir(), "bad.db")
		if err := os.WriteFile(p, d, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := storeChild(t, "TestCorruptPageNoCrash", "ISPMUX_TEST_CORRUPT_PATH="+p)
		switch {
		case err != nil || !strings.Contains(out, "CHILD:"):
			t.Errorf("page %d overwritten: the process died (%v):\n%s", pg, err, tail(out, 600))
		case !strings.Contains(out, "the store file is damaged"):
			t.Errorf("page %d overwritten: not reported:\n%s", pg, tail(out, 600))
		default:
			t.Logf("page %d: %s", pg, tail(out, 400))
		}
	}
}

// TestCorruptPageWriteNoCrash: a page damaged while the store is open (bit
// rot under a running ispmux) is met first by a write: the registration
// write, the binding's commit and the checkpoint at Close get errors
// wrapping ErrCorrupt (update), not a dead process, and nothing waits
// forever. bbolt's panic on the page ended the process before.
func TestCorruptPageWriteNoCrash(t *testing.T) {
	if s, p, ok := liveChild(t, "ISPMUX_TEST_CORRUPT_WRITE"); ok {
		damagePastMetas(t, p)
		livePut(t, s, "PutRegistration", 9999)
		liveOp(t, "CommitBinding", func() error { return s.CommitBinding(testBinding(9999)) })
		livePut(t, s, "PutRegistration again", 9998)
		liveOp(t, "Close", s.Close)
		return
	}
	out := liveParent(t, "TestCorruptPageWriteNoCrash", "ISPMUX_TEST_CORRUPT_WRITE")
	for _, w := range []string{"PutRegistration", "CommitBinding", "PutRegistration again", "Close"} {
		if !strings.Contains(out, "CHILD: "+w+" corrupt=true: ") {
			t.Errorf("%s: no error wrapping ErrCorrupt", w)
		}
	}
}
