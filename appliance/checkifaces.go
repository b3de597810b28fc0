package appliance

import (
	"fmt"
	"net"

	"github.com/ispmux/ispmux/configs"
)

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
		if _, err := net.InterfaceByName(name); err != nil {
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
