package engine

// MaxPuntFrame is the largest frame the punt path carries.
const MaxPuntFrame = 4096

// Punted is a copy of a frame for the control plane. It belongs to the
// control plane from receipt from PuntQueue.C until Release.
type Punted struct {
	// Port is the ingress port.
	Port uint8
	n    int
	buf  [MaxPuntFrame]byte
}

// Frame returns the copied frame.
func (p *Punted) Frame() []byte { return p.buf[:p.n] }

// PuntQueue is a bounded queue of preallocated frame copies from the
// workers to the control plane. Workers never block on it: when no buffer
// is free the frame is dropped and counted (punt_queue_full).
type PuntQueue struct {
	free chan *Punted
	// C delivers punted frames; pass each to Release when done.
	C chan *Punted
}

// NewPuntQueue preallocates n buffers.
func NewPuntQueue(n int) *PuntQueue {
	q := &PuntQueue{free: make(chan *Punted, n), C: make(chan *Punted, n)}
	for range n {
		q.free <- new(Punted)
	}
	return q
}

// put copies frame into a free buffer and queues it. It never blocks.
func (q *PuntQueue) put(port uint8, frame []byte) bool {
	if len(frame) > MaxPuntFrame {
		return false
	}
	select {
	case p := <-q.free:
		p.Port = port
		p.n = copy(p.buf[:], frame)
		q.C <- p // cannot block: C has room for every buffer
		return true
	default:
		return false
	}
}

// Release returns a punted buffer to the pool.
func (q *PuntQueue) Release(p *Punted) { q.free <- p }
