package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/privtest"
	"github.com/ispmux/ispmux/lab"
)

// haStandbyAddr is the second Kea's address on alpha's uplink segment.
const haStandbyAddr = "192.0.2.3"

// haKea is one Kea of an HA pair.
type haKea struct {
	name, addr, cfg, log, leases string
	cmd                          *exec.Cmd
}

// startKeaHA replaces alpha's Kea by a Kea HA pair (mode hot-standby or
// load-balancing) at lab.RouterAddr (primary) and haStandbyAddr
// (standby/secondary), HA over HTTP with the dedicated listener of Kea 2.2
// (no control agent), and makes ispmux name both.
// tuning overrides the HA hook's parameters (the test's own failure
// detection).
func (r *rig) startKeaHA(t *testing.T, mode string, tuning map[string]any) []*haKea {
	t.Helper()
	for _, h := range []string{"libdhcp_ha.so", lab.LeaseCmdsHook} {
		if lab.KeaHookPath(h) == "" {
			t.Fatalf("no Kea hook %s (Debian's kea-common, a dependency of kea-dhcp4-server)", h)
		}
	}
	isp := r.topo.ISPs[0]
	r.killInNS(isp.NS, "kea-dhcp4", syscall.SIGTERM)
	for deadline := time.Now().Add(5 * time.Second); r.killInNS(isp.NS, "kea-dhcp4", 0) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Kea in %s still running", isp.NS)
		}
	}
	if out, err := exec.Command("ip", "netns", "exec", isp.NS, "ip", "addr", "add", haStandbyAddr+"/24", "dev", isp.RouterIf).CombinedOutput(); err != nil {
		t.Fatalf("add %s: %v %s", haStandbyAddr, err, out)
	}
	base, err := r.topo.KeaConfigJSON(0)
	if err != nil {
		t.Fatal(err)
	}
	role2 := "standby"
	if mode == "load-balancing" {
		role2 = "secondary"
	}
	peers := []map[string]any{
		{"name": "kea1", "url": "http://" + lab.RouterAddr + ":8001/", "role": "primary", "auto-failover": true},
		{"name": "kea2", "url": "http://" + haStandbyAddr + ":8001/", "role": role2, "auto-failover": true},
	}
	var keas []*haKea
	for i, addr := range []string{lab.RouterAddr, haStandbyAddr} {
		k := &haKea{name: fmt.Sprintf("kea%d", i+1), addr: addr}
		k.cfg = filepath.Join(r.dir, "ha-"+k.name+".json")
		k.log = filepath.Join(r.dir, "ha-"+k.name+".log")
		k.leases = filepath.Join(r.dir, "ha-"+k.name+".leases4.csv")
		var c map[string]map[string]any
		if err := json.Unmarshal(base, &c); err != nil {
			t.Fatal(err)
		}
		d := c["Dhcp4"]
		d["interfaces-config"] = map[string]any{"interfaces": []string{isp.RouterIf + "/" + addr}, "dhcp-socket-type": "udp"}
		d["lease-database"] = map[string]any{"type": "memfile", "persist": true, "name": k.leases, "lfc-interval": 0}
		d["control-socket"] = map[string]any{"socket-type": "unix", "socket-name": filepath.Join(r.dir, k.name+".sock")}
		d["server-tag"] = k.name
		d["multi-threading"] = map[string]any{"enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 16}
		ha := map[string]any{
			"this-server-name":    k.name,
			"mode":                mode,
			"heartbeat-delay":     1000,
			"max-response-delay":  3000,
			"max-ack-delay":       1000,
			"max-unacked-clients": 0,
			"sync-timeout":        5000,
			"multi-threading": map[string]any{"enable-multi-threading": true, "http-dedicated-listener": true,
				"http-listener-threads": 1, "http-client-threads": 1},
			"peers": peers,
		}
		for k, v := range tuning {
			ha[k] = v
		}
		d["hooks-libraries"] = []any{
			map[string]any{"library": lab.KeaHookPath(lab.LeaseCmdsHook)},
			map[string]any{"library": lab.KeaHookPath("libdhcp_ha.so"), "parameters": map[string]any{
				"high-availability": []any{ha},
			}},
		}
		d["loggers"] = []any{map[string]any{"name": "kea-dhcp4", "output_options": []any{map[string]any{"output": k.log}}, "severity": "INFO"}}
		js, _ := json.MarshalIndent(c, "", "  ")
		if err := os.WriteFile(k.cfg, js, 0o644); err != nil {
			t.Fatal(err)
		}
		r.startHAKea(t, k)
		keas = append(keas, k)
	}
	want := "load-balancing"
	if mode != "load-balancing" {
		want = "hot-standby"
	}
	for _, k := range keas {
		if !waitLog(k.log, "HA_STATE_TRANSITION", 15*time.Second) {
			t.Fatalf("%s: no HA state transition:\n%s", k.name, tail(k.log, 30))
		}
	}
	for _, k := range keas {
		if !waitLog(k.log, "to "+strings.ToUpper(want)+" state", 30*time.Second) {
			t.Fatalf("%s never reached %s:\n%s", k.name, want, tail(k.log, 40))
		}
	}
	// ispmux names both servers.
	cfg, err := os.ReadFile(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	one := "dhcp_servers = [" + strconv.Quote(lab.RouterAddr) + "]"
	if !strings.Contains(string(cfg), one) {
		t.Fatalf("config has no %q", one)
	}
	two := "dhcp_servers = [" + strconv.Quote(lab.RouterAddr) + ", " + strconv.Quote(haStandbyAddr) + "]"
	if err := os.WriteFile(r.cfg, []byte(strings.Replace(string(cfg), one, two, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return keas
}

func (r *rig) startHAKea(t *testing.T, k *haKea) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", r.topo.ISPs[0].NS, "kea-dhcp4", "-c", k.cfg)
	cmd.Env = append(os.Environ(), "KEA_PIDFILE_DIR="+r.dir, "KEA_LOCKFILE_DIR=none")
	out, err := os.OpenFile(k.log+".out", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out.Close()
	k.cmd = cmd
	t.Cleanup(func() { k.kill() })
}

// kill stops k at once (SIGKILL: a crash).
func (k *haKea) kill() {
	if k.cmd == nil || k.cmd.Process == nil {
		return
	}
	_ = k.cmd.Process.Kill() // ip netns exec execs kea-dhcp4
	_ = k.cmd.Wait()
	k.cmd = nil
}

// logEvents logs ispmux's events for the test's record.
func (r *rig) logEvents(t *testing.T) {
	for _, e := range r.events() {
		t.Logf("event %s %s %s %s %s: %s", e.Time.Format("15:04:05.000"), e.Kind, e.MAC, e.ISP, e.IP, e.Reason)
	}
}

// TestKeaHAUnackedDetection: ISP alpha's DHCP is a Kea 2.2 HA pair in
// hot-standby, both servers in ispmux's dhcp_servers, with Kea's failure
// detection as Kea recommends it (max-unacked-clients > 0: the standby
// takes over only after it sees clients whose secs field says they were
// not answered for max-ack-delay). The primary crashes with three dhclient
// subscribers renewing through ispmux: the standby must take over before
// their leases run out, and every binding must survive. Before ispmux's
// renewals carried the time since the ISP's T1 in secs, the standby saw
// only the clients' few seconds and took over once every lease had
// expired. The ISP's leases are 2 min: ispmux relays a renewal to the
// server that granted the lease until the ISP's T2 (7/8 of the lease),
// then to both, so the standby first sees the clients there, counts them
// unacked (secs: the time since T1) and takes over at the second; the
// clients then have the last eighth of their lease to reach it (their
// rebinding retransmissions). With 30 s leases that eighth was under 4 s,
// and once too little on a loaded CI machine (s1's lease ran out 4 s after
// the takeover); with 60 s, s1 renewed 2 s before its end; with 2 min,
// the three renewed 6–7 s before theirs.
func TestKeaHAUnackedDetection(t *testing.T) {
	t.Parallel()
	privtest.Lab(t)
	r := newRig(t, lab.Options{Subscribers: 8, ISPs: 1, DHCP: true, LeaseTime: 2 * time.Minute})
	keas := r.startKeaHA(t, "hot-standby", map[string]any{"max-unacked-clients": 1, "max-ack-delay": 2000})
	r.start()
	defer r.logEvents(t)
	subs := []lab.Sub{r.sub("s1"), r.sub("s3"), r.sub("s6")}
	for _, s := range subs {
		startClient(t, r.topo.Dhclient(context.Background(), s))
		if _, ok := r.waitAddr(s, 20*time.Second); !ok {
			t.Fatalf("%s: no address", s.Name)
		}
	}
	time.Sleep(5 * time.Second)
	keas[0].kill()
	t0 := time.Now()
	if !waitLog(keas[1].log, "to PARTNER-DOWN state", 150*time.Second) {
		t.Errorf("standby not partner-down %v after the primary's crash", time.Since(t0))
	} else {
		t.Logf("standby partner-down after %v", time.Since(t0))
	}
	for end := time.Now().Add(35 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		for _, s := range subs {
			if _, ok := r.bound(s.MAC); !ok {
				t.Errorf("%s lost its binding", s.Name)
			}
		}
	}
	b, _ := os.ReadFile(keas[1].log)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "UNACKED") || strings.Contains(l, "COMMUNICATION_INTERRUPTED") || strings.Contains(l, "STATE_TRANSITION") {
			t.Log(l)
		}
	}
	for _, e := range r.events() {
		if e.Kind == "nak" || e.Kind == "expired" {
			t.Errorf("%s: %s event: %s", e.MAC, e.Kind, e.Reason)
		}
	}
}
