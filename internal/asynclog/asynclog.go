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

// DefaultSize is the queue New makes for a size of 0: about 5000 lines of
// ~200 bytes, seconds of a busy appliance's log (and as much again being
// written).
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
	size   int

	mu     sync.Mutex
	q      []byte // the queued lines (capacity size)
	lost   uint64 // lines dropped since the last notice
	closed bool
	// stuck: Close timed out with the reader stuck; later lines are
	// dropped rather than written past it.
	stuck bool

	// free is the buffer the writing goroutine hands back (it swaps it
	// with q: no copy under mu).
	free []byte
	wake chan struct{} // capacity 1: something queued or dropped, or closed
	done chan struct{} // closed when the writing goroutine ends
}

// New returns a Writer that queues up to size bytes for out, while it
// writes out up to size more (the previous batch); notice (nil: none)
// renders the line reporting dropped lines.
func New(out io.Writer, size int, notice func(n uint64) []byte) *Writer {
	if size <= 0 {
		size = DefaultSize
	}
	w := &Writer{out: out, notice: notice, size: size, q: make([]byte, 0, size), free: make([]byte, 0, size),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w
}

// Write queues p, a whole line, and returns at once: it is dropped (and
// counted) if the queue cannot hold it. After Close it writes p to out
// directly, or drops it if Close timed out (the reader stuck).
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.closed && !w.stuck {
		w.mu.Unlock()
		return w.out.Write(p)
	}
	if w.stuck || len(w.q)+len(p) > w.size {
		w.lost++
		w.mu.Unlock()
		dropped.Add(1)
		w.signal() // the notice, once the reader reads
		return len(p), nil
	}
	w.q = append(w.q, p...) // within q's capacity: no allocation
	w.mu.Unlock()
	w.signal()
	return len(p), nil
}

func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run writes out the queued lines, then the notice of the dropped ones.
func (w *Writer) run() {
	defer close(w.done)
	for {
		<-w.wake
		for {
			w.mu.Lock()
			out := w.q
			w.q = w.free[:0]
			lost := w.lost
			w.lost = 0
			closed := w.closed
			w.mu.Unlock()
			if len(out) == 0 && lost == 0 {
				w.free = out
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
			w.free = out
		}
	}
}

// Close writes out what is queued, waiting at most timeout for the reader
// (a reader that never reads would keep the process from exiting), and
// reports whether everything was written. Later writes go to out directly
// or, if it timed out, are dropped. A second Close returns the first one's
// result.
func (w *Writer) Close(timeout time.Duration) bool {
	w.mu.Lock()
	if w.closed {
		ok := !w.stuck
		w.mu.Unlock()
		return ok
	}
	w.closed = true
	w.mu.Unlock()
	w.signal()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.done:
		return true
	case <-t.C:
		w.mu.Lock()
		w.stuck = true
		w.mu.Unlock()
		return false
	}
}
