// Package asynclog is the appliance's log writer: log lines are queued in
// a bounded buffer and written out by a goroutine of their own, so that
// nothing on the DHCP path waits for the log's reader. Standard error is a
// blocking descriptor (a pipe or journald's stream socket): when the reader
// falls behind, a write(2) to it blocks, and the goroutine that logged (the
// DHCP relay, logging a new binding) would block with it, holding its P
// until sysmon takes it back. Here only the writing goroutine blocks; a
// line that does not fit in the buffer is dropped whole and counted, and
// the count is logged once the reader catches up (and exported as
// ispmux_log_dropped_lines_total).
//
// One Write is one line: slog's handlers write each record with one call,
// which this package keeps whole (queued or dropped, never split).
package asynclog

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultSize is the buffer New makes for a size of 0: about 5000 lines
// of ~200 bytes, seconds of a busy appliance's log.
const DefaultSize = 1 << 20

// dropped counts the lines every Writer dropped.
var dropped atomic.Uint64

// Dropped returns how many lines the process's Writers dropped.
func Dropped() uint64 { return dropped.Load() }

// Writer queues lines for out. Safe for concurrent use.
type Writer struct {
	out io.Writer
	// notice renders the line that reports n dropped lines (in the log's
	// own format).
	notice func(n uint64) []byte

	mu      sync.Mutex
	buf     []byte // ring of queued bytes
	head, n int    // the queued bytes: n of them from buf[head]
	lost    uint64 // lines dropped since the last notice
	closed  bool

	wake chan struct{} // capacity 1: something queued, or closed
	done chan struct{} // closed when the writing goroutine ends
}

// New returns a Writer that queues up to size bytes for out; notice (nil:
// none) renders the line reporting dropped lines.
func New(out io.Writer, size int, notice func(n uint64) []byte) *Writer {
	if size <= 0 {
		size = DefaultSize
	}
	w := &Writer{out: out, notice: notice, buf: make([]byte, size), wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w
}

// Write queues p, a whole line, and returns at once: it is dropped (and
// counted) if the buffer cannot hold it. After Close it writes p to out
// directly.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return w.out.Write(p)
	}
	if len(p) > len(w.buf)-w.n {
		w.lost++
		w.mu.Unlock()
		dropped.Add(1)
		return len(p), nil
	}
	tail := (w.head + w.n) % len(w.buf)
	c := copy(w.buf[tail:], p)
	copy(w.buf, p[c:]) // wrapped around
	w.n += len(p)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// run writes out what is queued, then the notice of what was dropped.
func (w *Writer) run() {
	defer close(w.done)
	var out []byte
	for {
		<-w.wake
		for {
			w.mu.Lock()
			out = out[:0]
			if end := w.head + w.n; end <= len(w.buf) {
				out = append(out, w.buf[w.head:end]...)
			} else {
				out = append(append(out, w.buf[w.head:]...), w.buf[:end-len(w.buf)]...)
			}
			w.head, w.n = 0, 0
			lost := w.lost
			w.lost = 0
			closed := w.closed
			w.mu.Unlock()
			if len(out) == 0 && lost == 0 {
				if closed {
					return
				}
				break
			}
			// Errors have nowhere to go: the log is where they would.
			_, _ = w.out.Write(out)
			if lost > 0 && w.notice != nil {
				_, _ = w.out.Write(w.notice(lost))
			}
		}
	}
}

// Close writes out what is queued, waiting at most timeout for the reader
// (a reader that never reads would keep the process from exiting), and
// makes later writes go to out directly. It reports whether everything
// queued was written.
func (w *Writer) Close(timeout time.Duration) bool {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return true
	}
	w.closed = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.done:
		return true
	case <-t.C:
		return false
	}
}
