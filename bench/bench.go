// Package bench runs ispmux's lab benchmarks: traffic generators and the
// side-by-side runs (ispmux, the Linux kernel, a bare AF_XDP forwarder) and
// their reports. The appliance never imports it.
//
// # bench forward
//
// One run builds the netns lab with a traffic generator on access port acc1
// and measures, with the same traffic, three systems under test in the
// appliance namespace: ispmux itself, the Linux policy router
// (lab.Topology.KernelRouter) and a bare AF_XDP forwarder built on package
// datapath that only rewrites MAC addresses (the ceiling of the path). The
// generator (trafgen, one process on CPU 0) sends 64-byte UDP frames from
// every synthetic subscriber to 198.18.0.1, which the ISP routers blackhole;
// forwarders run on CPU 1. Per case, after a warm-up, the steady window
// gives offered and forwarded packets per second, the loss, and CPU cost per
// million packets for the whole machine and for the forwarder process.
// Results go to stdout (a table, or one JSON object with --json) and to
// forward.json, forward.md and forward.svg in --out.
//
// # bench dhcp
//
// One run builds the DHCP lab with an open Kea pool (lab.Options.KeaOpen)
// and a generator namespace on access port acc1, and measures completed
// DORA exchanges per second, failures and latencies of three paths to the
// same Kea: ispmux as relay agent and ISP emulator (durable bindings), ISC
// dhcrelay with kernel forwarding, and perfdhcp straight to Kea (the
// ceiling). The clients of the first two cases come from a Go L2 generator
// (the hidden `bench dhcp-client-gen`, one AF_PACKET socket in promiscuous
// mode, full DORA per client with timeouts and retransmissions) pinned to
// CPU 0; the relays run on CPU 1. Results go to stdout and to dhcp.json,
// dhcp.md and dhcp.svg in --out.
package bench

import (
	"context"
	"fmt"
	"io"
)

const usage = `usage:
  ispmux bench forward [--duration 10s] [--subscribers 256] [--json] [--id benchfw] [--out bench-out] [--keep]
  ispmux bench dhcp [--clients 1000] [--rate 500] [--duration 10s] [--json] [--id benchdh] [--out bench-out] [--keep]
  ispmux bench scale [--subscribers N] [--json] [--out bench-out]`

// Main runs `ispmux bench ...`; args are what follows "bench".
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("bench: no benchmark given\n%s", usage)
	}
	switch args[0] {
	case "forward":
		return forward(ctx, args[1:], stdout, stderr)
	case "bare-forwarder": // hidden: case (c) of bench forward
		return bareForwarder(ctx, args[1:], stdout, stderr)
	case "dhcp":
		return dhcpBench(ctx, args[1:], stdout, stderr)
	case "dhcp-client-gen": // hidden: the L2 DHCP clients of bench dhcp
		return dhcpClientGen(ctx, args[1:], stdout, stderr)
	case "scale":
		return scaleBench(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		_, err := fmt.Fprintln(stdout, usage)
		return err
	}
	return fmt.Errorf("bench: unknown benchmark %q\n%s", args[0], usage)
}
