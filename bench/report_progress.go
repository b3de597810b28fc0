package bench

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// heartbeat prints a benchmark's log lines on w and, whenever nothing was
// printed for `every`, a heartbeat naming what is going on and for how
// long, so that a run never stays silent longer than that (issue 11: at
// most 5 s). Any benchmark can use it: logf for events, set for the
// current activity.
type heartbeat struct {
	mu     sync.Mutex
	w      io.Writer
	every  time.Duration
	last   time.Time // last line printed
	status string    // the current activity
	since  time.Time // when it started
	done   chan struct{}
	wg     sync.WaitGroup
}

// newHeartbeat starts the heartbeat (every must be positive); close stops it.
func newHeartbeat(w io.Writer, every time.Duration) *heartbeat {
	p := &heartbeat{w: w, every: every, last: time.Now(), since: time.Now(), done: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(min(every/4, time.Second))
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case now := <-t.C:
				p.mu.Lock()
				if p.status != "" && now.Sub(p.last) >= p.every {
					fmt.Fprintf(p.w, "bench: … %s (%.0fs)\n", p.status, now.Sub(p.since).Seconds())
					p.last = now
				}
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// logf prints one line ("bench: " prefixed).
func (p *heartbeat) logf(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "bench: "+format+"\n", a...)
	p.last = time.Now()
}

// set names the current activity (printed at once and by the heartbeat).
func (p *heartbeat) set(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = fmt.Sprintf(format, a...)
	p.since = time.Now()
	fmt.Fprintf(p.w, "bench: %s\n", p.status)
	p.last = p.since
}

// close stops the heartbeat.
func (p *heartbeat) close() {
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	p.wg.Wait()
}
