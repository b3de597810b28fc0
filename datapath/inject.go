package datapath

import "time"

// The control plane's frames (DHCP answers, relayed requests, ARP): queued
// by Inject from any goroutine, placed by the worker's loop at the head of
// their port's TX batch (drainInjected).

type injected struct {
	port uint8
	buf  []byte
	held time.Time // when it first found no free frame (zero: never)
}

// Inject queues a copy of frame to be sent out of port by the worker (the
// control plane's only way to transmit). It reports false, dropping the
// frame, when the injection queue is full or the port is not served.
func (w *Worker) Inject(port uint8, frame []byte) bool {
	if int(port) >= len(w.queues) || w.queues[port] == nil {
		return false
	}
	w.injMu.Lock()
	n := len(w.injFree)
	if n == 0 {
		w.injMu.Unlock()
		return false
	}
	buf := append(w.injFree[n-1][:0], frame...)
	w.injFree = w.injFree[:n-1]
	w.inj = append(w.inj, injected{port: port, buf: buf})
	w.injN.Add(1)
	w.injMu.Unlock()
	// Only a sleeping worker needs a wake-up; a running one
	// sees injN at the end of its iteration. The worker sets sleeping
	// before its last look at injN, so one of the two always sees the
	// other (sequentially consistent atomics).
	if w.sleeping.Load() {
		w.wake()
	}
	return true
}

// drainInjected copies the queued injected frames into their ports' TX
// batches and returns how many it placed. A frame that finds no free
// frame of its port stays queued, in order
// with the later ones of that port, for up to injectHold (see there); one
// dropped then, or at once for a port in error, is counted as NoFrame.
func (w *Worker) drainInjected() int {
	w.injMu.Lock()
	defer w.injMu.Unlock()
	n, kept := 0, 0
	var waiting uint64 // a bit per port whose earlier frame waits (MaxPorts <= 64)
	var now time.Time
	for _, in := range w.inj {
		q := w.queues[in.port]
		bit := uint64(1) << in.port
		if waiting&bit == 0 {
			d, ok := q.Alloc()
			if ok && len(in.buf) <= w.fsize[in.port] {
				d.Len = uint32(copy(w.umems[in.port][d.Addr:d.Addr+uint64(w.fsize[in.port])], in.buf))
				w.tx[in.port] = append(w.tx[in.port], d)
				w.txIn[in.port] = append(w.txIn[in.port], noIngress)
				n++
				w.injFree = append(w.injFree, in.buf)
				continue
			}
			if ok { // larger than the port's frames
				q.Free(d)
				w.injFree = append(w.injFree, in.buf)
				continue
			}
		}
		if now.IsZero() {
			now = time.Now()
		}
		if in.held.IsZero() {
			in.held = now
		}
		if w.qerr[in.port] || now.Sub(in.held) >= injectHold {
			countNoFrame(q) // dropped: not sent for want of a frame
			w.injFree = append(w.injFree, in.buf)
			continue
		}
		waiting |= bit
		w.inj[kept] = in
		kept++
	}
	w.injN.Add(-int32(len(w.inj) - kept))
	clear(w.inj[kept:])
	w.inj = w.inj[:kept]
	return n
}

// injectHold is how long an injected frame waits for a free frame of its
// port (all of them in flight: forwarded frames not yet completed) before
// it is dropped. The control plane's frames are few and some are sent
// once only (a RELEASE to an ISP, recorded as sent once queued here):
// they wait for a frame rather than lose out to the forwarded traffic. A
// port in error drops them at once.
var injectHold = 100 * time.Millisecond

// injectCap bounds the control plane's queued frames per worker: a group commit
// can release hundreds of DHCP ACKs at once.
const injectCap = 1024
