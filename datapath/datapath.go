// Package datapath moves frames between ports with AF_XDP sockets, in batches,
// one run-to-completion worker per queue.
//
// # Ports, queues and frames
//
// A port is a network interface. Each port has one [Queue] per configured
// queue index; a queue owns a UMEM (a region of frame buffers, each
// FrameSize bytes) and the four AF_XDP rings that move frame addresses
// between this process and the kernel:
//
//	fill ring:        we give the kernel empty frames to receive into
//	RX ring:          the kernel gives us received frames
//	TX ring:          we give the kernel frames to send
//	completion ring:  the kernel gives back frames it has sent
//
// Every frame of a UMEM has exactly one owner at any time: the queue's free
// stack, the kernel (fill or TX ring), or the worker between Receive and the
// end of its batch. A [Desc] names a frame by its address in the UMEM and
// its length. Bytes obtained from a UMEM alias shared memory and are valid
// only while the caller owns the frame.
//
// # Workers
//
// A [Worker] owns queue q of every port (nothing else touches those queues)
// and runs on its own goroutine. One iteration: receive a batch on each
// port, hand it to the [Handler] which writes one [Verdict] per frame,
// dispatch the verdicts (forward in place, copy into another port's UMEM,
// or free), transmit once per egress port, reap completions, refill. No lock
// and no channel is touched per packet. When nothing arrived the worker
// parks in the runtime's netpoller on an epoll set of every queue's socket;
// the control plane wakes it for injected frames or shutdown by setting the
// wait's read deadline in the past (an eventfd in the poll(2) fallback).
//
// Frames cross between interfaces with exactly one copy (asavie/xdp v0.3.3
// has no shared UMEM); a frame sent back out of the port it arrived on is
// transmitted in place (true zero copy).
//
// # Link flaps
//
// A port outlives its interface: when the link goes down or the interface
// is deleted, [XDPPort.CloseQueues] closes its queues, and when it is back
// (the same interface, or a new one of the same name) [XDPPort.Reopen]
// re-attaches the program and re-opens the queues. Both run each queue's
// part on the worker that owns it, between two iterations; that worker's
// other ports carry on (reopen.go).
//
// # asavie/xdp
//
// This package is the only importer of github.com/asavie/xdp. Its caveats
// are contained here: GetDescs is never called (we keep our own free-frame
// stack per UMEM); Transmit's panics on sendto errors are recovered and
// counted, and the port is reported down; its Socket.Close left the four
// rings mapped (the socket, and its queue, held until exit): the copy in
// third_party/asavie-xdp unmaps them; its Attach/Detach are not used
// (Detach hangs after an SKB-mode attach), we attach and detach through
// netlink with explicit flags; Complete does not say which frames finished,
// so each queue keeps a FIFO of in-flight TX addresses (completions of one TX
// queue come back in submission order). Its ring indices are plain loads and
// stores, which is correct on amd64 (TSO) only; this package builds for
// linux/amd64 AF_XDP and for any platform with the in-memory port.
package datapath

import (
	"github.com/asavie/xdp"
)

// Desc names one frame: its address (offset) in the queue's UMEM and the
// length of the data it holds. It has the layout of the kernel's xdp_desc.
type Desc = xdp.Desc

// MaxPorts bounds the ports one worker serves. Port indices are uint8.
const MaxPorts = 16

// Worker.drainInjected keeps a bit per port in one uint64.
const _ = uint(64 - MaxPorts)

// MaxBatch is the largest batch a worker receives per port and iteration.
const MaxBatch = 256

