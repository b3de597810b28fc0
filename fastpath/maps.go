package fastpath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
)

// Bounds of the maps.
const (
	maxPorts = 16
	maxVLANs = 4096
	maxISPs  = 256
)

// The hash maps are preallocated (no BPF_F_NO_PREALLOC): their
// mac_table_size entries each, about 70 B of kernel memory apiece, are
// allocated at creation (40 ms for two of 1M), and an update takes an
// entry from a free list instead of allocating: a million bindings copy
// in under a second in batches, against twice that allocating.

// Maps is the fast path's state in the kernel, shared by every port's
// program: copies of the engine's MAC table and FIB (the same keys and
// packed values), each port's and VLAN's role, each ISP's uplink, the
// egress devices and the forwarded-packet counters. The engine's control
// plane writes it through the engine.Offload methods, under its own lock,
// right after its own tables; programs read it.
//
// A write the kernel refuses (a full table) cannot leave the
// fast path with a stale entry: the entry is deleted, and if even that
// fails the fast path is switched off (every frame to the engine), and
// Err says why.
type Maps struct {
	macs, dests *ebpf.Map // Hash: u64 → u64
	vlans       *ebpf.Map // Array [port*4096+vlan]: vlanVal
	ports       *ebpf.Map // Array [port]: portVal
	uplinks     *ebpf.Map // Array [isp]: uplinkVal
	conf        *ebpf.Map // Array [0]: confVal
	devs        *ebpf.Map // DevMap [port]: ifindex
	stats       *ebpf.Map // PerCPUArray [port]: up, down
	trace       *ebpf.Map // tests only: Array [0]: egress port + 1 of the last redirect

	mu    sync.Mutex // serialises writers of conf
	conf0 confVal
	err   atomic.Pointer[error]
}

// Value layouts (little-endian, as the program reads them).
type (
	vlanVal struct {
		Role, ISP uint8
		_         uint16
		GW        uint32 // the access VLAN's gateway address, host order
	}
	portVal struct {
		MAC     [6]byte
		_       [2]byte
		MTU     uint32
		IfIndex uint32 // 0: down, the engine's
	}
	uplinkVal struct {
		Flags, Port, L2Len, _ uint8
		Addr                  uint32 // our address on the uplink, host order
		L2                    [24]byte
	}
	confVal struct {
		Portal uint32 // the walled garden's portal address, host order
		Off    uint32 // 1: every frame to the engine
	}
)

// New creates the maps for tables of capacity entries each.
func New(capacity int) (*Maps, error) { return newMaps(capacity, false) }

func newMaps(capacity int, trace bool) (m *Maps, err error) {
	m = &Maps{}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	mk := func(name string, t ebpf.MapType, k, v, n uint32, flags uint32) (*ebpf.Map, error) {
		mp, err := ebpf.NewMap(&ebpf.MapSpec{Name: name, Type: t, KeySize: k, ValueSize: v, MaxEntries: n, Flags: flags})
		if err != nil {
			return nil, fmt.Errorf("fastpath: map %s: %w (memlock may be too low)", name, err)
		}
		return mp, nil
	}
	n := uint32(max(capacity, 1))
	if m.macs, err = mk("ispmux_macs", ebpf.Hash, 8, 8, n, 0); err != nil {
		return nil, err
	}
	if m.dests, err = mk("ispmux_dests", ebpf.Hash, 8, 8, n, 0); err != nil {
		return nil, err
	}
	if m.vlans, err = mk("ispmux_vlans", ebpf.Array, 4, 8, maxPorts*maxVLANs, 0); err != nil {
		return nil, err
	}
	if m.ports, err = mk("ispmux_ports", ebpf.Array, 4, 16, maxPorts, 0); err != nil {
		return nil, err
	}
	if m.uplinks, err = mk("ispmux_uplinks", ebpf.Array, 4, 32, maxISPs, 0); err != nil {
		return nil, err
	}
	if m.conf, err = mk("ispmux_conf", ebpf.Array, 4, 8, 1, 0); err != nil {
		return nil, err
	}
	if m.devs, err = mk("ispmux_devs", ebpf.DevMap, 4, 4, maxPorts, 0); err != nil {
		return nil, err
	}
	if m.stats, err = mk("ispmux_fwd", ebpf.PerCPUArray, 4, 16, maxPorts, 0); err != nil {
		return nil, err
	}
	if trace {
		if m.trace, err = mk("ispmux_trace", ebpf.Array, 4, 8, 1, 0); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Close releases the maps (programs still attached keep what they use).
func (m *Maps) Close() error {
	var errs []error
	for _, mp := range []*ebpf.Map{m.macs, m.dests, m.vlans, m.ports, m.uplinks, m.conf, m.devs, m.stats, m.trace} {
		if mp != nil {
			errs = append(errs, mp.Close())
		}
	}
	return errors.Join(errs...)
}

// Program builds port's program: its frames to mac that the fast path
// forwards are forwarded; the rest go to the AF_XDP socket of their queue
// as asavie/xdp's program sends them (qidconf: 1 where a socket is bound,
// xsks: the sockets by queue).
func (m *Maps) Program(port uint8, mac uint64, qidconf, xsks *ebpf.Map) (*ebpf.Program, error) {
	if port >= maxPorts {
		return nil, fmt.Errorf("fastpath: port %d: at most %d ports", port, maxPorts)
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], mac<<16)
	s := progSpec{port: port, qidconf: qidconf, xsks: xsks, m: m}
	copy(s.mac[:], b[:6])
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "ispmux_fast",
		Type:         ebpf.XDP,
		License:      "GPL", // bpf_xdp_get_buff_len is GPL-only
		Instructions: assemble(s),
	})
	if err != nil {
		return nil, fmt.Errorf("fastpath: port %d: load program: %w", port, err)
	}
	return prog, nil
}

