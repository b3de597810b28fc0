package fastpath

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Values the program compares with; see the maps' layouts in maps.go.
const (
	roleAccess = 1
	roleUplink = 2

	gardenVRF = 250 // binding.GardenVRF: never on the fast path

	upConfigured = 1 << 0
	upResolved   = 1 << 1

	// XDP actions.
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpRedirect = 4
)

// Stack slots of the program (offsets from the frame pointer).
const (
	stKey    = -8   // a hash map's key
	stVLAN   = -16  // the frame's VLAN (0: untagged or priority-tagged)
	stTotal  = -24  // IPv4 total length
	stDst    = -32  // destination address, host order
	stEgress = -40  // egress port
	stL2     = -48  // new L2 header's length, 14 or 18
	stIdx    = -56  // an array map's key (u32)
	stISP    = -64  // the VRF of an uplink frame
	stHdrPtr = -72  // the new L2 header: a map value, or stHdr
	stDir    = -80  // 0 up (subscriber to ISP), 8 down (stats value offset)
	stHdr    = -104 // 24 bytes: a downstream frame's new L2 header
	stLen    = -112 // the frame's length (bpf_xdp_get_buff_len)
)

// builder assembles one port's program.
type builder struct {
	ins   asm.Instructions
	label string // symbol of the next instruction
	n     int    // unique label counter
}

func (b *builder) emit(is ...asm.Instruction) {
	for _, i := range is {
		if b.label != "" {
			i = i.WithSymbol(b.label)
			b.label = ""
		}
		b.ins = append(b.ins, i)
	}
}

// mark names the next instruction.
func (b *builder) mark(l string) {
	if b.label != "" {
		// Two labels on one instruction: a jump to the first.
		b.emit(asm.Ja.Label(l))
	}
	b.label = l
}

func (b *builder) fresh(p string) string { b.n++; return fmt.Sprintf("%s_%d", p, b.n) }

// mapLookup emits r0 = lookup(m, fp+keyOff), jumping to miss when absent.
func (b *builder) mapLookup(m *ebpf.Map, keyOff int16, miss string) {
	b.emit(
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(keyOff)),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, miss),
	)
}

// progSpec is what one port's program is made of.
type progSpec struct {
	port    uint8     // the port's index in the engine
	mac     [6]byte   // the port's MAC: frames to it are routed
	qidconf *ebpf.Map // asavie/xdp's queue map: 1 where a socket is bound
	xsks    *ebpf.Map // the AF_XDP sockets by queue
	m       *Maps
}

