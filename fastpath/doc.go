// Package fastpath forwards bound subscribers' traffic in the kernel's XDP
// hook, before AF_XDP: an eBPF program on every data port that does, for
// the common case, what the engine's worker does (MAC table lookup,
// anti-spoofing, next hop, TTL and checksum, new L2 header) and redirects
// the frame to its egress port, and hands everything else to the port's
// AF_XDP socket as before.
//
// On a NIC without zero-copy AF_XDP (veth, and any driver in copy mode)
// every frame the engine forwards is copied into the UMEM, crosses to user
// space and back, and is copied into an skb to be sent: far more than the
// kernel's own forwarding costs. The fast path keeps those frames in the
// kernel.
//
// It forwards only what the engine would forward, byte for byte: IPv4
// without options or fragments, to the port's MAC from a unicast source
// MAC, neither DHCP nor anything the engine answers itself (its gateway
// and uplink addresses, the walled garden and its portal), from a bound
// subscriber's own address, to a unicast destination, within the egress
// MTU, with a TTL above 1. A
// differential test runs random frames through both and compares. Every
// other frame (ARP, DHCP, drops and their reasons, ICMP errors) is the
// engine's, which also counts them.
//
// The engine's control plane is the single writer of the fast path's maps
// (engine.Offload, implemented by [Maps]), right after its own tables, so
// both say the same; a map the kernel refuses to update switches the fast
// path off (every frame to the engine) rather than leave a stale entry.
package fastpath
