package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Pacing the generator's exchanges: run starts them at the offered rate
// (startOne) while a goroutine reads the replies (handle), retransmits or
// fails the messages whose wait is over (timeouts, on backoff's schedule:
// RFC 2131 §4.1) and decides when the run stops.

// maxBackoff caps a retransmission's wait (RFC 2131 §4.1: 64 s).
const maxBackoff = 64 * time.Second

// backoff is the wait after transmission n (1-based) of a message:
// timeout doubled at each retransmission (RFC 2131 §4.1: 4, 8, 16, ... s
// with the default 4 s), capped at 64 s, randomised by ±timeout/4 (±1 s
// at 4 s) with r uniform in [0, 1).
func backoff(timeout time.Duration, n int, r float64) time.Duration {
	d := timeout
	for i := 1; i < n && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, max(maxBackoff, timeout))
	j := time.Duration((2*r - 1) * float64(timeout/4))
	return d + j
}

// scheduleLen is how long a message can wait in all before it fails:
// the sum of its retries+1 backoffs at their longest.
func scheduleLen(timeout time.Duration, retries int) time.Duration {
	var t time.Duration
	for n := 1; n <= retries+1; n++ {
		t += backoff(timeout, n, 1)
	}
	return t
}

// run paces the exchanges for the duration, waits for the last ones and
// returns the results. recv reads one frame (it may time out).
func (g *generator) run(ctx context.Context, recv func([]byte) (int, error)) *GenResult {
	g.t0 = time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, err := recv(buf)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || errors.Is(err, unix.EWOULDBLOCK) {
					continue
				}
				fmt.Fprintf(os.Stderr, "dhcp-client-gen: recv: %v\n", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			g.handle(buf[:n], time.Now())
		}
	}()

	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	started := 0
	window := g.o.duration
	drain := g.o.drain
	if drain == 0 {
		drain = scheduleLen(g.o.timeout, g.o.retries) + time.Second
	}
	// The fail-fast budget: failures + skips allowed over the whole window.
	budget := int(g.o.failFast / 100 * g.o.rate * window.Seconds())
	lastProgress := g.t0
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			now = time.Now()
			window = min(window, now.Sub(g.t0))
		case now = <-tick.C:
		}
		el := now.Sub(g.t0)
		inWindow := el < window && ctx.Err() == nil
		var due int
		switch {
		case inWindow:
			due = int(el.Seconds()*g.o.rate) + 1
		case g.o.persist && ctx.Err() == nil:
			due = g.o.clients // the last starts of the second
		}
		if g.o.persist {
			due = min(due, g.o.clients)
		}
		g.mu.Lock()
		for ; started < due; started++ {
			g.startOne(now)
		}
		g.timeouts(now)
		idle := g.busy == 0
		bad := g.failed + g.res.Skipped
		bound := g.res.Bound
		g.mu.Unlock()
		if g.o.progress > 0 && now.Sub(lastProgress) >= g.o.progress {
			lastProgress = now
			g.mu.Lock()
			fmt.Fprintf(os.Stderr, "progress: %.0fs started=%d failed=%d skipped=%d busy=%d bound=%d\n",
				el.Seconds(), g.started, g.failed, g.res.Skipped, g.busy, g.res.Bound)
			g.mu.Unlock()
		}
		stopped := ""
		switch {
		case ctx.Err() != nil && (idle || !inWindow):
			stopped = "interrupted"
		case g.o.failFast > 0 && bad > budget:
			stopped = "fail_fast"
		case g.o.persist && float64(bound) >= g.o.until*float64(g.o.clients):
			stopped = "until"
		case g.o.persist && el >= g.o.maxTime:
			stopped = "max_time"
		case !g.o.persist && !inWindow && idle:
			stopped = "idle"
		case !g.o.persist && !inWindow && el >= window+drain:
			stopped = "drain"
		}
		if stopped != "" {
			g.res.Stopped = stopped
			break
		}
	}
	close(stop)
	wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	end := time.Now()
	for i := range g.clients {
		if c := &g.clients[i]; c.state == stDiscover || c.state == stRequest {
			g.finish(c, FailUnfinished, end)
		}
	}
	g.res.WindowS = round(window.Seconds(), 3)
	g.res.EndUs = g.since(end)
	return &g.res
}

// startOne starts an exchange on the next idle client (round robin).
func (g *generator) startOne(now time.Time) {
	n := len(g.clients)
	for k := 0; k < n; k++ {
		c := &g.clients[g.next]
		g.next = (g.next + 1) % n
		if c.state != stIdle {
			continue
		}
		if !g.anyStart {
			g.anyStart, g.res.FirstStartUs = true, g.since(now)
		}
		g.busy++
		g.started++
		g.discover(c, now)
		return
	}
	g.res.Skipped++
}

// timeouts retransmits or fails messages whose wait is over. A client
// that persists keeps retransmitting its DISCOVER (the wait capped at
// 64 s) and starts over after a REQUEST that got no answer.
func (g *generator) timeouts(now time.Time) {
	if g.busy == 0 || now.Sub(g.lastScan) < timeoutScan(g.o.timeout) {
		return
	}
	g.lastScan = now
	for i := range g.clients {
		c := &g.clients[i]
		if (c.state != stDiscover && c.state != stRequest) || now.Before(c.due) {
			continue
		}
		if c.sent <= g.o.retries || (g.o.persist && c.state == stDiscover) {
			g.transmit(c, now)
			continue
		}
		reason := FailNoOffer
		if c.state == stRequest {
			reason = FailNoAck
		}
		g.finish(c, reason, now)
		if g.o.persist {
			g.busy++
			g.discover(c, now)
		}
	}
}

// timeoutScan is how often the pacer looks for expired waits: the
// resolution of the retransmissions, 1/40 of the first wait within
// [5 ms, 100 ms], so that a scan of every client stays cheap.
func timeoutScan(timeout time.Duration) time.Duration {
	return min(max(timeout/40, 5*time.Millisecond), 100*time.Millisecond)
}