// assemble builds the program. Everything it does not forward itself (not
// IPv4 to the port's MAC, a frame the engine would treat in any way but
// routing, a subscriber or route it has no entry for) goes to the port's
// AF_XDP socket, as without it: it forwards only what the engine would
// forward, byte for byte (differential_test.go).
func assemble(s progSpec) asm.Instructions {
	b := &builder{}
	m := s.m
	b.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		// The operator's switch: all to the slow path.
		asm.StoreImm(asm.RFP, stIdx, 0, asm.Word),
	)
	b.mapLookup(m.conf, stIdx, "slow")
	b.emit(
		asm.LoadMem(asm.R1, asm.R0, 4, asm.Word),
		asm.JNE.Imm(asm.R1, 0, "slow"),
		asm.LoadMem(asm.R7, asm.R6, 0, asm.Word), // data
		asm.LoadMem(asm.R8, asm.R6, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, 14),
		asm.JGT.Reg(asm.R2, asm.R8, "slow"),
		// Frames to our MAC only.
		asm.LoadMem(asm.R1, asm.R7, 0, asm.Word),
		asm.JNE.Imm32(asm.R1, int32(le32(s.mac[0:4])), "slow"),
		asm.LoadMem(asm.R1, asm.R7, 4, asm.Half),
		asm.JNE.Imm(asm.R1, int32(le16(s.mac[4:6])), "slow"),
		// From a single station (classifier.Decode drops a multicast
		// or zero source MAC as bad_source_mac): the group bit is the
		// first byte's lowest.
		asm.LoadMem(asm.R1, asm.R7, 6, asm.Byte),
		asm.JSet.Imm(asm.R1, 1, "slow"),
		asm.LoadMem(asm.R1, asm.R7, 6, asm.Half),
		asm.LoadMem(asm.R2, asm.R7, 8, asm.Word),
		asm.Or.Reg(asm.R1, asm.R2),
		asm.JEq.Imm(asm.R1, 0, "slow"),
		asm.LoadMem(asm.R1, asm.R7, 12, asm.Half),
		asm.JEq.Imm(asm.R1, 0x0008, "untagged"), // 0x0800 on the wire
		asm.JNE.Imm(asm.R1, 0x0081, "slow"),     // 0x8100
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, 18),
		asm.JGT.Reg(asm.R2, asm.R8, "slow"),
		asm.LoadMem(asm.R1, asm.R7, 16, asm.Half),
		asm.JNE.Imm(asm.R1, 0x0008, "slow"),
		asm.LoadMem(asm.R1, asm.R7, 14, asm.Half),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.And.Imm(asm.R1, 0xfff),
		asm.StoreMem(asm.RFP, stVLAN, asm.R1, asm.DWord),
		asm.Ja.Label("l3_18"),
	)
	b.mark("untagged")
	b.emit(
		stImm64(asm.RFP, stVLAN, 0),
		asm.Ja.Label("l3_14"),
	)
	b.ipv4(s, 14)
	b.ipv4(s, 18)
	b.rewrite(s)
	// The slow path: the queue's AF_XDP socket, as asavie/xdp's program
	// (xsk_load_xdp_prog's) does.
	b.mark("slow")
	b.emit(
		asm.LoadMem(asm.R1, asm.R6, 16, asm.Word), // rx_queue_index
		asm.StoreMem(asm.RFP, stIdx, asm.R1, asm.Word),
		asm.LoadMapPtr(asm.R1, s.qidconf.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stIdx),
		asm.FnMapLookupElem.Call(),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Mov.Imm(asm.R0, xdpAborted),
		asm.JEq.Imm(asm.R1, 0, "exit"),
		asm.Mov.Imm(asm.R0, xdpPass),
		asm.LoadMem(asm.R1, asm.R1, 0, asm.Word),
		asm.JEq.Imm(asm.R1, 0, "exit"),
		asm.LoadMapPtr(asm.R1, s.xsks.FD()),
		asm.LoadMem(asm.R2, asm.RFP, stIdx, asm.Word),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRedirectMap.Call(),
	)
	b.mark("exit")
	b.emit(asm.Return())
	b.mark("drop")
	b.emit(asm.Mov.Imm(asm.R0, xdpDrop), asm.Return())
	return b.ins
}

