package appliance

import (
	"fmt"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/configs"
)

// What check asks of the host it runs on, beside the files (checkfiles.go):
// the interfaces the file names, and room on the state directory's disk.

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
