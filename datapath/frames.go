package datapath

// frameStack holds the free frames of one UMEM by base address. It is a
// stack, so the most recently freed (cache-warm) frame is reused first. Not
// safe for concurrent use: it belongs to the queue's worker.
type frameStack struct {
	free      []uint64
	frameSize uint64
}

// newFrameStack returns a stack holding every frame of a UMEM of frames
// buffers of frameSize bytes, frame 0 on top.
func newFrameStack(frames, frameSize int) frameStack {
	s := frameStack{free: make([]uint64, 0, frames), frameSize: uint64(frameSize)}
	for i := frames - 1; i >= 0; i-- {
		s.free = append(s.free, uint64(i*frameSize))
	}
	return s
}

// pop takes a free frame; false when none is left.
func (s *frameStack) pop() (Desc, bool) {
	n := len(s.free)
	if n == 0 {
		return Desc{}, false
	}
	a := s.free[n-1]
	s.free = s.free[:n-1]
	return Desc{Addr: a}, true
}

// push returns the frame holding d (any address inside it) to the stack.
func (s *frameStack) push(d Desc) {
	s.free = append(s.free, frameBase(d.Addr, s.frameSize))
}

// frameBase is the address of the frame of size fs holding addr: a mask
// when fs is a power of two (AF_XDP's aligned chunks always are), not a
// 64-bit division per frame.
func frameBase(addr, fs uint64) uint64 {
	if fs&(fs-1) == 0 {
		return addr &^ (fs - 1)
	}
	return addr - addr%fs
}

// len is the number of free frames.
func (s *frameStack) len() int { return len(s.free) }