// ipv4 checks the IPv4 header at offset l (14 or 18) and the frame's
// VLAN's role, and branches to the subscriber's or the ISP's side.
func (b *builder) ipv4(s progSpec, l int16) {
	m := s.m
	b.mark(fmt.Sprintf("l3_%d", l))
	b.emit(
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, int32(l)+28),
		asm.JGT.Reg(asm.R2, asm.R8, "slow"),
		// Version 4 without options (options are rare: the engine).
		asm.LoadMem(asm.R1, asm.R7, l, asm.Byte),
		asm.JNE.Imm(asm.R1, 0x45, "slow"),
		// Not a fragment (MF clear, offset 0; DF may be set).
		asm.LoadMem(asm.R1, asm.R7, l+6, asm.Half),
		asm.And.Imm(asm.R1, 0xff3f), // 0x3fff on the wire
		asm.JNE.Imm(asm.R1, 0, "slow"),
	)
	// Header checksum: the one's complement sum of its ten words is
	// 0xffff (byte order does not matter to it).
	b.emit(asm.Mov.Imm(asm.R1, 0))
	for k := int16(0); k < 10; k++ {
		b.emit(
			asm.LoadMem(asm.R2, asm.R7, l+2*k, asm.Half),
			asm.Add.Reg(asm.R1, asm.R2),
		)
	}
	for range 2 {
		b.emit(
			asm.Mov.Reg(asm.R2, asm.R1),
			asm.RSh.Imm(asm.R2, 16),
			asm.And.Imm(asm.R1, 0xffff),
			asm.Add.Reg(asm.R1, asm.R2),
		)
	}
	b.emit(
		asm.JNE.Imm(asm.R1, 0xffff, "slow"),
		// Total length: a whole header, all of it in the frame.
		asm.LoadMem(asm.R1, asm.R7, l+2, asm.Half),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.And.Imm(asm.R1, 0xffff),
		asm.JLT.Imm(asm.R1, 28, "slow"), // with 8 bytes of L4
		asm.StoreMem(asm.RFP, stTotal, asm.R1, asm.DWord),
		// Compared with the frame's length as numbers: a packet
		// pointer plus a variable is refused to a loader without
		// CAP_PERFMON (ispmux runs with CAP_BPF and CAP_NET_ADMIN).
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnXdpGetBuffLen.Call(),
		asm.StoreMem(asm.RFP, stLen, asm.R0, asm.DWord),
		asm.LoadMem(asm.R1, asm.RFP, stTotal, asm.DWord),
		asm.Add.Imm(asm.R1, int32(l)),
		asm.JGT.Reg(asm.R1, asm.R0, "slow"),
		// DHCP (either port 67 or 68, either side) is the proxy's; TCP
		// needs its whole header (the engine drops it otherwise).
		asm.LoadMem(asm.R1, asm.R7, l+9, asm.Byte),
		asm.JEq.Imm(asm.R1, 6, b.fresh("tcp")),
	)
	tcp := fmt.Sprintf("tcp_%d", b.n)
	notUDP := b.fresh("notudp")
	b.emit(asm.JNE.Imm(asm.R1, 17, notUDP))
	for _, off := range []int16{20, 22} {
		b.emit(
			asm.LoadMem(asm.R1, asm.R7, l+off, asm.Half),
			asm.JEq.Imm(asm.R1, 0x4300, "slow"), // 67
			asm.JEq.Imm(asm.R1, 0x4400, "slow"), // 68
		)
	}
	b.emit(asm.Ja.Label(notUDP))
	b.mark(tcp)
	b.emit(
		asm.LoadMem(asm.R1, asm.RFP, stTotal, asm.DWord),
		asm.JLT.Imm(asm.R1, 40, "slow"),
	)
	b.mark(notUDP)
	b.emit(
		// TTL: an expiring packet gets its ICMP error from the engine.
		asm.LoadMem(asm.R1, asm.R7, l+8, asm.Byte),
		asm.JLE.Imm(asm.R1, 1, "slow"),
		asm.LoadMem(asm.R1, asm.R7, l+16, asm.Word),
		asm.HostTo(asm.BE, asm.R1, asm.Word),
		asm.StoreMem(asm.RFP, stDst, asm.R1, asm.DWord),
		// The VLAN's role on this port.
		asm.LoadMem(asm.R1, asm.RFP, stVLAN, asm.DWord),
		asm.Add.Imm(asm.R1, int32(s.port)*4096),
		asm.StoreMem(asm.RFP, stIdx, asm.R1, asm.Word),
	)
	b.mapLookup(m.vlans, stIdx, "slow")
	b.emit(
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Byte),
		asm.JEq.Imm(asm.R1, roleUplink, fmt.Sprintf("down_%d", l)),
		asm.JNE.Imm(asm.R1, roleAccess, "slow"),
		// The gateway's own address: the engine answers pings.
		asm.LoadMem(asm.R1, asm.R0, 4, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, stDst, asm.DWord),
		asm.JEq.Reg(asm.R1, asm.R2, "slow"),
	)
	b.up(s, l)
	b.down(s, l)
}

