package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The kernel as an operator would build the appliance (bench forward's
// "kernel" case): subscribers in one nftables map, one policy rule per ISP.
//
//	table ip ispmux_bench {
//		map sub {
//			type ether_addr . ipv4_addr : mark
//			size N
//			elements = { 02:11:00:00:00:00 . 100.80.0.0 : 0x1, ... }  # MAC . address → ISP's mark
//		}
//		chain pre {
//			type filter hook prerouting priority raw; policy accept;
//			iif { acc0, acc1 } notrack meta mark set ether saddr . ip saddr map @sub accept
//			iif { acc0, acc1 } udp dport 67 accept   # DHCP of devices not bound yet
//			iif { acc0, acc1 } drop                  # anti-spoofing: any other MAC . address
//		}
//	}
//	ip rule add pref 900+i fwmark i+1 lookup <ISP i's table>   # one per ISP
//
// A bound subscriber's packet evaluates one rule: the map lookup (a hash of
// the 10-byte concatenation) sets its ISP's mark, and the rule accepts it;
// the fib rule for that mark picks the ISP's table. notrack keeps
// connection tracking out (it is not loaded in the namespace anyway). An
// unknown MAC, or a known MAC with another address, misses the map and is
// dropped. Forwarding itself is moved off the generator's CPU with RPS
// (SetRPS).
const (
	NFTTable     = "ispmux_bench"
	nftRulePref  = 900
	nftLoadChunk = 1 << 17 // map elements per nft transaction
)

// NFTSource returns subscriber i of an nftables map: its MAC, its IPv4
// address and the index of its ISP in Topology.ISPs.
type NFTSource func(i int) (mac [6]byte, ip [4]byte, isp int)

// nft runs an nft script in namespace ns.
func nft(ctx context.Context, ns, script string) error {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		first, _, _ := strings.Cut(script, "\n")
		return fmt.Errorf("lab: nft -f in %s (%d bytes, first line %q): %v: %s", ns, len(script), truncateLine(first, 120), err, lastLines(string(out), 5))
	}
	return nil
}

func truncateLine(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// NFTLoadMap (re)creates table ip ispmux_bench in the appliance namespace
// with the map "sub" holding the n subscribers src(0..n-1) (MAC . address →
// mark ISP index + 1), in transactions of nftLoadChunk elements; progress,
// if not nil, is called with the elements loaded so far. The table has no
// chain until NFTRouter(on): loading a large map (a million elements takes
// tens of seconds) is done once and outlives the router being switched on
// and off.
func (t *Topology) NFTLoadMap(ctx context.Context, n int, src NFTSource, progress func(int)) error {
	app := t.Appliance.NS
	if err := t.NFTDelete(ctx); err != nil {
		return err
	}
	if n < 1 {
		return fmt.Errorf("lab: nft map of %d elements", n)
	}
	head := fmt.Sprintf("add table ip %s\nadd map ip %[1]s sub { type ether_addr . ipv4_addr : mark; size %d; }\n", NFTTable, n)
	if err := nft(ctx, app, head); err != nil {
		return err
	}
	var b strings.Builder
	for lo := 0; lo < n; lo += nftLoadChunk {
		b.Reset()
		fmt.Fprintf(&b, "add element ip %s sub { ", NFTTable)
		for i := lo; i < min(n, lo+nftLoadChunk); i++ {
			mac, ip, isp := src(i)
			if isp < 0 || isp >= len(t.ISPs) {
				return fmt.Errorf("lab: nft map element %d: ISP index %d of %d", i, isp, len(t.ISPs))
			}
			if i > lo {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%02x:%02x:%02x:%02x:%02x:%02x . %d.%d.%d.%d : %d",
				mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], ip[0], ip[1], ip[2], ip[3], isp+1)
		}
		b.WriteString(" }\n")
		if err := nft(ctx, app, b.String()); err != nil {
			return err
		}
		if progress != nil {
			progress(min(n, lo+nftLoadChunk))
		}
	}
	return nil
}

// NFTDelete removes table ip ispmux_bench (map and chain) from the
// appliance namespace, if it is there.
func (t *Topology) NFTDelete(ctx context.Context) error {
	return nft(ctx, t.Appliance.NS, fmt.Sprintf("table ip %s\ndelete table ip %[1]s\n", NFTTable))
}

// accessSet is the nft anonymous set of the appliance's access ports.
func (t *Topology) accessSet() string {
	var names []string
	for _, a := range t.Appliance.Access {
		names = append(names, strconv.Quote(a.Name))
	}
	return "{ " + strings.Join(names, ", ") + " }"
}

