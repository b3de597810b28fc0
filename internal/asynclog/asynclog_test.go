package asynclog

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// gate is an io.Writer that blocks every write until opened, and records
// what it was given. entered, if set, is closed at the first write.
type gate struct {
	open    chan struct{}
	entered chan struct{}
	once    sync.Once
	mu      sync.Mutex
	got     bytes.Buffer
}

func (g *gate) Write(p []byte) (int, error) {
	if g.entered != nil {
		g.once.Do(func() { close(g.entered) })
	}
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.got.Write(p)
}

func (g *gate) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.got.String()
}

func line(i int) string { return fmt.Sprintf("line %04d %s\n", i, strings.Repeat("x", i%50)) }

func notice(n uint64) []byte { return fmt.Appendf(nil, "dropped %d\n", n) }

// TestWriteDoesNotBlock: with the reader stuck, writes return at once;
// what does not fit is dropped whole and counted; once the reader reads,
// the queued lines come out whole and in order, then the notice.
func TestWriteDoesNotBlock(t *testing.T) {
	g := &gate{open: make(chan struct{}), entered: make(chan struct{})}
	w := New(g, 4096, notice)
	before := Dropped()
	start := time.Now()
	// The reader takes the first line and is stuck with it before the
	// rest are written: had it first run late (under -race), it would
	// have taken a full queue then, and the last lines would have fit
	// after all.
	w.Write([]byte(line(0)))
	<-g.entered
	for i := 1; i < 500; i++ {
		w.Write([]byte(line(i)))
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("500 writes took %v with the reader stuck", d)
	}
	lost := Dropped() - before
	if lost == 0 || lost >= 500 {
		t.Fatalf("%d of 500 lines dropped into a 4 KiB buffer", lost)
	}
	close(g.open)
	if !w.Close(5 * time.Second) {
		t.Fatal("Close timed out with the reader reading")
	}
	out := g.String()
	lines := strings.SplitAfter(out, "\n")
	lines = lines[:len(lines)-1] // after the last newline
	var noticed uint64
	next, kept := 0, 0
	for _, l := range lines {
		var n uint64
		if _, err := fmt.Sscanf(l, "dropped %d\n", &n); err == nil {
			noticed += n
			continue
		}
		var i int
		if _, err := fmt.Sscanf(l, "line %d", &i); err != nil || i < next || l != line(i) {
			t.Fatalf("line %q out of order or torn (after %d)", l, next)
		}
		next = i + 1
		kept++
	}
	if noticed != lost || uint64(kept)+lost != 500 {
		t.Fatalf("%d lines out, %d dropped, %d reported dropped, of 500", kept, lost, noticed)
	}
	if !strings.HasPrefix(lines[len(lines)-1], "dropped ") {
		t.Errorf("the last line is %q, not the notice of the last drops", lines[len(lines)-1])
	}
	// After Close: straight through.
	w.Write([]byte("late\n"))
	if !strings.HasSuffix(g.String(), "late\n") {
		t.Error("a write after Close was not written")
	}
}

// TestStream: lines of every length through a 97-byte queue, the writer
// waiting for room: the queue and the batch being written swap buffers
// thousands of times, and every line comes out whole and in order,
// none dropped.
func TestStream(t *testing.T) {
	var mu sync.Mutex
	var got bytes.Buffer
	out := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return got.Write(p)
	})
	w := New(out, 97, nil)
	var want bytes.Buffer
	before := Dropped()
	for i := range 2000 {
		l := fmt.Sprintf("%05d %s\n", i, strings.Repeat("y", i%40))
		for {
			// Wait for room, so that no line is dropped.
			w.mu.Lock()
			room := w.size - len(w.q)
			w.mu.Unlock()
			if room >= len(l) {
				break
			}
			time.Sleep(10 * time.Microsecond)
		}
		w.Write([]byte(l))
		want.WriteString(l)
	}
	w.Close(5 * time.Second)
	if Dropped() != before {
		t.Fatalf("%d lines dropped", Dropped()-before)
	}
	mu.Lock()
	defer mu.Unlock()
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("out differs: %d bytes, want %d", got.Len(), want.Len())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestCloseTimeout: a reader that never reads does not keep Close
// waiting past its timeout.
func TestCloseTimeout(t *testing.T) {
	g := &gate{open: make(chan struct{})}
	defer close(g.open)
	w := New(g, 1024, nil)
	w.Write([]byte("stuck\n"))
	start := time.Now()
	if w.Close(100 * time.Millisecond) {
		t.Fatal("Close reported everything written with the reader stuck")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
	// After a Close that timed out, a line is dropped, not written past
	// the stuck reader (the write would block), and Close says so again.
	before := Dropped()
	done := make(chan struct{})
	go func() { w.Write([]byte("after\n")); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("a write after a timed-out Close blocked")
	}
	if Dropped() != before+1 || w.Close(time.Millisecond) {
		t.Errorf("after the timed-out Close: %d dropped, second Close ok", Dropped()-before)
	}
}

// TestNoticeWithoutNextLine: a drop alone (a line longer than the queue)
// is reported without waiting for another line.
func TestNoticeWithoutNextLine(t *testing.T) {
	var mu sync.Mutex
	var got bytes.Buffer
	w := New(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return got.Write(p)
	}), 16, notice)
	defer w.Close(time.Second)
	w.Write([]byte(strings.Repeat("z", 40) + "\n"))
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		mu.Lock()
		s := got.String()
		mu.Unlock()
		if s == "dropped 1\n" {
			return
		}
	}
	t.Fatal("no notice of the dropped line")
}

// TestWriteAllocs: queueing a line allocates nothing.
func TestWriteAllocs(t *testing.T) {
	w := New(writerFunc(func(p []byte) (int, error) { return len(p), nil }), 1<<16, nil)
	defer w.Close(time.Second)
	p := []byte(line(7))
	if n := testing.AllocsPerRun(1000, func() { w.Write(p) }); n != 0 {
		t.Fatalf("%v allocations per Write", n)
	}
}