// up routes a bound subscriber's packet (IPv4 header at l) to its ISP.
func (b *builder) up(s progSpec, l int16) {
	m := s.m
	b.emit(
		// A unicast destination (engine.unicastAddr), not the portal.
		asm.LoadMem(asm.R2, asm.RFP, stDst, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R2),
		asm.RSh.Imm(asm.R1, 24),
		asm.JEq.Imm(asm.R1, 0, "slow"),
		asm.JEq.Imm(asm.R1, 127, "slow"),
		asm.JGE.Imm(asm.R1, 224, "slow"),
		asm.StoreImm(asm.RFP, stIdx, 0, asm.Word),
	)
	b.mapLookup(m.conf, stIdx, "slow")
	b.emit(
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, stDst, asm.DWord),
		asm.JEq.Reg(asm.R1, asm.R2, "slow"),
		// The MAC table's key: mac<<16 | vlan<<4 | port.
		asm.LoadMem(asm.R1, asm.R7, 6, asm.Half),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.LSh.Imm(asm.R1, 32),
		asm.LoadMem(asm.R2, asm.R7, 8, asm.Word),
		asm.HostTo(asm.BE, asm.R2, asm.Word),
		asm.Or.Reg(asm.R1, asm.R2),
		asm.LSh.Imm(asm.R1, 16),
		asm.LoadMem(asm.R2, asm.RFP, stVLAN, asm.DWord),
		asm.LSh.Imm(asm.R2, 4),
		asm.Or.Reg(asm.R1, asm.R2),
		asm.Or.Imm(asm.R1, int32(s.port)),
		asm.StoreMem(asm.RFP, stKey, asm.R1, asm.DWord),
	)
	b.mapLookup(m.macs, stKey, "slow")
	b.emit(
		// Sub: IP<<32 | ISP<<8 | flags. Bound, not in the garden, and
		// from its own address.
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.And.Imm(asm.R2, 1), // FlagBound
		asm.JEq.Imm(asm.R2, 0, "slow"),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.RSh.Imm(asm.R2, 8),
		asm.And.Imm(asm.R2, 0xff),
		asm.JEq.Imm(asm.R2, gardenVRF, "slow"),
		asm.StoreMem(asm.RFP, stIdx, asm.R2, asm.Word),
		asm.RSh.Imm(asm.R1, 32),
		asm.LoadMem(asm.R2, asm.R7, l+12, asm.Word),
		asm.HostTo(asm.BE, asm.R2, asm.Word),
		asm.JNE.Reg(asm.R1, asm.R2, "slow"),
	)
	// The ISP's uplink, configured with its next hop resolved.
	b.mapLookup(m.uplinks, stIdx, "slow")
	b.emit(
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Byte),
		asm.And.Imm(asm.R1, upConfigured|upResolved),
		asm.JNE.Imm(asm.R1, upConfigured|upResolved, "slow"),
		asm.LoadMem(asm.R1, asm.R0, 1, asm.Byte),
		asm.StoreMem(asm.RFP, stEgress, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R0, 2, asm.Byte),
		asm.StoreMem(asm.RFP, stL2, asm.R1, asm.DWord),
		asm.JEq.Imm(asm.R1, 14, b.fresh("l2ok")),
		asm.JNE.Imm(asm.R1, 18, "slow"),
	)
	b.mark(fmt.Sprintf("l2ok_%d", b.n))
	b.emit(
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Add.Imm(asm.R1, 8),
		asm.StoreMem(asm.RFP, stHdrPtr, asm.R1, asm.DWord),
		stImm64(asm.RFP, stDir, 0),
		asm.Ja.Label(fmt.Sprintf("mtu_%d", l)),
	)
}

