package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/lab"
)

// What the lab benchmarks share: waiting for ispmux to forward, clearing
// leftovers between cases, and reading the machine (RSS, memory, kernel).

// bencher holds what the lab benchmarks share: waiting for ispmux and
// clearing XDP programs between cases.
type bencher struct {
	t            *lab.Topology
	logf         func(string, ...any)
	readyTimeout time.Duration // waitReady's; 0: 20 s
	maxRSS       uint64        // waitReady gives up when ispmux's RSS exceeds it; 0: no limit
}

func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// waitReady waits until ispmux answers on its control socket with every
// ISP's next hop reachable, and fails if the process exits first.
func (b *bencher) waitReady(ctx context.Context, p *child, sock string) error {
	limit := b.readyTimeout
	if limit <= 0 {
		limit = 20 * time.Second
	}
	deadline := time.Now().Add(limit)
	last := "no status yet"
	for {
		if p.exited() {
			return fmt.Errorf("ispmux exited before it was ready: %v%s", p.err, p.tail())
		}
		if b.maxRSS > 0 {
			if rss := procRSS(p.pid()); rss > b.maxRSS {
				return fmt.Errorf("ispmux's RSS reached %.1f GB before it was ready (limit %.1f GB: the machine is shared)", float64(rss)/1e9, float64(b.maxRSS)/1e9)
			}
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := ctlsock.FetchStatus(sctx, sock)
		cancel()
		if err == nil {
			ready := len(st.ISPs) == len(b.t.ISPs)
			var states []string
			for _, isp := range st.ISPs {
				states = append(states, isp.Name+"="+isp.State)
				ready = ready && isp.State == "reachable"
			}
			if ready {
				return nil
			}
			last = "next hops " + strings.Join(states, ", ")
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ispmux not ready after %v (%s)%s", limit, last, p.tail())
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// detachLeftovers removes XDP programs a previous case left on the
// appliance's ports (a forwarder that did not exit cleanly), reporting them.
func (b *bencher) detachLeftovers(ctx context.Context) error {
	out, err := b.t.Run(ctx, b.t.Appliance.NS, "ip", "-j", "link", "show")
	if err != nil {
		return err
	}
	var links []struct {
		Name string          `json:"ifname"`
		XDP  json.RawMessage `json:"xdp"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return fmt.Errorf("ip -j link show: %w", err)
	}
	for _, l := range links {
		if len(l.XDP) == 0 {
			continue
		}
		b.logf("warning: XDP program left on %s by the previous case; detaching it", l.Name)
		for _, mode := range []string{"xdpgeneric", "xdpdrv"} {
			_, _ = b.t.Run(ctx, b.t.Appliance.NS, "ip", "link", "set", "dev", l.Name, mode, "off")
		}
	}
	return nil
}

// procRSS is process pid's resident set size in bytes (0 if unknown).
func procRSS(pid int) uint64 { return procKB("/proc/"+strconv.Itoa(pid)+"/status", "VmRSS:") }

// memTotal is the machine's memory in bytes (0 if unknown).
func memTotal() uint64 { return procKB("/proc/meminfo", "MemTotal:") }

// procKB reads the "key   N kB" line of a /proc file, in bytes (0 if the
// file or the line is missing).
func procKB(path, key string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			if f := strings.Fields(v); len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

func kernelRelease() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return ""
	}
	var s []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

var _ = runtime.NumCPU
