package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ispmux/ispmux/lab"
	"github.com/ispmux/ispmux/subscribers"
)

// The lab's peers for bench dhcp: Kea restarted between cases, dhcrelay
// switched on and off, the durable bindings counted in ispmux's store,
// perfdhcp straight to Kea.

// restartKea stops the ISP's Kea, empties its lease file and starts it
// again, detached like lab.Up does; it returns when Kea listens.
func (d *dhcpBencher) restartKea(ctx context.Context) error {
	isp := d.t.ISPs[0]
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", isp.NS).Output()
	if err != nil {
		return fmt.Errorf("ip netns pids %s: %w", isp.NS, err)
	}
	var keas []int
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile("/proc/" + f + "/comm"); err == nil && strings.TrimSpace(string(comm)) == "kea-dhcp4" {
			keas = append(keas, pid)
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	for _, pid := range keas {
		for i := 0; syscall.Kill(pid, 0) == nil; i++ {
			if i == 50 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return err
			}
			if i > 100 {
				return fmt.Errorf("kea-dhcp4 (pid %d) survives SIGKILL", pid)
			}
		}
	}
	// Kea's lease file and log go to a tmpfs (keaDir), not the disk that
	// ispmux fsyncs: an ISP's server does not share the appliance's disk,
	// and Kea's file appends must not depend on ispmux's journal commits.
	if err := os.RemoveAll(d.keaDir); err != nil {
		return err
	}
	if err := os.MkdirAll(d.keaDir, 0o755); err != nil {
		return err
	}
	cfg, err := keaConfigOn(isp.KeaConfig, d.keaDir)
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(d.keaDir, "kea.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", isp.NS, "kea-dhcp4", "-c", cfg)
	cmd.Env = append(os.Environ(), "KEA_PIDFILE_DIR="+d.keaDir, "KEA_LOCKFILE_DIR="+d.keaDir, "KEA_LOGGER_DESTINATION="+filepath.Join(d.keaDir, "kea.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start kea-dhcp4: %w", err)
	}
	go func() { _ = cmd.Wait() }() // lab.Down kills it
	d.kea = cmd.Process.Pid        // ip netns exec execs kea-dhcp4
	if err := d.waitUDP67(ctx, isp.NS, "kea-dhcp4"); err != nil {
		return err
	}
	// Kea is the ISP, not under test: a real one has its own CPUs. Here
	// it shares 2 with the generator and the system under test; left to
	// the scheduler it fell behind in some runs (its socket overflowing
	// with both CPUs half idle), its clients' retransmissions fed the
	// backlog and exchanges of the system measured failed. It runs on the
	// generator's CPU, never the measured system's, ahead of the generator:
	// at nice -10 its part of an exchange still had a p99 of 1.4 to 36 ms
	// from one run to the next (the generator and the legs' capture share
	// that CPU), most of the relays' tail at 2000/s. SCHED_FIFO runs it
	// as soon as a request wakes it, as a server on its own CPU would.
	gen, _ := strconv.Atoi(genCPU)
	if err := placeThreads(d.kea, keaNice, gen); err != nil {
		return err
	}
	if d.o.keaRealtime {
		return realtimeThreads(d.kea, keaRTPriority)
	}
	return nil
}

// keaConfigOn writes a copy of the Kea configuration at path with its
// lease file and log files in dir, and returns the copy's path.
func keaConfigOn(path, dir string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	d4, _ := m["Dhcp4"].(map[string]any)
	if d4 == nil {
		return "", fmt.Errorf("%s: no Dhcp4", path)
	}
	if ldb, _ := d4["lease-database"].(map[string]any); ldb != nil {
		ldb["name"] = filepath.Join(dir, "leases4.csv")
	}
	loggers, _ := d4["loggers"].([]any)
	for _, l := range loggers {
		lm, _ := l.(map[string]any)
		outs, _ := lm["output_options"].([]any)
		for _, o := range outs {
			if om, _ := o.(map[string]any); om != nil {
				if out, _ := om["output"].(string); strings.HasPrefix(out, "/") {
					om["output"] = filepath.Join(dir, "kea.log")
				}
			}
		}
	}
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "kea.json")
	return p, os.WriteFile(p, out, 0o644)
}

// waitUDP67 waits until something listens on UDP port 67 in ns.
func (d *dhcpBencher) waitUDP67(ctx context.Context, ns, what string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := d.t.Run(ctx, ns, "ss", "-Hnul", "sport", "=", ":67")
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not listen on UDP 67 in %s after 15s", what, ns)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// durableBindings counts the generator clients' bindings on access in the
// store file at path (ispmux must have exited).
func durableBindings(path, access string) (int, error) {
	s, err := subscribers.Open(path, subscribers.Options{})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	bs, err := s.Bindings()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, b := range bs {
		if b.Access == access && b.MAC[0] == genMACPrefix[0] && b.MAC[1] == genMACPrefix[1] {
			n++
		}
	}
	return n, nil
}

// relayOn gives the appliance namespace the addresses a kernel relay needs
// (acc1 the gateway /16, upa our uplink address) and forwarding; off
// removes them (lab.KernelRouter off).
func (d *dhcpBencher) relayOn(ctx context.Context, access bool) error {
	app := d.t.Appliance.NS
	if access {
		if _, err := d.t.Run(ctx, app, "ip", "addr", "replace", lab.Gateway+"/16", "dev", d.t.Generator.Access); err != nil {
			return err
		}
		if _, err := d.t.Run(ctx, app, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
			return err
		}
	}
	_, err := d.t.Run(ctx, app, "ip", "addr", "replace", lab.OurAddr, "dev", d.t.Appliance.Uplinks[0].Name)
	return err
}

func (d *dhcpBencher) relayOff(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return d.t.KernelRouter(cctx, false)
}

// runDirect measures case kea_direct: perfdhcp straight to Kea.
func (d *dhcpBencher) runDirect(ctx context.Context, c *DHCPCase) (err error) {
	if err := d.b.detachLeftovers(ctx); err != nil {
		return err
	}
	if err := d.restartKea(ctx); err != nil {
		return err
	}
	defer func() {
		if oerr := d.relayOff(ctx); oerr != nil && err == nil {
			err = oerr
		}
	}()
	if err := d.relayOn(ctx, false); err != nil {
		return err
	}
	// Resolve the router first (ARP), as the other cases' relays did.
	_, _ = d.t.Run(ctx, d.t.Appliance.NS, "ping", "-c", "1", "-W", "1", d.t.ISPs[0].RouterAddr)
	before := readCPU(d.kea)
	var out bytes.Buffer
	p, err := startChild("perfdhcp", d.perfdhcpArgv(c.OfferedRate), &out, syscall.SIGINT)
	if err != nil {
		return err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = p.stop(syscall.SIGINT, 5*time.Second)
		return ctx.Err()
	}
	after := readCPU(d.kea)
	var ee *exec.ExitError
	if p.err != nil && !(errors.As(p.err, &ee) && ee.ExitCode() == 3) { // 3: some exchanges incomplete
		return fmt.Errorf("perfdhcp: %v: %s%s", p.err, lastLinesOf(out.String(), 5), p.tail())
	}
	ps, err := parsePerfdhcp(out.String())
	if err != nil {
		return fmt.Errorf("perfdhcp output: %w: %s", err, lastLinesOf(out.String(), 10))
	}
	fillFromPerfdhcp(c, ps, d.o.duration.Seconds())
	c.CPUBusyPct = busyPct(before.cpu, after.cpu)
	c.KeaCPUS = procS(before, after, d.kea)
	c.Diagnostics = map[string]any{"perfdhcp": ps}
	return nil
}
