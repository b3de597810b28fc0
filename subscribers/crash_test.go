package subscribers

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashChildEnv = "SUBSCRIBERS_CRASH_CHILD"

// TestCrashSafety re-executes the test binary as a child that commits
// bindings from several goroutines (so group commits happen), some with
// an event (CommitBindingEvent, in the journal) and some followed by one
// (AddEvent, a bbolt transaction), and prints each index, and each
// event's Seq and ISPSeq, once the call has returned. The parent SIGKILLs
// it in mid-stream, reopens the file and checks that every binding the
// child reported is there, intact, that every reported event reads back
// with its numbers, and that no ISP's sequence has a gap or a number given
// twice (checkISPNumbering). It fails if a call ever returns before its
// record is durable, or the replay numbers an event otherwise than the
// call returned it.
//
// A SIGKILL keeps the page cache, so this proves commit-before-return, not
// fsync; the fsync is bbolt's (Options.NoSync false, checked below).
func TestCrashSafety(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary; skipped in -short")
	}
	path := filepath.Join(t.TempDir(), "state.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSafety$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	const killAfter = 300
	committed := map[int]bool{}
	var events []Event // as the child's calls returned them
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "event "); ok {
			var i int
			var seq, ispSeq uint64
			if _, err := fmt.Sscanf(line, "%d %d %d", &i, &seq, &ispSeq); err != nil {
				t.Fatalf("child printed %q", sc.Text())
			}
			events = append(events, Event{Seq: seq, ISPSeq: ispSeq, MAC: mac(i), ISP: testBinding(i).ISP})
			continue
		}
		line, ok := strings.CutPrefix(sc.Text(), "committed ")
		if !ok {
			continue
		}
		i, err := strconv.Atoi(line)
		if err != nil {
			t.Fatalf("child printed %q", sc.Text())
		}
		committed[i] = true
		if len(committed) == killAfter && !killed {
			// Kill without waiting for the rest: the child is in the
			// middle of further commits. Lines already in the pipe are
			// still read below and count as committed.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !killed || !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed mid-stream: killed=%v, wait: %v", killed, err)
	}

	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer s.Close()
	all, err := s.Bindings()
	if err != nil {
		t.Fatalf("Bindings after crash: %v", err)
	}
	have := map[int]Binding{}
	for _, b := range all {
		i := int(b.MAC[2])<<24 | int(b.MAC[3])<<16 | int(b.MAC[4])<<8 | int(b.MAC[5])
		have[i] = b
	}
	lost := 0
	for i := range committed {
		b, ok := have[i]
		if !ok {
			lost++
			if lost <= 5 {
				t.Errorf("binding %d was reported committed but is missing", i)
			}
			continue
		}
		if !bindingEqual(b, normB(testBinding(i))) {
			t.Errorf("binding %d = %+v, want %+v", i, b, testBinding(i))
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d committed bindings lost", lost, len(committed))
	}
	if len(events) == 0 {
		t.Fatal("the child reported no event")
	}
	checkISPNumbering(t, "after the SIGKILL", s, events)
	t.Logf("child reported %d commits and %d events before it died; file holds %d bindings", len(committed), len(events), len(all))
}

// crashChild commits bindings forever from 8 goroutines, binding i with
// its event (of its ISP) if i is odd, followed by an event of its own if
// i%4 == 0; the parent kills it.
func crashChild(path string) {
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	if s.db.NoSync {
		fmt.Fprintln(os.Stderr, "child: NoSync is set")
		os.Exit(2)
	}
	const workers = 8
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := g; ; i += workers {
				b := testBinding(i)
				var e Event
				var err error
				switch {
				case i%2 == 1:
					e, err = s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: b.ISP})
				case i%4 == 0:
					if err = s.CommitBinding(b); err == nil {
						e, err = s.AddEvent(Event{Kind: EventRenewed, MAC: b.MAC, ISP: b.ISP})
					}
				default:
					err = s.CommitBinding(b)
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					os.Exit(2)
				}
				mu.Lock()
				if e.Seq != 0 {
					fmt.Fprintf(w, "event %d %d %d\n", i, e.Seq, e.ISPSeq)
				}
				fmt.Fprintf(w, "committed %d\n", i)
				w.Flush() // one write(2) per line, after the commit returned
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	time.Sleep(time.Hour)
}