// NFTRouter turns the appliance namespace into the nftables router (on;
// NFTLoadMap first) or back into a bare namespace (off; the map stays):
// KernelRouter's addresses and per-ISP tables without its per-subscriber
// rules, the prerouting chain of the package comment and one fwmark rule
// per ISP. RPS is SetRPS's. XDP programs must be detached by the caller.
func (t *Topology) NFTRouter(ctx context.Context, on bool) error {
	app := t.Appliance.NS
	if err := t.kernelRouterOff(ctx); err != nil {
		return err
	}
	// The chain goes (whatever state it is in); the map stays.
	_ = nft(ctx, app, fmt.Sprintf("delete chain ip %s pre\n", NFTTable))
	if !on {
		return nil
	}
	acc := t.accessSet()
	rules := fmt.Sprintf(`add chain ip %[1]s pre { type filter hook prerouting priority raw; policy accept; }
add rule ip %[1]s pre iif %[2]s notrack meta mark set ether saddr . ip saddr map @sub accept
add rule ip %[1]s pre iif %[2]s udp dport 67 accept
add rule ip %[1]s pre iif %[2]s drop
`, NFTTable, acc)
	if err := nft(ctx, app, rules); err != nil {
		return err
	}
	if err := sysctl(ctx, app, "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	lines := t.kernelBase()
	for i, isp := range t.ISPs {
		lines = append(lines, fmt.Sprintf("rule add pref %d fwmark %d lookup %d", nftRulePref+i, i+1, isp.Table))
	}
	return batch(ctx, app, false, lines)
}

// RuleRouter is KernelRouter for n subscribers src(0..n-1) instead of the
// lab's own (no neighbour entries: the benchmark's traffic is one way): the
// per-subscriber policy router, one "ip rule from <address> lookup <table>"
// per subscriber, no anti-spoofing. Off is KernelRouter's off.
func (t *Topology) RuleRouter(ctx context.Context, on bool, n int, src NFTSource) error {
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
	for i := range n {
		_, ip, isp := src(i)
		if isp < 0 || isp >= len(t.ISPs) {
			return fmt.Errorf("lab: rule router subscriber %d: ISP index %d of %d", i, isp, len(t.ISPs))
		}
		lines = append(lines, fmt.Sprintf("rule add pref %d from %d.%d.%d.%d/32 lookup %d", kernelRulePrefix+i, ip[0], ip[1], ip[2], ip[3], t.ISPs[isp].Table))
	}
	return batch(ctx, app, false, lines)
}

// SetRPS writes the hexadecimal CPU mask to every receive queue's rps_cpus
// of interface dev in namespace ns ("0" turns RPS off): packets received on
// dev are then processed (IP, netfilter, forwarding) on those CPUs instead
// of the one that received them — for a veth, the sender's.
func SetRPS(ctx context.Context, ns, dev, mask string) error {
	if strings.Trim(mask, "0123456789abcdefABCDEF,") != "" || mask == "" {
		return fmt.Errorf("lab: RPS mask %q", mask)
	}
	script := fmt.Sprintf("set -e; n=0; for f in /sys/class/net/%s/queues/rx-*/rps_cpus; do echo %s > \"$f\"; n=$((n+1)); done; [ $n -gt 0 ]", dev, mask)
	if _, err := run(ctx, "ip", "netns", "exec", ns, "sh", "-c", script); err != nil {
		return fmt.Errorf("lab: RPS on %s in %s: %w", dev, ns, err)
	}
	return nil
}

// NetdevDrop adds (on) or removes (off) an nftables netdev ingress chain
// on dev in ns that drops IPv4 to prefix as early as the stack can, before
// IP: the benchmark's sink for frames nobody should forward or route.
func NetdevDrop(ctx context.Context, ns, dev, prefix string, on bool) error {
	table := "ispmux_sink_" + dev
	if !on {
		return nft(ctx, ns, fmt.Sprintf("table netdev %s\ndelete table netdev %[1]s\n", table))
	}
	return nft(ctx, ns, fmt.Sprintf(`table netdev %[1]s
delete table netdev %[1]s
add table netdev %[1]s
add chain netdev %[1]s in { type filter hook ingress device %[2]q priority 0; policy accept; }
add rule netdev %[1]s in ip daddr %[3]s drop
`, table, dev, prefix))
}

// SetGRO turns GRO on dev in ns on or off. On a veth, GRO also turns on
// its NAPI receive path, which XDP_REDIRECT into its peer needs (ispmux's
// fast path redirects into the appliance's ports; their peers are the
// ISP routers' and subscribers' ends).
func SetGRO(ctx context.Context, ns, dev string, on bool) error {
	v := "off"
	if on {
		v = "on"
	}
	if _, err := run(ctx, "ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", v); err != nil {
		return fmt.Errorf("lab: GRO %s on %s in %s: %w", v, dev, ns, err)
	}
	return nil
}

// ThreadedNAPI turns on threaded NAPI for dev in ns (its receive polling,
// and an XDP program attached to it, then run in a kernel thread rather
// than in the softirq of whichever CPU scheduled them) and pins the
// threads it created to cpu. The returned func turns it off again.
func ThreadedNAPI(ctx context.Context, ns, dev, cpu string) (func(context.Context) error, error) {
	before := napiThreads(dev)
	set := func(ctx context.Context, v string) error {
		if _, err := run(ctx, "ip", "netns", "exec", ns, "sh", "-c", fmt.Sprintf("echo %s > /sys/class/net/%s/threaded", v, dev)); err != nil {
			return fmt.Errorf("lab: threaded NAPI %s on %s in %s: %w", v, dev, ns, err)
		}
		return nil
	}
	off := func(ctx context.Context) error { return set(ctx, "0") }
	// Undone on failure even when ctx is what failed.
	undo := func() error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		return off(cctx)
	}
	if err := set(ctx, "1"); err != nil {
		return nil, errors.Join(err, undo())
	}
	var pids []int
	for pid := range napiThreads(dev) {
		if !before[pid] {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		return nil, errors.Join(fmt.Errorf("lab: threaded NAPI on %s in %s: no NAPI thread appeared", dev, ns), undo())
	}
	for _, pid := range pids {
		if _, err := run(ctx, "taskset", "-p", "-c", cpu, strconv.Itoa(pid)); err != nil {
			return nil, errors.Join(fmt.Errorf("lab: pinning NAPI thread %d of %s: %w", pid, dev, err), undo())
		}
	}
	return off, nil
}

// napiThreads returns the kernel threads named napi/DEV-ID (the name is
// cut at 15 bytes, as the kernel cuts it).
func napiThreads(dev string) map[int]bool {
	prefix := "napi/" + dev + "-"
	if len(prefix) > 15 {
		prefix = prefix[:15]
	}
	out := map[int]bool{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err == nil && strings.HasPrefix(string(b), prefix) {
			out[pid] = true
		}
	}
	return out
}