// down routes an ISP's packet (IPv4 header at l) to the bound subscriber
// its VRF's table names.
func (b *builder) down(s progSpec, l int16) {
	m := s.m
	b.mark(fmt.Sprintf("down_%d", l))
	b.emit(
		asm.LoadMem(asm.R1, asm.R0, 1, asm.Byte), // the VLAN's ISP
		asm.JEq.Imm(asm.R1, gardenVRF, "slow"),
		asm.StoreMem(asm.RFP, stISP, asm.R1, asm.DWord),
		asm.StoreMem(asm.RFP, stIdx, asm.R1, asm.Word),
	)
	b.mapLookup(m.uplinks, stIdx, "slow")
	b.emit(
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Byte),
		asm.And.Imm(asm.R1, upConfigured),
		asm.JEq.Imm(asm.R1, 0, "slow"),
		// Our own uplink address: the engine's (DHCP, pings).
		asm.LoadMem(asm.R1, asm.R0, 4, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, stDst, asm.DWord),
		asm.JEq.Reg(asm.R1, asm.R2, "slow"),
		// The FIB's key: 1<<40 | vrf<<32 | ip.
		asm.LoadMem(asm.R1, asm.RFP, stISP, asm.DWord),
		asm.Or.Imm(asm.R1, 1<<8),
		asm.LSh.Imm(asm.R1, 32),
		asm.Or.Reg(asm.R1, asm.R2),
		asm.StoreMem(asm.RFP, stKey, asm.R1, asm.DWord),
	)
	b.mapLookup(m.dests, stKey, "slow")
	b.emit(
		// Dest: MAC<<16 | VLAN<<4 | port.
		asm.LoadMem(asm.R9, asm.R0, 0, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.And.Imm(asm.R1, 0xf),
		asm.StoreMem(asm.RFP, stEgress, asm.R1, asm.DWord),
		asm.StoreMem(asm.RFP, stIdx, asm.R1, asm.Word),
	)
	b.mapLookup(m.ports, stIdx, "slow")
	b.emit(
		// The new header at stHdr, built in registers and stored in
		// aligned words (the verifier's rule for the stack): the
		// subscriber's MAC, the egress port's, the tag when its VLAN is
		// not 0, IPv4. Word 0: the subscriber's MAC (mac<<16 in network
		// order) and the first two bytes of ours.
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.RSh.Imm(asm.R1, 16),
		asm.LSh.Imm(asm.R1, 16),
		asm.HostTo(asm.BE, asm.R1, asm.DWord),
		asm.LoadMem(asm.R2, asm.R0, 0, asm.Half),
		asm.LSh.Imm(asm.R2, 48),
		asm.Or.Reg(asm.R1, asm.R2),
		asm.StoreMem(asm.RFP, stHdr, asm.R1, asm.DWord),
		// Word 1: the other four bytes of ours, then the tag or IPv4.
		asm.LoadMem(asm.R3, asm.R0, 2, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.RSh.Imm(asm.R1, 4),
		asm.And.Imm(asm.R1, 0xfff),
		asm.JEq.Imm(asm.R1, 0, b.fresh("untag")),
	)
	untag := fmt.Sprintf("untag_%d", b.n)
	b.emit(
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.LSh.Imm(asm.R1, 48),
		asm.Or.Reg(asm.R3, asm.R1),
		asm.LoadImm(asm.R1, 0x0081<<32, asm.DWord),
		asm.Or.Reg(asm.R3, asm.R1),
		asm.StoreMem(asm.RFP, stHdr+8, asm.R3, asm.DWord),
		stImm64(asm.RFP, stHdr+16, 0x0008),
		stImm64(asm.RFP, stL2, 18),
		asm.Ja.Label(b.fresh("hdr")),
	)
	hdr := fmt.Sprintf("hdr_%d", b.n)
	b.mark(untag)
	b.emit(
		asm.LoadImm(asm.R1, 0x0008<<32, asm.DWord),
		asm.Or.Reg(asm.R3, asm.R1),
		asm.StoreMem(asm.RFP, stHdr+8, asm.R3, asm.DWord),
		stImm64(asm.RFP, stHdr+16, 0),
		stImm64(asm.RFP, stL2, 14),
	)
	b.mark(hdr)
	b.emit(
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, stHdr),
		asm.StoreMem(asm.RFP, stHdrPtr, asm.R1, asm.DWord),
		stImm64(asm.RFP, stDir, 8),
	)
	// Both sides: the egress port's MTU, then the rewrite.
	b.mark(fmt.Sprintf("mtu_%d", l))
	b.emit(
		asm.LoadMem(asm.R1, asm.RFP, stEgress, asm.DWord),
		asm.StoreMem(asm.RFP, stIdx, asm.R1, asm.Word),
	)
	b.mapLookup(m.ports, stIdx, "slow")
	b.emit(
		// A port that is down: the engine's (it counts the drop).
		asm.LoadMem(asm.R1, asm.R0, 12, asm.Word),
		asm.JEq.Imm(asm.R1, 0, "slow"),
		asm.LoadMem(asm.R1, asm.R0, 8, asm.Word),
		asm.JEq.Imm(asm.R1, 0, b.fresh("mtuok")),
	)
	mtuok := fmt.Sprintf("mtuok_%d", b.n)
	b.emit(
		asm.LoadMem(asm.R2, asm.RFP, stTotal, asm.DWord),
		asm.JGT.Reg(asm.R2, asm.R1, "slow"),
	)
	b.mark(mtuok)
	// The frame becomes new L2 + the datagram (no Ethernet padding):
	// trim the tail by len - (l + total), then move the head by l - L2.
	b.emit(
		asm.LoadMem(asm.R0, asm.RFP, stLen, asm.DWord),
		asm.LoadMem(asm.R2, asm.RFP, stTotal, asm.DWord),
		asm.Add.Imm(asm.R2, int32(l)),
		asm.Sub.Reg(asm.R2, asm.R0),
		asm.JEq.Imm(asm.R2, 0, b.fresh("notail")),
	)
	notail := fmt.Sprintf("notail_%d", b.n)
	b.emit(
		asm.JSGT.Imm(asm.R2, 0, "slow"),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnXdpAdjustTail.Call(),
		asm.JNE.Imm(asm.R0, 0, "slow"),
	)
	b.mark(notail)
	b.emit(
		asm.Mov.Imm(asm.R2, int32(l)),
		asm.LoadMem(asm.R1, asm.RFP, stL2, asm.DWord),
		asm.Sub.Reg(asm.R2, asm.R1),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnXdpAdjustHead.Call(),
		asm.JNE.Imm(asm.R0, 0, "drop"), // the tail is trimmed already
		asm.Ja.Label("rewrite"),
	)
}

