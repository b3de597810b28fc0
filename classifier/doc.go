// Package classifier is the first stage of the datapath: it decodes a received
// frame's headers, finds the sending subscriber in the MAC table and gives
// every frame a verdict; a dropped frame gets an enumerated [Reason].
//
// Everything here runs once per packet on the per-queue workers, so nothing
// allocates, locks or logs:
//
//   - [Packet.Decode] fills a caller-owned [Packet] (one per worker, reused for
//     every frame) from the Ethernet, 802.1Q, ARP, IPv4 and UDP/TCP headers. It
//     reads the frame in place, copies nothing but header fields into the
//     struct, and validates as it goes (lengths, IPv4 header checksum), so
//     later stages may index the frame at [Packet.L3] and [Packet.L4] without
//     further bounds checks beyond their own headers.
//   - A drop is a [Reason], counted in the worker's [Counters] (a plain array,
//     no atomics) and flushed to the metrics once per batch with
//     [Counters.Add]. There is no error value or log line per packet.
//   - The [MACTable] maps (access port, VLAN, MAC) to a subscriber ([Sub]: IP
//     address, ISP, flags). The control plane is its single writer; workers
//     read it without locks through a [MACView] loaded once per batch. It is
//     an internal/lfmap map: one atomic store per update, and a fresh slot
//     array published by pointer swap when deleted entries pile up, so a view
//     is always consistent and a lookup never sees another subscriber's
//     entry.
package classifier
