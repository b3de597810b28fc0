package datapath

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Legacy ethtool flags (linux/ethtool.h): still mapped by every kernel onto
// the NETIF_F_HW_VLAN_CTAG_RX / STAG_RX features.
const (
	ethtoolGFlags = 0x25 // ETHTOOL_GFLAGS
	ethtoolSFlags = 0x26 // ETHTOOL_SFLAGS
	ethFlagRxVLAN = 1 << 8
)

type ethtoolValue struct {
	cmd, data uint32
}

type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer // a Go pointer the GC sees (not a uintptr)
	_    [16]byte
}

// disableVLANStrip turns off receive VLAN tag stripping on ifname: with it
// on, a NIC takes 802.1Q tags out of the frame into its descriptor, so XDP
// (and ispmux) would see a tagged subscriber's frame as untagged — VLAN
// access ports would not work and an untagged port would accept any tag.
// It reports whether it changed anything.
func disableVLANStrip(ifname string) (bool, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	var req ifreqData
	copy(req.name[:unix.IFNAMSIZ-1], ifname)
	v := ethtoolValue{cmd: ethtoolGFlags}
	req.data = unsafe.Pointer(&v)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req))); e != 0 {
		return false, fmt.Errorf("ethtool get flags: %w", e)
	}
	if v.data&ethFlagRxVLAN == 0 {
		return false, nil
	}
	v = ethtoolValue{cmd: ethtoolSFlags, data: v.data &^ ethFlagRxVLAN}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req))); e != 0 {
		return false, fmt.Errorf("ethtool: turn rx VLAN offload off: %w", e)
	}
	return true, nil
}
