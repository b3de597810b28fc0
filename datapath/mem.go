package datapath

// MemQueue is an in-memory Queue for unit tests and benchmarks. It behaves
// like an AF_XDP queue whose kernel side is a function call: frames given
// to Inject (or produced by Source) are received, frames transmitted are
// handed to Sink and completed at once.
type MemQueue struct {
	umem      []byte
	frameSize int
	frames    frameStack
	rx        []Desc // received frames rx[rxHead:]
	rxHead    int

	// Source, if set, is called by Receive to produce frames: it writes
	// one frame into buf and returns its length, or 0 when it has none.
	Source func(buf []byte) int
	// Sink, if set, is called for every transmitted frame. The slice
	// aliases the UMEM and is only valid during the call.
	Sink func(frame []byte)

	c queueCounters
}

// NewMemQueue returns a queue with frames buffers of frameSize bytes.
func NewMemQueue(frames, frameSize int) *MemQueue {
	return &MemQueue{
		umem:      make([]byte, frames*frameSize),
		frameSize: frameSize,
		frames:    newFrameStack(frames, frameSize),
		rx:        make([]Desc, 0, frames),
	}
}

// Inject queues a copy of frame for reception. It reports false when no
// frame buffer is free or the frame does not fit one.
func (q *MemQueue) Inject(frame []byte) bool {
	if len(frame) > q.frameSize {
		return false
	}
	d, ok := q.Alloc()
	if !ok {
		return false
	}
	d.Len = uint32(copy(q.umem[d.Addr:d.Addr+uint64(q.frameSize)], frame))
	q.rx = append(q.rx, d)
	return true
}

// FreeFrames is the number of frames on the free stack (for leak checks).
func (q *MemQueue) FreeFrames() int { return q.frames.len() }

func (q *MemQueue) UMEM() []byte   { return q.umem }
func (q *MemQueue) FrameSize() int { return q.frameSize }
func (q *MemQueue) FD() int        { return -1 }
func (q *MemQueue) Pending() int   { return 0 }

func (q *MemQueue) Stats() QueueStats { return q.c.snapshot() }

func (q *MemQueue) Receive(dst []Desc) []Desc {
	n0 := len(dst)
	var bytes uint64
	for q.rxHead < len(q.rx) && len(dst) < cap(dst) {
		d := q.rx[q.rxHead]
		q.rxHead++
		bytes += uint64(d.Len)
		dst = append(dst, d)
	}
	if q.rxHead == len(q.rx) {
		q.rx, q.rxHead = q.rx[:0], 0
	}
	if q.Source != nil {
		for len(dst) < cap(dst) {
			d, ok := q.Alloc()
			if !ok {
				break
			}
			n := q.Source(q.umem[d.Addr : d.Addr+uint64(q.frameSize)])
			if n == 0 {
				q.Free(d)
				break
			}
			d.Len = uint32(n)
			bytes += uint64(n)
			dst = append(dst, d)
		}
	}
	if n := len(dst) - n0; n > 0 {
		q.c.rxFrames.Add(uint64(n))
		q.c.rxBytes.Add(bytes)
	}
	return dst
}

func (q *MemQueue) Transmit(descs []Desc) int {
	var bytes uint64
	for _, d := range descs {
		if q.Sink != nil {
			q.Sink(q.umem[d.Addr : d.Addr+uint64(d.Len)])
		}
		bytes += uint64(d.Len)
		q.Free(d)
	}
	q.c.txFrames.Add(uint64(len(descs)))
	q.c.txBytes.Add(bytes)
	return len(descs)
}

func (q *MemQueue) Alloc() (Desc, bool) { return q.frames.pop() }
func (q *MemQueue) Free(d Desc)         { q.frames.push(d) }

func (q *MemQueue) Service() error { return nil }
