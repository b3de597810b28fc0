package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The subscribers' DHCP clients: the scripts the lab ships for dhclient and
// busybox udhcpc, the commands that run them in a subscriber's namespace,
// and the address a client configured (SubAddr).

// dhclientConfText makes dhclient ask for what the lab's script uses, and
// for the DNS servers and the captive-portal URI (RFC 8910, option 114)
// the portal tests read from its lease file (the script ignores them).
const dhclientConfText = `# dhclient.conf of the ispmux lab (package lab)
option captive-portal code 114 = text;
request subnet-mask, broadcast-address, routers, dhcp-lease-time, dhcp-renewal-time, dhcp-rebinding-time, domain-name-servers, captive-portal;
`

// DhclientScript is the dhclient script (-sf) the lab ships: it sets the
// address and the default route only and never touches resolv.conf.
const DhclientScript = `#!/bin/sh
# dhclient-script of the ispmux lab (package lab): sets the address, prefix
# and default route of $interface only; never touches resolv.conf.
unset_all() {
	ip -4 route del default dev "$interface" 2>/dev/null
	ip -4 addr flush dev "$interface"
}
set_lease() {
	# The route first (onlink: before the address makes the router's
	# subnet on-link), so that the address is never there without it:
	# a test that waits for the address, then pings off the subnet, got
	# "Network is unreachable" in between. Onlink with no address yet
	# needs the namespace's local table, there once lo is up (build
	# sets it up in every namespace): without it, "Nexthop has invalid
	# gateway".
	for r in ${new_routers:-}; do
		ip route replace default via "$r" dev "$interface" onlink || exit 1
		break
	done
	ip addr replace "$new_ip_address/${new_subnet_mask:-255.255.255.255}" dev "$interface" || exit 1
}
case "$reason" in
PREINIT)
	ip link set dev "$interface" up
	;;
BOUND|REBOOT)
	unset_all
	set_lease
	;;
RENEW|REBIND)
	if [ "${old_ip_address:-}" != "$new_ip_address" ] || [ "${old_subnet_mask:-}" != "${new_subnet_mask:-}" ]; then
		unset_all
	fi
	set_lease
	;;
EXPIRE|FAIL|RELEASE|STOP)
	unset_all
	;;
TIMEOUT)
	unset_all
	exit 1
	;;
esac
exit 0
`

// UdhcpcScript is the busybox udhcpc script (-s) the lab ships.
const UdhcpcScript = `#!/bin/sh
# udhcpc script of the ispmux lab (package lab): sets the address, prefix and
# default route of $interface only; never touches resolv.conf.
unset_all() {
	ip -4 route del default dev "$interface" 2>/dev/null
	ip -4 addr flush dev "$interface"
}
case "$1" in
deconfig)
	unset_all
	ip link set dev "$interface" up
	;;
bound|renew)
	cur=$(ip -4 -o addr show dev "$interface" | awk '{print $4}')
	if [ "$1" = bound ] || [ "$cur" != "$ip/${mask:-32}" ]; then
		unset_all
	fi
	# The route first (onlink), as the dhclient script does.
	for r in ${router:-}; do
		ip route replace default via "$r" dev "$interface" onlink || exit 1
		break
	done
	ip addr replace "$ip/${mask:-${subnet:-32}}" dev "$interface" || exit 1
	;;
esac
exit 0
`

// ScriptPaths returns the dhclient and udhcpc scripts of a DHCP lab.
func (t *Topology) ScriptPaths() (dhclient, udhcpc string) {
	return filepath.Join(t.StateDir, dhclientShell), filepath.Join(t.StateDir, udhcpcShell)
}

// DhclientFiles returns the lease and pid files of sub's dhclient.
func (t *Topology) DhclientFiles(sub Sub) (leaseFile, pidFile string) {
	return filepath.Join(t.StateDir, "dhclient-"+sub.Name+".leases"), filepath.Join(t.StateDir, "dhclient-"+sub.Name+".pid")
}

func (t *Topology) dhclientArgs(sub Sub, extra []string, flags ...string) []string {
	script, _ := t.ScriptPaths()
	lf, pf := t.DhclientFiles(sub)
	args := append([]string{"netns", "exec", sub.NS, "dhclient"}, flags...)
	args = append(args, "-4", "-cf", filepath.Join(t.StateDir, dhclientConf), "-sf", script, "-lf", lf, "-pf", pf)
	args = append(args, extra...)
	return append(args, sub.If)
}