// SetPort publishes port's MAC, MTU (0: no limit) and interface index (the
// redirect target; 0 withdraws it: frames for the port go to the engine's
// AF_XDP path, which knows it is down).
func (m *Maps) SetPort(port uint8, mac uint64, mtu int, ifindex int) {
	if port >= maxPorts {
		return
	}
	var v portVal
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], mac<<16)
	copy(v.MAC[:], b[:6])
	v.MTU = uint32(max(mtu, 0))
	v.IfIndex = uint32(max(ifindex, 0))
	m.must(m.ports.Put(uint32(port), v), "port")
	if ifindex > 0 {
		m.must(m.devs.Put(uint32(port), uint32(ifindex)), "device")
	} else if err := m.devs.Delete(uint32(port)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		m.must(err, "device")
	}
}

// SetMTU updates port's MTU only.
func (m *Maps) SetMTU(port uint8, mtu int) {
	if port >= maxPorts {
		return
	}
	var v portVal
	if err := m.ports.Lookup(uint32(port), &v); err != nil {
		m.must(err, "port")
		return
	}
	v.MTU = uint32(max(mtu, 0))
	m.must(m.ports.Put(uint32(port), v), "port")
}

// SetVLAN publishes the role of port's vlan: access (with its gateway
// address gw) or the uplink of ISP isp.
func (m *Maps) SetVLAN(port uint8, vlan uint16, access bool, isp uint8, gw uint32) {
	v := vlanVal{Role: roleUplink, ISP: isp}
	if access {
		v = vlanVal{Role: roleAccess, GW: gw}
	}
	m.must(m.vlans.Put(uint32(port)*maxVLANs+uint32(vlan&0xfff), v), "vlan")
}

// SetUplink publishes ISP isp's uplink: port, our address, whether it is
// configured and its next hop resolved, and the L2 header of frames to
// the next hop (l2, 14 or 18 bytes; empty unless resolved).
func (m *Maps) SetUplink(isp uint8, configured, resolved bool, port uint8, addr uint32, l2 []byte) {
	var v uplinkVal
	if configured {
		v.Flags |= upConfigured
		v.Port, v.Addr = port, addr
		if resolved && (len(l2) == 14 || len(l2) == 18) {
			v.Flags |= upResolved
			v.L2Len = uint8(len(l2))
			copy(v.L2[:], l2)
		}
	}
	m.must(m.uplinks.Put(uint32(isp), v), "uplink")
}

// SetPortal publishes the walled garden's portal address (0: none): a
// bound subscriber's packets to it are the engine's (portal path).
func (m *Maps) SetPortal(addr uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.conf0.Portal = addr
	m.must(m.conf.Put(uint32(0), m.conf0), "conf")
}

// SetSub mirrors MAC table entry key → val (classifier.Key, Sub.Pack).
func (m *Maps) SetSub(key, val uint64) { m.set(m.macs, key, val, "mac table") }

// SetSubs mirrors many MAC table entries at once (keys[i] → vals[i]): a
// start-up's copy of the whole table, a few hundred nanoseconds an entry
// where SetSub costs a system call each.
func (m *Maps) SetSubs(keys, vals []uint64) { m.setBatch(m.macs, keys, vals, "mac table") }

// SetDests mirrors many FIB entries at once.
func (m *Maps) SetDests(keys, vals []uint64) { m.setBatch(m.dests, keys, vals, "fib") }

func (m *Maps) setBatch(mp *ebpf.Map, keys, vals []uint64, what string) {
	if len(keys) == 0 {
		return
	}
	n, err := mp.BatchUpdate(keys, vals, nil)
	if err == nil && n == len(keys) {
		return
	}
	// One at a time from where the batch stopped: each failure is
	// handled as SetSub's.
	for i := max(n, 0); i < len(keys); i++ {
		m.set(mp, keys[i], vals[i], what)
	}
}

// DelSub removes MAC table entry key.
func (m *Maps) DelSub(key uint64) { m.del(m.macs, key, "mac table") }

// SetDest mirrors FIB entry key → val (fib.Key, Dest.Pack).
func (m *Maps) SetDest(key, val uint64) { m.set(m.dests, key, val, "fib") }

// DelDest removes FIB entry key.
func (m *Maps) DelDest(key uint64) { m.del(m.dests, key, "fib") }

func (m *Maps) set(mp *ebpf.Map, key, val uint64, what string) {
	if err := mp.Put(key, val); err != nil {
		// Not there, the engine forwards it; a stale value must not
		// stay.
		m.del(mp, key, what)
	}
}

func (m *Maps) del(mp *ebpf.Map, key uint64, what string) {
	if err := mp.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		m.must(err, what)
	}
}

// must switches the fast path off when err is not nil: a map that could
// not be written may say something the engine's tables no longer do.
func (m *Maps) must(err error, what string) {
	if err == nil {
		return
	}
	err = fmt.Errorf("fastpath: %s: %w", what, err)
	m.err.CompareAndSwap(nil, &err)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.conf0.Off = 1
	_ = m.conf.Put(uint32(0), m.conf0)
}

// Err is the error that switched the fast path off, or nil.
func (m *Maps) Err() error {
	if p := m.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Forwarded returns the packets the fast path forwarded, received on port:
// up (from subscribers to ISPs) and down, summed over CPUs.
func (m *Maps) Forwarded(port uint8) (up, down uint64) {
	var vals [][16]byte
	if err := m.stats.Lookup(uint32(port), &vals); err != nil {
		return 0, 0
	}
	for _, v := range vals {
		up += binary.LittleEndian.Uint64(v[0:8])
		down += binary.LittleEndian.Uint64(v[8:16])
	}
	return up, down
}
