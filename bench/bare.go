package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/lab"
)

// macRewriter is the bare forwarder's Handler: every frame received on an
// ingress port (ports 0..in-1) goes out of an uplink (ports in..) with its
// destination and source MAC replaced, and nothing else is looked at. The
// uplink is picked by the last byte of the frame's source MAC through a
// table (out[b]), which spreads the benchmark's sources over the uplinks as
// ispmux does (source k is at ISP k mod ISPs). Frames arriving on an
// uplink are dropped.
type macRewriter struct {
	in   uint8      // ports 0..in-1 are ingress ports
	out  [256]uint8 // egress port by the source MAC's last byte
	mac  [][12]byte // by egress port - in: new destination MAC, then new source MAC
	fwd  uint64
	drop uint64
}

// Process implements datapath.Handler.
func (h *macRewriter) Process(b *datapath.Batch) {
	if b.Port >= h.in {
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
		p := h.out[f[11]]
		copy(f[:12], h.mac[p-h.in][:])
		b.Out[i] = datapath.Verdict{Action: datapath.Forward, Port: p, Len: uint16(len(f))}
		h.fwd++
	}
}

// Flush implements datapath.Handler.
func (h *macRewriter) Flush() {}

// bareForwarder runs `ispmux bench bare-forwarder`: AF_XDP on every --in
// and --out interface (the same datapath sizes as the lab's ispmux
// configuration) and one worker that forwards every frame from an --in port
// to an --out port (by the source MAC's last byte, modulo the number of
// uplinks) with a MAC rewrite only (--dst-mac: the destination MAC per
// --out port). It prints "ready" on stdout once the ports are open and
// runs until ctx ends (SIGTERM or SIGINT), then closes the ports
// (detaching XDP).
func bareForwarder(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench bare-forwarder", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "ingress interfaces, comma-separated")
	out := fs.String("out", "", "egress interfaces, comma-separated")
	dst := fs.String("dst-mac", "", "destination MAC written into frames, one per egress interface")
	attach := fs.String("attach", "native", "XDP attach mode: native or skb")
	bind := fs.String("bind", "copy", "AF_XDP bind mode: auto, zerocopy or copy")
	batch := fs.Int("batch", 64, "frames per port per worker iteration")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ins, outs, dsts := splitList(*in), splitList(*out), splitList(*dst)
	const usage = "usage: ispmux bench bare-forwarder --in IF[,IF...] --out IF[,IF...] --dst-mac MAC[,MAC...] [--attach native|skb]"
	if len(ins) == 0 || len(outs) == 0 || len(dsts) != len(outs) || fs.NArg() != 0 || len(ins)+len(outs) > datapath.MaxPorts {
		return errors.New(usage)
	}
	seen := map[string]bool{}
	for _, n := range append(append([]string(nil), ins...), outs...) {
		if seen[n] {
			return fmt.Errorf("bare-forwarder: interface %s given twice\n%s", n, usage)
		}
		seen[n] = true
	}
	h := &macRewriter{in: uint8(len(ins))}
	for b := range h.out {
		h.out[b] = h.in + uint8(b%len(outs))
	}
	var queues []datapath.Queue
	var ports []*datapath.XDPPort
	defer func() {
		for _, p := range ports {
			p.Close()
		}
	}()
	for i, name := range append(append([]string(nil), ins...), outs...) {
		p, err := datapath.OpenXDP(datapath.XDPConfig{
			Interface: name, Queues: 1, Frames: lab.ConfigFrames, FrameSize: 2048,
			FillRing: lab.ConfigRings, CompletionRing: lab.ConfigRings, RXRing: lab.ConfigRings, TXRing: lab.ConfigRings,
			AttachMode: *attach, BindMode: *bind,
		})
		if err != nil {
			return fmt.Errorf("bare-forwarder: %w", err)
		}
		ports = append(ports, p)
		queues = append(queues, p.Queue(0))
		if i >= len(ins) {
			dmac, err := net.ParseMAC(dsts[i-len(ins)])
			if err != nil || len(dmac) != 6 {
				return fmt.Errorf("bare-forwarder: --dst-mac %q: want a 48-bit MAC", dsts[i-len(ins)])
			}
			var m [12]byte
			copy(m[:6], dmac)
			copy(m[6:], p.MAC)
			h.mac = append(h.mac, m)
		}
	}
	w, err := datapath.NewWorker(0, queues, h, *batch, 100*time.Millisecond)
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
	var rx, tx, full uint64
	for i, q := range queues {
		st := q.Stats()
		if i < len(ins) {
			rx += st.RxFrames
		} else {
			tx += st.TxFrames
			full += st.TxFull
		}
	}
	it, sl := w.Loops()
	fmt.Fprintf(stderr, "bare-forwarder: rx %d on %s, tx %d on %s (tx_full %d), forwarded %d, dropped %d, loops %d (%d slept)\n",
		rx, *in, tx, *out, full, h.fwd, h.drop, it, sl)
	if err != nil {
		return fmt.Errorf("bare-forwarder: %w", err)
	}
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
