package engine

import (
	"sync"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/fib"
)

// MaxPuntFrame is the largest frame the punt path carries (DHCP and ARP
// fit many times over); a larger one is dropped and counted.
const MaxPuntFrame = 2048

// Punted is a copy of a frame for the control plane. It belongs to the
// control plane from PuntQueue.Next until Release.
type Punted struct {
	// Port is the ingress port.
	Port uint8
	n    int
	buf  [MaxPuntFrame]byte
}

// Frame returns the copied frame.
func (p *Punted) Frame() []byte { return p.buf[:p.n] }

// PuntQueue carries frame copies from the workers to the control plane: one
// bounded queue with its own preallocated buffers per ingress port, read in
// turn, so a flood on one port (a subscriber port sending DHCP as fast as
// it can) cannot crowd out another (an ISP's replies, ARP from a router).
// Workers never wait for the consumer: when a port's buffers are all in use
// the frame is dropped and counted (punt_queue_full).
//
// A port's free buffers are a stack (last released, first reused), not a
// ring: at the usual depth of a few frames in flight the same buffers are
// written by the worker and read by the control plane again and again and
// stay in cache, where a ring walked through all perPort buffers (1 MB per
// port) and every punt touched a cold one.
type PuntQueue struct {
	free []puntStack
	q    []chan *Punted
	// Ready receives a value when frames may be waiting; the consumer then
	// calls Next until it returns nil.
	Ready chan struct{}
	next  int // consumer's round-robin position
}

// puntStack is a port's free buffers. The lock is held for a slice push or
// pop only (the workers of the port and the consumer's Release).
type puntStack struct {
	mu  sync.Mutex
	buf []*Punted
}

// NewPuntQueue preallocates perPort buffers for each of ports ports.
func NewPuntQueue(ports, perPort int) *PuntQueue {
	q := &PuntQueue{Ready: make(chan struct{}, 1), free: make([]puntStack, ports)}
	for i := range ports {
		bufs := make([]Punted, perPort)
		for j := range bufs {
			q.free[i].buf = append(q.free[i].buf, &bufs[j])
		}
		q.q = append(q.q, make(chan *Punted, perPort))
	}
	return q
}

// put copies frame into a free buffer of port's queue and queues it. It
// never blocks on the consumer.
func (q *PuntQueue) put(port uint8, frame []byte) bool {
	if int(port) >= len(q.q) || len(frame) > MaxPuntFrame {
		return false
	}
	f := &q.free[port]
	f.mu.Lock()
	n := len(f.buf)
	if n == 0 {
		f.mu.Unlock()
		return false
	}
	p := f.buf[n-1]
	f.buf = f.buf[:n-1]
	f.mu.Unlock()
	p.Port = port
	p.n = copy(p.buf[:], frame)
	q.q[port] <- p // cannot block: the queue has room for every buffer
	select {
	case q.Ready <- struct{}{}:
	default:
	}
	return true
}

// Next returns the next punted frame, taking the ports in turn, or nil when
// every queue is empty. Only the control plane (one goroutine) calls it.
func (q *PuntQueue) Next() *Punted {
	for range q.q {
		i := q.next
		q.next = (q.next + 1) % len(q.q)
		select {
		case p := <-q.q[i]:
			return p
		default:
		}
	}
	return nil
}

// Release returns a punted buffer to its port's pool.
func (q *PuntQueue) Release(p *Punted) {
	f := &q.free[p.Port]
	f.mu.Lock()
	f.buf = append(f.buf, p) // within its capacity: perPort
	f.mu.Unlock()
}

// punt copies the frame's datagram to the control plane (puntCopy) and
// consumes the frame, or drops it with the reason it could not be copied.
func (p *Processor) punt(in uint8, out *datapath.Verdict, pkt *classifier.Packet, frame []byte) {
	if why := p.puntCopy(in, pkt, frame); why != classifier.ReasonNone {
		p.drop(in, out, why)
		return
	}
	out.Action = datapath.Consumed
}

// puntCopy puts the frame's datagram (puntFrame) on the punt queue and
// counts it, or says why it could not: too big for the punt path (not the
// queue's fault) or the queue full.
func (p *Processor) puntCopy(in uint8, pkt *classifier.Packet, frame []byte) classifier.Reason {
	frame = puntFrame(pkt, frame)
	if len(frame) > MaxPuntFrame {
		return classifier.ReasonTooBig
	}
	if !p.s.Punts.put(in, frame) {
		return classifier.ReasonPuntQueueFull
	}
	p.punN[in]++
	p.touched |= 1 << in
	return classifier.ReasonNone
}

// puntFrame is the part of frame the control plane needs: the headers and
// the IPv4 datagram or ARP packet, without the Ethernet padding or
// trailing bytes Decode accepted after it.
func puntFrame(pkt *classifier.Packet, frame []byte) []byte {
	end := len(frame)
	switch pkt.Kind {
	case classifier.KindIPv4:
		end = pkt.L3 + pkt.TotalLen
	case classifier.KindARP:
		end = pkt.L3 + fib.ARPLen
	}
	return frame[:min(end, len(frame))]
}
