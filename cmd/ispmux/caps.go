package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/configs"
)

// capability is a Linux capability ispmux run may need, and what for.
type capability struct {
	bit  uint
	name string
	why  string
}

// The capabilities of `ispmux run` (contrib/systemd/ispmux.service,
// docs/DEPLOY.md). Without them the kernel's refusals surface as
// misleading library errors ("map create: operation not permitted (MEMLOCK
// may be too low)"), so run checks first and names what is missing.
var (
	capNetBindService = capability{10, "CAP_NET_BIND_SERVICE", "the captive portal's listeners on ports 80 and 443"}
	capNetAdmin       = capability{12, "CAP_NET_ADMIN", "attach the XDP program, create its socket map, configure the ports"}
	capNetRaw         = capability{13, "CAP_NET_RAW", "open the AF_XDP sockets"}
	capIPCLock        = capability{14, "CAP_IPC_LOCK", "pin the UMEM beyond the memlock limit (or run with an unlimited one: LimitMEMLOCK=infinity)"}
	capSysAdmin       = capability{21, "CAP_SYS_ADMIN", "create the captive portal's network namespace"}
	capBPF            = capability{39, "CAP_BPF", "load the XDP program and its maps"}
)

// missingCapabilities returns the capabilities ispmux run lacks for cfg,
// given its effective set eff, the kernel's last capability (CAP_BPF
// exists from Linux 5.8; before, loading BPF needs CAP_SYS_ADMIN) and
// whether the memlock limit is unlimited (then UMEM needs no
// CAP_IPC_LOCK).
func missingCapabilities(cfg *configs.Config, eff uint64, lastCap uint, memlockUnlimited bool) []capability {
	has := func(c capability) bool { return eff&(1<<c.bit) != 0 }
	var need []capability
	need = append(need, capNetAdmin, capNetRaw)
	switch {
	case has(capSysAdmin): // loads BPF too
	case lastCap >= capBPF.bit:
		need = append(need, capBPF)
	default:
		need = append(need, capability{capSysAdmin.bit, capSysAdmin.name, "load the XDP program (no CAP_BPF before Linux 5.8)"})
	}
	if !memlockUnlimited {
		need = append(need, capIPCLock)
	}
	if cfg.Portal.Enabled {
		need = append(need, capSysAdmin, capNetBindService)
	}
	var missing []capability
	seen := map[uint]bool{}
	for _, c := range need {
		if !has(c) && !seen[c.bit] {
			seen[c.bit] = true
			missing = append(missing, c)
		}
	}
	return missing
}

// checkCapabilities fails, naming each missing capability and its use,
// when this process lacks what `ispmux run` needs for cfg. It touches
// nothing; when the process's capabilities cannot be read it says
// nothing and lets the kernel decide.
func checkCapabilities(cfg *configs.Config) error {
	eff, lastCap, err := processCapabilities()
	if err != nil {
		return nil
	}
	var lim unix.Rlimit
	unlimited := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) == nil && lim.Cur == unix.RLIM_INFINITY
	missing := missingCapabilities(cfg, eff, lastCap, unlimited)
	if len(missing) == 0 {
		return nil
	}
	parts := make([]string, len(missing))
	for i, c := range missing {
		parts[i] = c.name + " (" + c.why + ")"
	}
	return fmt.Errorf("run: missing capabilities: %s; run as root or grant them (contrib/systemd/ispmux.service, docs/DEPLOY.md)", strings.Join(parts, ", "))
}

// processCapabilities reads this process's effective capabilities and
// the kernel's last capability number.
func processCapabilities() (eff uint64, lastCap uint, err error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	found := false
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			if eff, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64); err != nil {
				return 0, 0, err
			}
			found = true
		}
	}
	if !found {
		return 0, 0, fmt.Errorf("no CapEff in /proc/self/status")
	}
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return 0, 0, err
	}
	return eff, uint(n), nil
}
