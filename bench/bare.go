package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/lab"
)

// macRewriter is the bare forwarder's Handler: every frame received on port
// in goes out of port out with its destination and source MAC replaced, and
// nothing else is looked at. Frames arriving on any other port are dropped.
type macRewriter struct {
	in, out uint8
	mac     [12]byte // new destination MAC, then new source MAC
	fwd     uint64
	drop    uint64
}

// Process implements datapath.Handler.
func (h *macRewriter) Process(b *datapath.Batch) {
	if b.Port != h.in {
		for i := range b.Out {
			b.Out[i].Action = datapath.Drop
		}
		h.drop += uint64(len(b.Out))
		return
	}
	for i, f := range b.Frames {
		if len(f) < 14 {
			b.Out[i].Action = datapath.Drop
			h.drop++
			continue
		}
		copy(f[:12], h.mac[:])
		b.Out[i] = datapath.Verdict{Action: datapath.Forward, Port: h.out, Len: uint16(len(f))}
		h.fwd++
	}
}

// Flush implements datapath.Handler.
func (h *macRewriter) Flush() {}

// bareForwarder runs `ispmux bench bare-forwarder`: AF_XDP on --in and --out
// (the same datapath sizes as the lab's ispmux configuration) and one worker
// that forwards every frame from --in to --out with a MAC rewrite only. It
// prints "ready" on stdout once both ports are open and runs until ctx ends
// (SIGTERM or SIGINT), then closes the ports (detaching XDP).
func bareForwarder(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench bare-forwarder", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "ingress interface")
	out := fs.String("out", "", "egress interface")
	dst := fs.String("dst-mac", "", "destination MAC written into every forwarded frame")
	attach := fs.String("attach", "native", "XDP attach mode: native or skb")
	bind := fs.String("bind", "copy", "AF_XDP bind mode: auto, zerocopy or copy")
	batch := fs.Int("batch", 64, "frames per port per worker iteration")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" || *out == "" || *dst == "" || fs.NArg() != 0 || *in == *out {
		return errors.New("usage: ispmux bench bare-forwarder --in IF --out IF --dst-mac MAC [--attach native|skb]")
	}
	dmac, err := net.ParseMAC(*dst)
	if err != nil || len(dmac) != 6 {
		return fmt.Errorf("bare-forwarder: --dst-mac %q: want a 48-bit MAC", *dst)
	}
	open := func(name string) (*datapath.XDPPort, error) {
		return datapath.OpenXDP(datapath.XDPConfig{
			Interface: name, Queues: 1, Frames: lab.ConfigFrames, FrameSize: 2048,
			FillRing: lab.ConfigRings, CompletionRing: lab.ConfigRings, RXRing: lab.ConfigRings, TXRing: lab.ConfigRings,
			AttachMode: *attach, BindMode: *bind,
		})
	}
	pin, err := open(*in)
	if err != nil {
		return fmt.Errorf("bare-forwarder: %w", err)
	}
	defer pin.Close()
	pout, err := open(*out)
	if err != nil {
		return fmt.Errorf("bare-forwarder: %w", err)
	}
	defer pout.Close()
	h := &macRewriter{in: 0, out: 1}
	copy(h.mac[:6], dmac)
	copy(h.mac[6:], pout.MAC)
	w, err := datapath.NewWorker(0, []datapath.Queue{pin.Queue(0), pout.Queue(0)}, h, *batch, 100*time.Millisecond)
	if err != nil {
		return fmt.Errorf("bare-forwarder: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- w.Run() }()
	fmt.Fprintln(stdout, "ready")
	select {
	case <-ctx.Done():
		w.Stop()
		err = <-errc
	case err = <-errc:
	}
	si, so := pin.Queue(0).Stats(), pout.Queue(0).Stats()
	it, sl := w.Loops()
	fmt.Fprintf(stderr, "bare-forwarder: %s rx %d, %s tx %d (tx_full %d, no_frame %d, errors %d), forwarded %d, dropped %d, loops %d (%d slept)\n",
		*in, si.RxFrames, *out, so.TxFrames, so.TxFull, so.NoFrame, so.Errors, h.fwd, h.drop, it, sl)
	if err != nil {
		return fmt.Errorf("bare-forwarder: %w", err)
	}
	return nil
}
