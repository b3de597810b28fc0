package main

import (
	"strings"
	"testing"

	"github.com/ispmux/ispmux/configs"
)

func TestMissingCapabilities(t *testing.T) {
	set := func(cs ...capability) uint64 {
		var m uint64
		for _, c := range cs {
			m |= 1 << c.bit
		}
		return m
	}
	names := func(cs []capability) string {
		var n []string
		for _, c := range cs {
			n = append(n, c.name)
		}
		return strings.Join(n, ",")
	}
	base := set(capNetAdmin, capNetRaw, capBPF, capIPCLock)
	plain, portal := &configs.Config{}, &configs.Config{}
	portal.Portal.Enabled = true
	const linux6 = 40 // cap_last_cap of Linux 5.9 and later
	for _, c := range []struct {
		name     string
		cfg      *configs.Config
		eff      uint64
		lastCap  uint
		unlimMem bool
		want     string
	}{
		{"root", portal, ^uint64(0), linux6, false, ""},
		{"the unit's four", plain, base, linux6, false, ""},
		{"no CAP_BPF", plain, base &^ set(capBPF), linux6, false, "CAP_BPF"},
		{"no CAP_NET_RAW", plain, base &^ set(capNetRaw), linux6, false, "CAP_NET_RAW"},
		{"no CAP_NET_ADMIN", plain, base &^ set(capNetAdmin), linux6, false, "CAP_NET_ADMIN"},
		{"no CAP_IPC_LOCK", plain, base &^ set(capIPCLock), linux6, false, "CAP_IPC_LOCK"},
		{"no CAP_IPC_LOCK, memlock unlimited", plain, base &^ set(capIPCLock), linux6, true, ""},
		{"nothing", plain, 0, linux6, false, "CAP_NET_ADMIN,CAP_NET_RAW,CAP_BPF,CAP_IPC_LOCK"},
		{"portal without CAP_SYS_ADMIN", portal, base | set(capNetBindService), linux6, false, "CAP_SYS_ADMIN"},
		{"portal without CAP_NET_BIND_SERVICE", portal, base | set(capSysAdmin), linux6, false, "CAP_NET_BIND_SERVICE"},
		{"portal", portal, base | set(capSysAdmin, capNetBindService), linux6, false, ""},
		{"CAP_SYS_ADMIN instead of CAP_BPF", plain, base&^set(capBPF) | set(capSysAdmin), linux6, false, ""},
		{"kernel before CAP_BPF", plain, base, 38, false, "CAP_SYS_ADMIN"},
	} {
		if got := names(missingCapabilities(c.cfg, c.eff, c.lastCap, c.unlimMem)); got != c.want {
			t.Errorf("%s: missing %q, want %q", c.name, got, c.want)
		}
	}
}
