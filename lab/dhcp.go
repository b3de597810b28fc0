package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The DHCP lab's bring-up: its state directory and the ISPs' DHCP servers
// (Kea here; dnsmasq in dnsmasq.go). Kea's configuration is in keaconf.go,
// its lease file in kealease.go, its control channel in keactl.go, and the
// subscribers' DHCP clients in dhcpclient.go.

// DHCP lab addressing (every ISP's Kea hands out the same plan).
const (
	DefaultLeaseTime = 120 * time.Second
	// MinLeaseTime is the shortest lease (seconds) Kea grants a client
	// that asks for one (option 51); without asking, a client gets the
	// lab's lease time.
	MinLeaseTime  = 4
	DHCPSubnet    = "100.64.0.0/24"
	DHCPPoolFirst = "100.64.0.100"
	DHCPPoolLast  = "100.64.0.199"
	DHCPSubnetID  = 1
	RelayAddr     = "192.0.2.2" // giaddr: ispmux's uplink address
	// Options.KeaOpen: one open subnet for every relayed client.
	KeaOpenSubnet    = "100.64.0.0/16"
	KeaOpenPoolFirst = "100.64.1.0"
	KeaOpenPoolLast  = "100.64.254.255"
	// ValidClass is the Kea client class of the subscribers an ISP knows;
	// only it may draw from the pool.
	ValidClass = "VALID"

	stateMarker   = ".ispmux-lab"
	dhclientConf  = "dhclient.conf"
	dhclientShell = "dhclient-script"
	udhcpcShell   = "udhcpc-script"
)

func defaultStateDir(id string) string {
	return filepath.Join(os.TempDir(), "ispmux-lab-"+id)
}

// prepareStateDir creates t.StateDir (with a marker file, so that Down only
// ever removes a directory the lab made). A StateDir other than the default
// is reached from the default path through a symbolic link, which is how
// Down, knowing only the ID, finds it.
func (t *Topology) prepareStateDir() error {
	dir, def := t.StateDir, defaultStateDir(t.ID)
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		if _, err := os.Stat(filepath.Join(dir, stateMarker)); err != nil {
			return fmt.Errorf("lab: state dir %s exists, is not empty and is not a lab's", dir)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateMarker), []byte(t.ID+"\n"), 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if dir != def {
		if err := os.Symlink(dir, def); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	return nil
}

// removeStateDir removes the state directory of lab id (see prepareStateDir).
func removeStateDir(id string) error {
	def := defaultStateDir(id)
	fi, err := os.Lstat(def)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		if target, err := os.Readlink(def); err == nil && filepath.IsAbs(target) {
			if _, err := os.Stat(filepath.Join(target, stateMarker)); err == nil {
				if err := os.RemoveAll(target); err != nil {
					return fmt.Errorf("lab: %w", err)
				}
			}
		}
		if err := os.Remove(def); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		return nil
	}
	if err := os.RemoveAll(def); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// keaEnv is the environment of kea-dhcp4: pid and lock files in the state dir.
func (t *Topology) keaEnv(isp ISP) []string {
	return append(os.Environ(),
		"KEA_PIDFILE_DIR="+t.StateDir,
		"KEA_LOCKFILE_DIR="+t.StateDir,
		"KEA_LOGGER_DESTINATION="+isp.KeaLog)
}

// startDHCP writes the lab's files and starts Kea (or dnsmasq: ISPServer)
// in every ISP namespace.
func (t *Topology) startDHCP(ctx context.Context) error {
	if err := t.prepareStateDir(); err != nil {
		return err
	}
	files := []struct {
		name, text string
		mode       os.FileMode
	}{
		{dhclientConf, dhclientConfText, 0o644},
		{dhclientShell, DhclientScript, 0o755},
		{udhcpcShell, UdhcpcScript, 0o755},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(t.StateDir, f.name), []byte(f.text), f.mode); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	if err := t.API.write(); err != nil {
		return err
	}
	if t.Portal != nil {
		if err := t.Portal.write(); err != nil {
			return err
		}
	}
	if t.ISPServer == ServerDnsmasq {
		return t.startDnsmasqs(ctx)
	}
	for i, isp := range t.ISPs {
		cfg, err := t.KeaConfigJSON(i)
		if err != nil {
			return err
		}
		if err := os.WriteFile(isp.KeaConfig, cfg, 0o644); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		check := t.Cmd(ctx, isp.NS, "kea-dhcp4", "-t", isp.KeaConfig)
		check.Env = t.keaEnv(isp)
		if out, err := check.CombinedOutput(); err != nil {
			return fmt.Errorf("lab: kea-dhcp4 -t %s: %v: %s", isp.KeaConfig, err, lastLines(string(out), 10))
		}
		if err := t.startKea(isp); err != nil {
			return err
		}
	}
	for _, isp := range t.ISPs {
		if err := t.waitUDP(ctx, isp.NS, 67, 15*time.Second); err != nil {
			return fmt.Errorf("lab: Kea of %s: %w (log %s)", isp.Name, err, isp.KeaLog)
		}
		if err := isp.waitKeaSocket(ctx, 15*time.Second); err != nil {
			return fmt.Errorf("lab: Kea of %s: %w (log %s)", isp.Name, err, isp.KeaLog)
		}
	}
	return nil
}

// startKea starts kea-dhcp4 in the ISP's namespace, detached from the
// caller (own session, no context: it outlives Up and is killed by Down).
func (t *Topology) startKea(isp ISP) error {
	out, err := os.OpenFile(strings.TrimSuffix(isp.KeaLog, ".log")+".out", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer out.Close()
	cmd := exec.Command("ip", "netns", "exec", isp.NS, "kea-dhcp4", "-c", isp.KeaConfig)
	cmd.Env = t.keaEnv(isp)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lab: start kea-dhcp4 in %s: %w", isp.NS, err)
	}
	go func() { _ = cmd.Wait() }() // reap it when Down kills it
	return nil
}

// waitUDP waits until something listens on UDP port in ns.
func (t *Topology) waitUDP(ctx context.Context, ns string, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	want := ":" + strconv.Itoa(port)
	for {
		out, err := run(ctx, "ip", "netns", "exec", ns, "ss", "-Hnul")
		if err != nil {
			return err
		}
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) >= 4 && strings.HasSuffix(f[3], want) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on UDP %d in %s after %v", port, ns, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
