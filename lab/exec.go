package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Running commands: in the root namespace (run, ipn, sysctl) and inside the
// lab's namespaces (Topology.Cmd, Topology.Run), reading a link's counters
// (LinkStats), and the processes a namespace holds, which Down stops
// (nsPids, termNS, killNS).

// injectFault, when set by a test, makes every command containing it fail.
var injectFault string

// run runs a command in the root namespace; the error names the command and
// carries its output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	if injectFault != "" && strings.Contains(name+" "+strings.Join(args, " "), injectFault) {
		return "", fmt.Errorf("lab: %s %s: injected fault", name, strings.Join(args, " "))
	}
	cmd := exec.CommandContext(ctx, name, args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		return out.String(), fmt.Errorf("lab: %s %s: %v: %s", name, strings.Join(args, " "), err, msg)
	}
	return out.String(), nil
}

// ipn runs `ip -n ns args...`.
func ipn(ctx context.Context, ns string, args ...string) error {
	_, err := run(ctx, "ip", append([]string{"-n", ns}, args...)...)
	return err
}

// sysctl sets kernel parameters inside ns.
func sysctl(ctx context.Context, ns string, kv ...string) error {
	_, err := run(ctx, "ip", append([]string{"netns", "exec", ns, "sysctl", "-q", "-w"}, kv...)...)
	return err
}

// bridgeNFOff turns off, in ns, the bridge's calls into netfilter
// (net.bridge.bridge-nf-call-*), where br_netfilter is loaded (else there
// are none and nothing to do).
func bridgeNFOff(ctx context.Context, ns string) error {
	if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
		return nil
	}
	return sysctl(ctx, ns, "net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0", "net.bridge.bridge-nf-call-arptables=0")
}

// Cmd returns `ip netns exec ns name args...`.
func (t *Topology) Cmd(ctx context.Context, ns string, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Run runs name in ns and returns its combined output; the error includes it.
func (t *Topology) Run(ctx context.Context, ns string, name string, args ...string) (string, error) {
	out, err := t.Cmd(ctx, ns, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lab: in %s: %s %s: %v: %s", ns, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// LinkStats returns the packet counters of ifname in ns.
func LinkStats(ns, ifname string) (rx, tx, rxDropped uint64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := run(ctx, "ip", "-n", ns, "-s", "-j", "link", "show", "dev", ifname)
	if err != nil {
		return 0, 0, 0, err
	}
	var links []struct {
		Stats struct {
			RX struct{ Packets, Dropped uint64 } `json:"rx"`
			TX struct{ Packets uint64 }          `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return 0, 0, 0, fmt.Errorf("lab: link stats of %s in %s: %w", ifname, ns, err)
	}
	if len(links) != 1 {
		return 0, 0, 0, fmt.Errorf("lab: link stats of %s in %s: %d links", ifname, ns, len(links))
	}
	s := links[0].Stats
	return s.RX.Packets, s.TX.Packets, s.RX.Dropped, nil
}

// nsPids returns the processes in ns (zombies excluded: they have no
// namespace left).
func nsPids(ctx context.Context, ns string) ([]int, error) {
	out, err := run(ctx, "ip", "netns", "pids", ns)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, p := range strings.Fields(out) {
		if pid, err := strconv.Atoi(p); err == nil && pid > 1 {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// termNS sends SIGTERM to every process in the namespaces nss and waits
// until none is left there, grace has passed or ctx is done. Whatever is
// left (and any error listing the processes) is killNS's.
func termNS(ctx context.Context, nss []string, grace time.Duration) {
	var busy []string
	for _, ns := range nss {
		pids, _ := nsPids(ctx, ns)
		if len(pids) > 0 {
			busy = append(busy, ns)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(grace)
	for len(busy) > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
		left := busy[:0]
		for _, ns := range busy {
			if pids, err := nsPids(ctx, ns); err == nil && len(pids) > 0 {
				left = append(left, ns)
			}
		}
		busy = left
	}
}

// killNS sends SIGKILL to every process in ns and waits briefly for them.
func killNS(ctx context.Context, ns string) error {
	for attempt := 0; attempt < 20; attempt++ {
		pids, err := nsPids(ctx, ns)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("lab: processes in %s survive SIGKILL", ns)
}
