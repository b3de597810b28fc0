package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// batch runs ip commands (one per line) inside ns with `ip -n ns -batch -`.
func batch(ctx context.Context, ns string, force bool, lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	args := []string{"-n", ns}
	if force {
		args = append(args, "-force")
	}
	args = append(args, "-batch", "-")
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil && !force {
		return fmt.Errorf("lab: ip %s (%d commands, first %q): %v: %s", strings.Join(args, " "), len(lines), lines[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// routerSubs are the subscribers the kernel router serves: the lab's and the
// generator's synthetic ones. Only the first subscriber with a given address
// gets a rule; the others are returned as skipped.
func (t *Topology) routerSubs() (served, skipped []Sub) {
	all := append([]Sub(nil), t.Subscribers...)
	if t.Generator != nil {
		all = append(all, t.TrafficSubscribers(t.Generator.TrafficSubscribers)...)
	}
	seen := map[string]bool{}
	for _, s := range all {
		if s.IP == "" {
			continue // DHCP lab: no static address
		}
		if seen[s.IP] {
			skipped = append(skipped, s)
			continue
		}
		seen[s.IP] = true
		served = append(served, s)
	}
	return served, skipped
}

// KernelRouter turns the appliance namespace into the equivalent Linux policy
// router (on) or back into a bare namespace for ispmux (off). On: the
// gateway address 100.64.0.1/16 on every access port, OurAddr on every
// uplink, ip_forward=1, per ISP a routing table (ISP.Table) with a default
// route via the ISP router, per subscriber a rule "from <ip> lookup <table>"
// and a permanent neighbour entry (so that the baseline does no ARP towards
// subscribers). The kernel cannot express overlapping plans: a subscriber
// whose address an earlier subscriber already uses (s3 shares s1's) gets no
// rule and no neighbour entry, and is unreachable in this mode. XDP programs
// must be detached by the caller first.
func (t *Topology) KernelRouter(ctx context.Context, on bool) error {
	app := t.Appliance.NS
	if err := t.kernelRouterOff(ctx); err != nil {
		return err
	}
	if !on {
		return nil
	}
	if err := sysctl(ctx, app, "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	lines := t.kernelBase()
	tables := map[string]int{}
	for _, isp := range t.ISPs {
		tables[isp.Name] = isp.Table
	}
	served, _ := t.routerSubs()
	for k, s := range served {
		tb, ok := tables[s.ISP]
		if !ok {
			return fmt.Errorf("lab: subscriber %s: unknown isp %q", s.Name, s.ISP)
		}
		lines = append(lines,
			fmt.Sprintf("rule add pref %d from %s/32 lookup %d", kernelRulePrefix+k, s.IP, tb),
			fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent", s.IP, s.MAC, s.Access))
	}
	return batch(ctx, app, false, lines)
}

// kernelBase is the part of the kernel router every variant shares (ip
// batch lines): the gateway address on every access port, the generator's
// network on its port, our address on every uplink and per ISP a table with
// a default route via the ISP's router.
func (t *Topology) kernelBase() []string {
	var lines []string
	for _, a := range t.Appliance.Access {
		lines = append(lines, "addr replace "+Gateway+"/16 dev "+a.Name)
	}
	if t.Generator != nil {
		lines = append(lines, "route replace "+TrafficNet+" dev "+t.Generator.Access)
	}
	for i, isp := range t.ISPs {
		up := t.Appliance.Uplinks[i].Name
		tb := strconv.Itoa(isp.Table)
		lines = append(lines,
			"addr replace "+isp.OurAddr+" dev "+up,
			"route replace 192.0.2.0/24 dev "+up+" table "+tb,
			"route replace default via "+isp.RouterAddr+" dev "+up+" table "+tb)
	}
	return lines
}

func (t *Topology) kernelRouterOff(ctx context.Context) error {
	app := t.Appliance.NS
	if err := sysctl(ctx, app, "net.ipv4.ip_forward=0"); err != nil {
		return err
	}
	out, err := run(ctx, "ip", "-n", app, "-j", "rule", "show")
	if err != nil {
		return err
	}
	var rules []struct {
		Priority int    `json:"priority"`
		Table    string `json:"table"`
	}
	if err := json.Unmarshal([]byte(out), &rules); err != nil {
		return fmt.Errorf("lab: ip rule show in %s: %w", app, err)
	}
	ours := map[string]bool{}
	for _, isp := range t.ISPs {
		ours[strconv.Itoa(isp.Table)] = true
	}
	var lines []string
	for _, r := range rules {
		if ours[r.Table] {
			lines = append(lines, fmt.Sprintf("rule del pref %d", r.Priority))
		}
	}
	for _, isp := range t.ISPs {
		lines = append(lines, "route flush table "+strconv.Itoa(isp.Table))
	}
	var devs []string
	for _, a := range t.Appliance.Access {
		devs = append(devs, a.Name)
	}
	for _, u := range t.Appliance.Uplinks {
		devs = append(devs, u.Name)
	}
	for _, d := range devs {
		lines = append(lines,
			"addr flush dev "+d,
			"route flush dev "+d,
			"neigh flush dev "+d+" nud permanent",
			"neigh flush dev "+d)
	}
	// -force: flushing what is already gone is not an error.
	if err := batch(ctx, app, true, lines); err != nil {
		return err
	}
	// Verify: no rule of ours and no address may remain.
	out, err = run(ctx, "ip", "-n", app, "-j", "rule", "show")
	if err != nil {
		return err
	}
	rules = rules[:0]
	if err := json.Unmarshal([]byte(out), &rules); err != nil {
		return fmt.Errorf("lab: ip rule show in %s: %w", app, err)
	}
	for _, r := range rules {
		if ours[r.Table] {
			return fmt.Errorf("lab: kernel router off: rule %d lookup %s remains in %s", r.Priority, r.Table, app)
		}
	}
	return nil
}