// rewrite writes the new L2 header (stL2 bytes from stHdrPtr), decrements
// the TTL (the checksum as fib.DecTTLTo updates it), counts the packet and
// redirects it to the egress port.
func (b *builder) rewrite(s progSpec) {
	m := s.m
	b.mark("rewrite")
	b.emit(
		asm.LoadMem(asm.R7, asm.R6, 0, asm.Word),
		asm.LoadMem(asm.R8, asm.R6, 4, asm.Word),
		asm.LoadMem(asm.R3, asm.RFP, stHdrPtr, asm.DWord),
		asm.LoadMem(asm.R1, asm.RFP, stL2, asm.DWord),
		asm.JEq.Imm(asm.R1, 18, "hdr18"),
	)
	for _, l := range []int16{14, 18} {
		if l == 18 {
			b.mark("hdr18")
		}
		b.emit(
			asm.Mov.Reg(asm.R2, asm.R7),
			asm.Add.Imm(asm.R2, int32(l)+20),
			asm.JGT.Reg(asm.R2, asm.R8, "drop"),
			asm.LoadMem(asm.R1, asm.R3, 0, asm.DWord),
			asm.StoreMem(asm.R7, 0, asm.R1, asm.DWord),
		)
		if l == 14 {
			b.emit(
				asm.LoadMem(asm.R1, asm.R3, 8, asm.Word),
				asm.StoreMem(asm.R7, 8, asm.R1, asm.Word),
				asm.LoadMem(asm.R1, asm.R3, 12, asm.Half),
				asm.StoreMem(asm.R7, 12, asm.R1, asm.Half),
			)
		} else {
			b.emit(
				asm.LoadMem(asm.R1, asm.R3, 8, asm.DWord),
				asm.StoreMem(asm.R7, 8, asm.R1, asm.DWord),
				asm.LoadMem(asm.R1, asm.R3, 16, asm.Half),
				asm.StoreMem(asm.R7, 16, asm.R1, asm.Half),
			)
		}
		b.emit(
			// TTL − 1; checksum: ~(~HC + 0xfeff), folded.
			asm.LoadMem(asm.R1, asm.R7, l+8, asm.Byte),
			asm.Sub.Imm(asm.R1, 1),
			asm.StoreMem(asm.R7, l+8, asm.R1, asm.Byte),
			asm.LoadMem(asm.R1, asm.R7, l+10, asm.Half),
			asm.HostTo(asm.BE, asm.R1, asm.Half),
			asm.Xor.Imm(asm.R1, 0xffff),
			asm.Add.Imm(asm.R1, 0xfeff),
			asm.Mov.Reg(asm.R2, asm.R1),
			asm.RSh.Imm(asm.R2, 16),
			asm.And.Imm(asm.R1, 0xffff),
			asm.Add.Reg(asm.R1, asm.R2),
			asm.Xor.Imm(asm.R1, 0xffff),
			asm.HostTo(asm.BE, asm.R1, asm.Half),
			asm.StoreMem(asm.R7, l+10, asm.R1, asm.Half),
			asm.Ja.Label("count"),
		)
	}
	b.mark("count")
	b.emit(asm.StoreImm(asm.RFP, stIdx, int64(s.port), asm.Word))
	b.mapLookup(m.stats, stIdx, "send")
	b.emit(
		asm.LoadMem(asm.R1, asm.RFP, stDir, asm.DWord),
		asm.JNE.Imm(asm.R1, 0, "countdown"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Ja.Label("send"),
	)
	b.mark("countdown")
	b.emit(
		asm.LoadMem(asm.R1, asm.R0, 8, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 8, asm.R1, asm.DWord),
	)
	b.mark("send")
	if m.trace != nil {
		b.emit(asm.StoreImm(asm.RFP, stIdx, 0, asm.Word))
		b.mapLookup(m.trace, stIdx, "redirect")
		b.emit(
			asm.LoadMem(asm.R1, asm.RFP, stEgress, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		)
	}
	b.mark("redirect")
	b.emit(
		asm.LoadMapPtr(asm.R1, m.devs.FD()),
		asm.LoadMem(asm.R2, asm.RFP, stEgress, asm.DWord),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRedirectMap.Call(),
		asm.Return(),
	)
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }

// stImm64 is *(u64 *)(dst + off) = v (asm.StoreImm refuses DWord).
func stImm64(dst asm.Register, off int16, v int64) asm.Instruction {
	return asm.Instruction{OpCode: asm.StoreImmOp(asm.DWord), Dst: dst, Offset: off, Constant: v}
}
