package datapath

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/privtest"
)

// TestXDPIdleWakeStress runs UDP exchanges through a worker that parks for
// an hour at a time and whose iterations sometimes end slowly (slowFlush),
// so that frames (each exchange's next datagram, sent as soon as the
// previous answer is in) often land after the worker read its rings and
// before its wait begins: the netpoller sees their edge then and the
// runtime forgets it when the wait starts (RawRead resets the descriptor);
// only the look at the rings (epollReady) finds them. One exchange at a
// time: a datagram left in a ring has nothing behind it to wake the
// worker, so the exchange waits the hour, and the test fails it after
// 500 ms (far above what a loaded machine adds; ping's own wait for its
// last reply, two round trips, was not). Exchanges start from both sides,
// so both p0's and p1's rings are tried: a mutant that skips the look, or
// looks at p0 only, fails. "kicks" adds injections at random moments
// (read deadlines in the past racing the parks). (The first version of
// this test, a review helper's, used ping floods and failed on a loaded
// machine with the look and without it: ping gave up on a late reply.)
func TestXDPIdleWakeStress(t *testing.T) {
	privtest.Lab(t)
	if testing.Short() {
		t.Skip("-short")
	}
	for _, kicks := range []bool{false, true} {
		name := map[bool]string{false: "frames", true: "kicks"}[kicks]
		t.Run(name, func(t *testing.T) { idleWakeStress(t, kicks) })
	}
}

// listenUDP opens a UDP socket on addr in network namespace ns (a socket
// stays in the namespace it was made in).
func listenUDP(t *testing.T, ns, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	var err error
	inNetns(t, ns, func() { c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr))) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func idleWakeStress(t *testing.T, kicks bool) {
	id := wireTopo(t)
	_, w := parkedWire(t, id, slowFlush{})
	done := make(chan error)
	go func() { done <- w.Run() }()
	defer func() {
		w.Stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	stopInj := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stopInj)
	if kicks {
		wg.Add(1)
		go func() { // junk frames out of p1, dropped by b
			defer wg.Done()
			junk := make([]byte, 60)
			copy(junk, []byte{0x02, 0, 0, 0, 0, 0x99, 0x02, 0, 0, 0, 0, 0x98, 0x88, 0xb5})
			for {
				select {
				case <-stopInj:
					return
				case <-time.After(time.Duration(rand.IntN(3000)) * time.Microsecond):
				}
				w.Inject(1, junk)
			}
		}()
	}

	// An echo server on each side, and a client on each side.
	echoA := listenUDP(t, id+"-a", "10.9.0.1:7001")
	echoB := listenUDP(t, id+"-b", "10.9.0.2:7002")
	clientA := listenUDP(t, id+"-a", "10.9.0.1:7101")
	clientB := listenUDP(t, id+"-b", "10.9.0.2:7102")
	for _, e := range []*net.UDPConn{echoA, echoB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for {
				n, from, err := e.ReadFromUDPAddrPort(buf)
				if err != nil {
					return // closed at cleanup
				}
				_, _ = e.WriteToUDPAddrPort(buf[:n], from)
			}
		}()
	}
	defer echoA.Close()
	defer echoB.Close()

	const exchanges = 2000
	const wait = 500 * time.Millisecond
	var slowest time.Duration
	buf := make([]byte, 64)
	for i := range exchanges {
		c, to := clientA, netip.MustParseAddrPort("10.9.0.2:7002")
		if i%2 == 1 {
			c, to = clientB, netip.MustParseAddrPort("10.9.0.1:7001")
		}
		msg := []byte{byte(i >> 8), byte(i)}
		start := time.Now()
		if _, err := c.WriteToUDPAddrPort(msg, to); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(start.Add(wait))
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			t.Fatal(err)
		}
		if err != nil || n != 2 || buf[0] != msg[0] || buf[1] != msg[1] {
			it, sl := w.Loops()
			t.Fatalf("exchange %d of %d (from %s): no answer within %v (%v): a datagram stayed in a ring while the worker slept (loops %d, sleeps %d)",
				i, exchanges, map[bool]string{true: "a", false: "b"}[i%2 == 0], wait, err, it, sl)
		}
		slowest = max(slowest, time.Since(start))
	}
	_, sleeps := w.Loops()
	t.Logf("%d exchanges, slowest %v, worker parked %d times", exchanges, slowest, sleeps)
	if sleeps < exchanges/4 {
		t.Errorf("the worker parked %d times in %d exchanges: the test did not test the wake-up", sleeps, exchanges)
	}
}

// slowFlush is wire whose Flush (the end of an iteration, after the rings
// were read) takes up to 200 µs half the time.
type slowFlush struct{ wire }

func (slowFlush) Flush() {
	if d := rand.IntN(400); d < 200 {
		time.Sleep(time.Duration(d) * time.Microsecond)
	}
}