// Queue is one RX/TX queue of a port, owned by exactly one worker. Methods
// are not safe for concurrent use.
type Queue interface {
	// UMEM returns the queue's whole frame memory. A frame's bytes are
	// UMEM()[d.Addr : d.Addr+FrameSize()]; its data is the first d.Len.
	UMEM() []byte
	// FrameSize is the size of every frame buffer in the UMEM.
	FrameSize() int
	// Receive appends up to cap(dst)-len(dst) received frames to dst. The
	// caller owns them until it passes each to Transmit or Free.
	Receive(dst []Desc) []Desc
	// Transmit queues frames of this UMEM for sending and takes ownership
	// of the first n it returns; the caller keeps the rest.
	Transmit(descs []Desc) (n int)
	// Alloc takes a free frame (to copy a frame from another port into).
	// It reports false when the free stack is empty.
	Alloc() (Desc, bool)
	// Free returns a frame the caller owns to the free stack.
	Free(d Desc)
	// Service reaps TX completions, kicks the kernel for pending TX and
	// refills the fill ring. A worker calls it once per iteration.
	Service() error
	// Pending reports frames submitted for TX that the kernel has not
	// completed yet (the worker polls with a short timeout while > 0).
	Pending() int
	// FD is the file descriptor to poll for received frames, or -1.
	FD() int
	// Stats returns the queue's counters.
	Stats() QueueStats
}

// QueueStats are a queue's counters, maintained by its worker.
type QueueStats struct {
	RxFrames, RxBytes uint64
	TxFrames, TxBytes uint64
	// TxFull counts frames dropped because the TX ring was full.
	TxFull uint64
	// NoFrame counts frames dropped because no free frame was left in the
	// egress UMEM for a copy.
	NoFrame uint64
	// Errors counts failed kernel calls (sendto, poll) on this queue.
	Errors uint64
	// Down is set while the last kernel call on the queue failed.
	Down bool
}

// Action is what a worker does with a frame after the handler saw it.
type Action uint8

const (
	// Drop frees the frame. The handler counts the reason.
	Drop Action = iota
	// Forward sends the frame (possibly with a new L2 header) out of
	// Verdict.Port.
	Forward
	// Consumed frees the frame without counting it as dropped: the handler
	// copied what it needed (for the control plane).
	Consumed
)

// Verdict is a handler's decision about one frame.
//
// For Forward, the frame sent is Hdr[:HdrLen] followed by the received
// frame's bytes [Strip:Len]. With HdrLen == 0 and Strip == 0 the frame's
// first Len bytes are sent as they are (the handler rewrote them in place).
//
// DecTTL asks the worker to decrement the TTL of the IPv4 header the kept
// bytes start with (at Strip in the received frame, HdrLen in the frame
// sent) and patch its checksum (fib.DecTTL), in the frame it sends: a
// router's handler need not write into the received frame, which the
// worker reads right after (copying it), for that. The handler has
// checked that the TTL is above 1.
type Verdict struct {
	Action Action
	Port   uint8
	HdrLen uint8
	Strip  uint8
	Len    uint16
	DecTTL bool
	Hdr    [18]byte
}

// Batch is one batch received on one port, with the handler's verdicts.
// Frames alias UMEM memory and are valid only during Handler.Process.
type Batch struct {
	// Port is the ingress port index.
	Port uint8
	// Frames[i] is the data of the i-th received frame; its capacity
	// extends to the end of the frame buffer, so a handler may grow a
	// frame in place (for example to pad an ARP reply) up to cap.
	Frames [][]byte
	// Out[i] is the verdict for Frames[i]. The handler must set every one.
	Out []Verdict
}

// TxDrop says why a worker dropped a frame its handler had forwarded.
type TxDrop uint8

const (
	// TxNoFrame: no free frame in the egress port's UMEM to copy it into.
	TxNoFrame TxDrop = iota
	// TxRingFull: the egress queue's TX ring had no room.
	TxRingFull
	// TxPortError: the egress queue had no room and is in error (its last
	// kernel call failed: the interface went down or away).
	TxPortError
)

// TxDropCounter is implemented by handlers that count, by ingress port, the
// frames they forwarded that the worker then could not send: those drops
// happen after Process, where the handler cannot see them. The worker calls
// it before Flush of the same iteration (n frames of ingress port in). The
// egress queue's own counters (QueueStats.NoFrame, TxFull) count them too,
// by egress port. Injected frames are not reported (they were not received).
type TxDropCounter interface {
	TxDropped(in uint8, why TxDrop, n int)
}

// Handler decides what happens to every frame of a batch. A worker owns its
// Handler (handlers keep per-worker scratch space and counters).
type Handler interface {
	Process(b *Batch)
	// Flush is called once per worker iteration after dispatch, for
	// publishing counters.
	Flush()
}