// Dhclient returns `ip netns exec NS dhclient -d -4 -cf CONF -sf SCRIPT -lf
// LEASES -pf PID [extraArgs] eth0` for subscriber sub of a DHCP lab, with the
// lab's files (DhclientScript; lease and pid file per subscriber in the
// state dir). dhclient stays in the foreground: the caller starts it and
// kills it (or calls DhclientRelease).
func (t *Topology) Dhclient(ctx context.Context, sub Sub, extraArgs ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", t.dhclientArgs(sub, extraArgs, "-d")...)
}

// DhclientRelease runs `dhclient -r` with sub's lease and pid files: it
// stops sub's running dhclient, sends a DHCPRELEASE and removes the address.
func (t *Topology) DhclientRelease(ctx context.Context, sub Sub) error {
	_, err := t.DhclientReleaseOutput(ctx, sub)
	return err
}

// DhclientReleaseOutput is DhclientRelease, and returns what dhclient -r
// printed (its "DHCPRELEASE of … to …" line says what it sent).
//
// dhclient -r sends the RELEASE on its kernel UDP socket, to the server's
// address, and runs its script's RELEASE at once, which flushes the
// address; removing a device's last address flushes its neighbours too,
// with a RELEASE still queued for the server's ARP answer. A client in use
// has its gateway in the neighbour table; a lab subscriber that only ran
// DHCP (on dhclient's packet socket) has not, and its RELEASE was lost
// whenever the answer took more than the few milliseconds before the flush
// (ispmux on a loaded machine). So the server's neighbour is resolved first
// (one ping, its outcome ignored: the release goes ahead either way).
func (t *Topology) DhclientReleaseOutput(ctx context.Context, sub Sub) (string, error) {
	if _, ok := t.SubAddr(ctx, sub); ok {
		lf, _ := t.DhclientFiles(sub)
		_, _ = run(ctx, "ip", "netns", "exec", sub.NS, "ping", "-c", "1", "-W", "1", "-q", leaseServer(lf))
	}
	out, err := exec.CommandContext(ctx, "ip", t.dhclientArgs(sub, nil, "-r")...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lab: dhclient -r in %s: %v: %s", sub.NS, err, lastLines(string(out), 5))
	}
	return string(out), nil
}

// leaseServer is the server identifier of the last lease in dhclient's
// lease file lf (the server its RELEASE goes to); Gateway (the address
// ispmux answers as) when the file names none.
func leaseServer(lf string) string {
	b, err := os.ReadFile(lf)
	if err != nil {
		return Gateway
	}
	server := Gateway
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "option dhcp-server-identifier "); ok {
			if a, err := netip.ParseAddr(strings.TrimSuffix(v, ";")); err == nil {
				server = a.String()
			}
		}
	}
	return server
}

// Udhcpc returns `ip netns exec NS busybox udhcpc -f -i eth0 -s SCRIPT
// [extraArgs]` for subscriber sub of a DHCP lab (UdhcpcScript).
func (t *Topology) Udhcpc(ctx context.Context, sub Sub, extraArgs ...string) *exec.Cmd {
	_, script := t.ScriptPaths()
	args := []string{"netns", "exec", sub.NS, "busybox", "udhcpc", "-f", "-i", sub.If, "-s", script}
	return exec.CommandContext(ctx, "ip", append(args, extraArgs...)...)
}

// SubAddr returns the IPv4 address currently on sub's interface (the first
// one, with its prefix length); false when there is none.
func (t *Topology) SubAddr(ctx context.Context, sub Sub) (netip.Prefix, bool) {
	out, err := run(ctx, "ip", "-n", sub.NS, "-j", "-4", "addr", "show", "dev", sub.If)
	if err != nil {
		return netip.Prefix{}, false
	}
	var links []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if json.Unmarshal([]byte(out), &links) != nil {
		return netip.Prefix{}, false
	}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if ip, err := netip.ParseAddr(a.Local); err == nil && ip.Is4() {
				return netip.PrefixFrom(ip, a.PrefixLen), true
			}
		}
	}
	return netip.Prefix{}, false
}
