package appliance

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/configs"
)

// What check asks of the host it runs on, beside the files (checkfiles.go):
// the interfaces the file names, that its listen addresses are this
// host's, and room on the state directory's disk.

// MissingInterfaces returns, for each interface cfg names (access ports,
// ISP uplinks) that this host does not have, the configuration key naming
// it and the error: Start would fail on it ("Link not found"), with no
// word of where the file names it. An interface named twice (an access
// and an uplink on one port) is reported at its first key.
func MissingInterfaces(cfg *configs.Config) []FileProblem {
	var out []FileProblem
	seen := map[string]bool{}
	check := func(key, name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		// As OpenXDP finds it: netlink resolves alternative names too.
		if _, err := netlink.LinkByName(name); err != nil {
			out = append(out, FileProblem{Key: key, Err: fmt.Errorf("no interface %q on this host: %v", name, err)})
		}
	}
	for i, a := range cfg.Access {
		check(fmt.Sprintf("access[%d].interface", i), a.Interface)
	}
	for i, p := range cfg.ISPs {
		check(fmt.Sprintf("isp[%d].uplink", i), p.Uplink)
	}
	return out
}

// ListenNotLocal returns, for each management listener cfg opens ([api]
// listen when the API is served, [metrics] listen when set) whose host is
// an IP address that no interface of this network namespace has, the
// configuration key and the error: Start would fail on it ("bind: cannot
// assign requested address"), with no word of where the file names it.
// It looks at the addresses and binds nothing: check may run while ispmux
// does (the port taken), or on another host than the file's. Names and
// the wildcard are left to Start; so is every address of a family whose
// ip_nonlocal_bind is on (the kernel binds those anyway). Loopback
// addresses are local. An address the file gives to ispmux's datapath (an
// access gateway, an ISP uplink: configs.Config.DataAddr) is named as
// such: the data ports carry no kernel address.
func ListenNotLocal(cfg *configs.Config) []FileProblem {
	var ls []struct{ key, listen string }
	if cfg.ServesAPI() {
		ls = append(ls, struct{ key, listen string }{"api.listen", cfg.API.Listen})
	}
	if cfg.Metrics.Enabled() {
		ls = append(ls, struct{ key, listen string }{"metrics.listen", cfg.Metrics.Listen})
	}
	var local map[netip.Addr]bool // read once, if some listener needs it
	var out []FileProblem
	for _, l := range ls {
		host, _, err := net.SplitHostPort(l.listen)
		if err != nil {
			continue
		}
		h, _, _ := strings.Cut(host, "%")
		a, err := netip.ParseAddr(h)
		if err != nil || a.IsUnspecified() || a.IsLoopback() {
			continue
		}
		a = a.Unmap()
		if nonlocalBind(a) {
			continue
		}
		if local == nil {
			if local, err = hostAddrs(); err != nil {
				return nil // cannot tell: left to Start
			}
		}
		if !local[a] {
			why := "of no interface in its network namespace"
			if d := cfg.DataAddr(a); d != "" {
				why = "it is " + d
			}
			out = append(out, FileProblem{Key: l.key, Err: fmt.Errorf("%s is not an address of this host (%s): ispmux cannot listen on %q (bind: cannot assign requested address); name an address of the management interface, or 127.0.0.1", a, why, l.listen)})
		}
	}
	return out
}

// hostAddrs is the set of the addresses of this namespace's interfaces.
func hostAddrs() (map[netip.Addr]bool, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	m := make(map[netip.Addr]bool, len(as))
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				m[ip.Unmap()] = true
			}
		}
	}
	return m, nil
}

// nonlocalBind reports whether the kernel lets a socket bind a's family
// to an address the host does not have (net.ipv4.ip_nonlocal_bind,
// net.ipv6.ip_nonlocal_bind).
func nonlocalBind(a netip.Addr) bool {
	f := "/proc/sys/net/ipv4/ip_nonlocal_bind"
	if !a.Is4() {
		f = "/proc/sys/net/ipv6/ip_nonlocal_bind"
	}
	b, err := os.ReadFile(f)
	return err == nil && string(bytes.TrimSpace(b)) != "0"
}

// lowFreeSpace is the free space below which check warns of the state
// directory's file system: the store of a million subscribers takes a few
// hundred megabytes, a backup (ctl backup, often to the same disk) as
// much again, and a full disk refuses every new binding.
const lowFreeSpace = 1 << 30

// StateDirSpace returns a warning when the file system of cfg's state
// directory (or of its nearest existing parent) has less than 1 GiB free,
// or "" (also when it cannot tell).
func StateDirSpace(cfg *configs.Config) string {
	for d := filepath.Clean(cfg.Appliance.StateDir); ; d = filepath.Dir(d) {
		var st unix.Statfs_t
		if err := unix.Statfs(d, &st); err == nil {
			free := st.Bavail * uint64(st.Bsize)
			if free < lowFreeSpace {
				return fmt.Sprintf("%s has %d MiB free (the store grows with the bindings, a backup takes as much again, and a full disk refuses new bindings)", d, free>>20)
			}
			return ""
		}
		if d == filepath.Dir(d) {
			return ""
		}
	}
}
