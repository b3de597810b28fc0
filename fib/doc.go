// Package fib holds ispmux's forwarding state and the frame rewrites that
// use it. It decides nothing per packet on its own: the engine parses the
// frame, asks fib where it goes, and has fib rewrite the headers it points
// at.
//
// # Tables
//
// Table answers the downstream question: a packet arrived on ISP v's uplink
// for address ip; which subscriber is that? The VRF is the ISP index
// (0..MaxISPs-1), and the answer is a Dest (access port, VLAN, subscriber
// MAC). Two ISPs may hand out the same private address to different
// subscribers, so (v, ip) and (w, ip) are two unrelated entries. Table is an
// lfmap (open addressing, uint64 → uint64) with key 1<<40 | v<<32 | ip and
// value Dest.Pack(); bit 40 keeps every key clear of lfmap's reserved keys 0
// and ^0.
//
// Uplinks answers the upstream question: a bound subscriber of ISP v sent a
// packet; out of which port and VLAN, from which source MAC, to which next
// hop MAC? It is published as an immutable UplinkSet (a fixed array of
// MaxISPs Uplink values) behind an atomic pointer. A writer copies the
// current set, changes the copy and swaps the pointer; a set once published
// is never written again.
//
// Resolver is the control-plane ARP state machine for each ISP's gateway:
// Due says which gateways need an ARP request now, Learn takes the replies,
// and both publish the outcome (GatewayMAC, Resolved) through Uplinks. It
// runs on timers and ARP arrivals, never per packet.
//
// # Rewrites
//
// WriteL2, DecTTL, ARPReply and ARPRequest write into a frame buffer the
// caller owns, at the offset the caller chose (pass b[off:]). They do not
// parse, do not allocate and do not retain b.
//
// # Concurrency
//
// One control-plane goroutine writes: Table.Set and Table.Delete,
// Uplinks.Configure and Uplinks.SetGatewayMAC, and every Resolver method.
// Table and Uplinks serialise their writers with a mutex, so a second
// writer is slow, not corrupting; Resolver is not safe for concurrent use.
//
// Datapath workers only read, and never lock. A worker takes its snapshots
// once per batch (each is one atomic load) and uses them for every packet of
// that batch:
//
//	tv := table.View()  // at the top of the batch
//	ups := uplinks.Load()
//	for i := range batch {
//		d, ok := tv.Lookup(vrf, dst) // downstream
//		up := ups.Get(isp)           // upstream; up.Resolved says if GatewayMAC is usable
//	}
//
// A snapshot must not be kept past its batch: a TableView stops seeing
// writes (and keeps an old slot array alive) once lfmap rebuilds the table
// to shed deleted entries, and an UplinkSet goes stale at the next
// Configure or SetGatewayMAC. Never write through the *Uplink that Get
// returns; it belongs to every reader of that snapshot.
package fib
