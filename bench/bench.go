// Package bench runs ispmux's lab benchmarks: traffic generators and the
// side-by-side runs (ispmux, the Linux kernel, a bare AF_XDP forwarder) and
// their reports. The appliance never imports it.
//
// # bench forward
//
// One run builds the netns lab with a traffic generator on access port acc1
// and measures, with the same traffic, the systems under test in the
// appliance namespace: ispmux; the Linux kernel as an operator would build
// it (an nftables map MAC . address → mark with anti-spoofing, one policy
// rule per ISP, RPS moving forwarding off the generator's CPU:
// lab.Topology.NFTRouter); the per-subscriber-rule router
// (lab.Topology.RuleRouter) at small sweep points; and a bare AF_XDP
// forwarder on package datapath over the same ports that only rewrites MAC
// addresses (the ceiling of the path). The generator (`bench forward-gen`,
// pinned to CPU 0) sends 64-byte UDP frames from N distinct (MAC, address)
// sources, each a static binding in ispmux and an element of the kernel's
// map, at fixed offered rates; the ISP routers drop them on arrival. The
// headline is CPU nanoseconds per forwarded packet over the whole machine
// minus a same-run calibration of the generator alone, per sweep point
// (256, 64K, 1M sources) and rate, the median of interleaved runs with min
// and max; each case's no-drop rate is searched too. Results go to stdout
// (a table, or one JSON object with --json) and to forward.json, forward.md
// and forward.svg in --out. docs/PERFORMANCE.md is rendered from the
// committed JSON (`bench report`, `make perf-doc`).
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
//
// # bench kill9
//
// A crash trial, not a benchmark: the store is seeded with N DHCP-bound
// subscribers on the generator's access port (as bench scale's dhcp
// points), ispmux runs in the DHCP lab, and clients on one AF_PACKET
// socket DORA (generator MACs configured as subscribers), renew and
// RELEASE while `ispmux ctl` blocks and detaches seeded devices. ispmux is
// SIGKILLed at random instants, right after an ACK, a RELEASE or an
// acknowledged revocation, and during a restart; after each crash it is
// restarted, timed to "forwarding" (wall and CPU time, RSS), and every
// binding is listed over the control socket and compared with what the
// clients and the API were told. Results go to stdout and kill9.json in
// --out, with each run's log of ispmux.
package bench

import (
	"context"
	"fmt"
	"io"
)

const usage = `usage:
  ispmux bench forward [--sources 256,64K,1M] [--rates 100k,200k,300k] [--runs 5] [--duration 5s] [--cases ...] [--json] [--id benchfw] [--out bench-out] [--keep]
  ispmux bench dhcp [--clients 4000] [--rates 100,500,2000 | --rate R] [--duration 10s] [--runs 5] [--search=true] [--outage 10000] [--json] [--id benchdh] [--out bench-out] [--keep]
  ispmux bench scale [--subscribers 1000000] [--kinds static,dhcp] [--runs 3] [--json] [--id benchsc] [--out bench-out] [--keep]
  ispmux bench kill9 [--subscribers 1000000] [--crashes 12] [--clients 2000] [--rate 100] [--json] [--id benchk9] [--out bench-out] [--keep]
  ispmux bench micro [--runs 5] [--benchtime 1s] [--src .] [--cpu 1] [--json] [--out bench-out]
  ispmux bench report [--check] [DIR [DOC]]   (docs/bench → docs/PERFORMANCE.md)`

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
	case "forward-gen": // hidden: the traffic generator of bench forward
		return forwardGen(ctx, args[1:], stdout, stderr)
	case "micro":
		return microBench(ctx, args[1:], stdout, stderr)
	case "report":
		return reportCmd(args[1:], stdout, stderr)
	case "dhcp":
		return dhcpBench(ctx, args[1:], stdout, stderr)
	case "dhcp-client-gen": // hidden: the L2 DHCP clients of bench dhcp
		return dhcpClientGen(ctx, args[1:], stdout, stderr)
	case "scale":
		return scaleBench(ctx, args[1:], stdout, stderr)
	case "kill9":
		return kill9Bench(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		_, err := fmt.Fprintln(stdout, usage)
		return err
	}
	return fmt.Errorf("bench: unknown benchmark %q\n%s", args[0], usage)
}
