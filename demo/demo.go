// Package demo runs the lab demonstration behind `make demo`: it builds the
// DHCP lab (subscribers behind a shared access network, two ISPs each with a
// validating Kea, ispmux's captive portal on the access port), runs ispmux in
// the appliance namespace, lets real DHCP clients (dhclient and busybox
// udhcpc) obtain leases from their chosen ISPs through ispmux, shows the
// result (subscriber → ISP → address, traffic to the ISP's host, refused and
// unregistered subscribers), then onboards a device nobody registered: its
// onboarding lease, the walled garden, the portal driven by a Go HTTP client
// from inside the device's namespace, and the handover to the ISP it chose;
// then ispmux's bindings and events. It keeps forwarding until interrupted,
// then removes everything: the lab, and the demo's directory (ispmux's
// config, log and state) unless --keep asks to keep it or the demo failed
// (the log says why).
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/lab"
	"github.com/ispmux/ispmux/tenants"
)

// Main runs `ispmux demo [--id ID] [--lease 60s] [--exit] [--keep]`.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.String("id", lab.DefaultID, "lab ID (namespace prefix)")
	lease := fs.Duration("lease", time.Minute, "lease time the ISPs grant")
	exit := fs.Bool("exit", false, "exit after showing the results instead of forwarding until interrupted")
	keep := fs.Bool("keep", false, "keep the demo's directory (ispmux's config, log and state) at the end")
	if err := fs.Parse(args); err != nil {
		return err
	}
	exe, err := executable()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "demo: building lab %q (2 ISPs running Kea, 6 subscribers, the captive portal)...\n", *id)
	topo, err := lab.Up(ctx, lab.Options{ID: *id, Subscribers: 6, DHCP: true, LeaseTime: *lease,
		Portal: true, API: true, Unconfigured: []string{newSub}, KeaKnown: map[string][]string{newISP: {newCustomer}}})
	if err != nil {
		return err
	}
	defer func() {
		_ = lab.Down(context.Background(), *id)
		fmt.Fprintf(stdout, "demo: lab %q removed\n", *id)
	}()
	dir, err := os.MkdirTemp("", "ispmux-demo-")
	if err != nil {
		return err
	}
	// Runs after ispmux has stopped and its log is closed (deferred
	// below). An interrupted start is not a failure.
	defer func() { finishDir(stdout, dir, *keep, err != nil && ctx.Err() == nil) }()
	cfg := filepath.Join(dir, "ispmux.toml")
	if err := os.WriteFile(cfg, topo.ConfigTOML(filepath.Join(dir, "state")), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "ispmux.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	ispmux := exec.Command("ip", "netns", "exec", topo.Appliance.NS, exe, "run", "-c", cfg)
	ispmux.Stdout, ispmux.Stderr = logf, logf
	ispmux.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := ispmux.Start(); err != nil {
		return err
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = ispmux.Process.Signal(syscall.SIGTERM)
			_ = ispmux.Wait()
		}
	}
	defer stop()
	fmt.Fprintf(stdout, "demo: ispmux running in %s (config %s, log %s)\n", topo.Appliance.NS, cfg, logf.Name())
	sock := filepath.Join(dir, "state", appliance.SocketName)
	if err := waitReady(ctx, sock); err != nil {
		return fmt.Errorf("demo: ispmux not ready: %w (see %s)", err, logf.Name())
	}
	if err := showAPI(ctx, stdout, topo); err != nil {
		return fmt.Errorf("demo: the management API: %w (see %s)", err, logf.Name())
	}
	if err := registerCustomer(ctx, sock); err != nil {
		return fmt.Errorf("demo: registering customer %s at %s: %w", newCustomer, newISP, err)
	}
	fmt.Fprintf(stdout, "demo: %s registered customer %s (with a password) through the control socket, as `ispmux ctl customer-add` does; %s's device %s is registered nowhere\n",
		newISP, newCustomer, newCustomer, newSub)
	pool := netip.MustParsePrefix(lab.OnboardingPool)
	onboarded := func(s lab.Sub) bool {
		a, ok := topo.SubAddr(ctx, s)
		return ok && pool.Contains(a.Addr())
	}

	// Real DHCP clients: dhclient on s1, s3, s4 and s6, udhcpc on s2 and s5.
	var clients []*exec.Cmd
	defer func() {
		for _, c := range clients {
			if c.Process != nil {
				_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
				_ = c.Wait()
			}
		}
	}()
	for _, s := range topo.Subscribers {
		var c *exec.Cmd
		if s.Name == "s2" || s.Name == "s5" {
			c = topo.Udhcpc(context.Background(), s)
		} else {
			c = topo.Dhclient(context.Background(), s)
		}
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			return err
		}
		clients = append(clients, c)
	}
	fmt.Fprintln(stdout, "demo: DHCP clients started (dhclient on s1 s3 s4 s6, udhcpc on s2 s5); waiting for leases...")
	newDev := sub(topo, newSub)
	wait := time.After(12 * time.Second)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return nil
		case <-wait:
			done = true
		case <-time.After(500 * time.Millisecond):
			done = allValidBound(ctx, topo) && onboarded(newDev)
		}
	}
	// The refused subscriber's ISP stays silent: ispmux's timeout shows in
	// the events, printed at least this late.
	eventsAt := time.Now().Add(5 * time.Second)

	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(stdout)
	fmt.Fprintln(tw, "SUBSCRIBER\tMAC\tCUSTOMER\tCHOSEN ISP\tADDRESS (from the ISP, via ispmux)\tPING ISP HOST\tROLE")
	for _, s := range topo.Subscribers {
		addr, res := "-", "-"
		isp, cust, role := s.ISP, s.CustomerID, s.Role
		switch {
		case s.Name == newSub:
			isp, cust, role = "", "-", "new device (registered nowhere)"
		case s.Role == lab.RoleUnregistered:
			// The lab names every device's customer, but this one's is
			// in no configuration and no store: nothing to show.
			cust = "-"
		}
		if p, ok := topo.SubAddr(ctx, s); ok && pool.Contains(p.Addr()) {
			addr, res, isp = p.String()+" (onboarding, from ispmux)", "- (walled garden)", "(none yet)"
		} else if ok {
			addr = p.String()
			res = "FAILED"
			if ping(ctx, s.NS, lab.HostAddr) {
				res = "ok"
			}
		}
		if isp == "" {
			isp = "(none)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.MAC, cust, isp, addr, res, role)
	}
	tw.Flush()
	fmt.Fprintln(stdout, "(both ISPs hand out 100.64.0.100-199: their plans overlap, the VRFs keep them apart;")
	fmt.Fprintf(stdout, " a device without a registration gets an onboarding lease from %s and sees only the portal)\n", lab.OnboardingPool)

	if err := onboarding(ctx, stdout, topo, sock, newDev); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	st, err := ctlsock.FetchStatus(ctx, sock)
	if err != nil {
		return err
	}
	printBindings(ctx, stdout, topo, st)

	if d := time.Until(eventsAt); d > 0 {
		time.Sleep(d)
	}
	fmt.Fprintln(stdout, "\nevents (ispmux ctl events):")
	evs, err := ctlsock.FetchEvents(ctx, sock, 0)
	if err == nil {
		for _, e := range evs {
			who := e.MAC
			if who == "" || who == "00:00:00:00:00:00" { // a customer's event
				who = "customer " + e.Customer
			}
			fmt.Fprintf(stdout, "  %s  %-16s %-17s %-6s %-15s %s\n", e.Time.UTC().Format("15:04:05Z"), e.Kind, who, e.ISP, e.IP, e.Reason)
		}
	}
	if st, err := ctlsock.FetchStatus(ctx, sock); err == nil {
		fmt.Fprintf(stdout, "\nleases held: %d; DHCP counters: %s\n", st.Leases, counters(st.DHCP))
		if st.Portal != nil {
			fmt.Fprintf(stdout, "portal counters: %s\n", portalCounters(st.Portal.Counters))
		}
	}
	if *exit {
		return nil
	}
	fmt.Fprintf(stdout, "\nispmux keeps forwarding. Try:\n  ip netns exec %s-%s ping %s\n  %s ctl -c %s status\n", *id, newSub, lab.HostAddr, exe, cfg)
	fmt.Fprintf(stdout, "  ip netns exec %s curl -sS -H \"Authorization: Bearer $(cat %s)\" http://%s/v1/isps/%s/customers   # beta's API (docs/API.md)\n",
		topo.Appliance.NS, topo.API.ISPFile[newISP], lab.APIListen, newISP)
	fmt.Fprintf(stdout, "  ip netns exec %s curl -sS http://%s/metrics | grep '^ispmux_dhcp'\nCtrl-C stops ispmux and removes the lab.\n", topo.Appliance.NS, lab.MetricsListen)
	select {
	case <-ctx.Done():
	case <-waitExit(ispmux):
		stopped = true
		return errors.New("demo: ispmux exited; see " + logf.Name())
	}
	return nil
}

// finishDir removes the demo's directory, or keeps it when asked to or
// when the demo failed (its log says why), and says which.
func finishDir(w io.Writer, dir string, keep, failed bool) {
	switch {
	case failed:
		fmt.Fprintf(w, "demo: kept %s (ispmux.toml, ispmux.log, state/) to see what went wrong; remove it when done\n", dir)
	case keep:
		// The configuration names the lab's token files and the portal's
		// certificate, which lab down removed: `check` and `run` of it
		// fail for them (a trial's `ispmux check` of the kept file).
		fmt.Fprintf(w, "demo: kept %s (ispmux.toml, ispmux.log, state/); the token files and portal certificate its ispmux.toml names were the lab's and went with it\n", dir)
	default:
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(w, "demo: removing %s: %v\n", dir, err)
			return
		}
		fmt.Fprintf(w, "demo: removed %s (ispmux's config, log and state; --keep keeps them)\n", dir)
	}
}

// executable is the ispmux binary the demo runs (the test's is built).
var executable = os.Executable

// sub returns the lab's subscriber name.
func sub(topo *lab.Topology, name string) lab.Sub {
	for _, s := range topo.Subscribers {
		if s.Name == name {
			return s
		}
	}
	return lab.Sub{Name: name}
}

// printBindings prints ispmux's bindings (ctl status) by subscriber, each
// with a ping of its ISP's host, and the devices still in the walled garden.
func printBindings(ctx context.Context, w io.Writer, topo *lab.Topology, st *ctlsock.Status) {
	byMAC := map[string]lab.Sub{}
	for _, s := range topo.Subscribers {
		byMAC[s.MAC] = s
	}
	fmt.Fprintln(w, "\nsubscriber → ISP (ispmux ctl status: bindings):")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SUBSCRIBER\tMAC\tISP\tADDRESS\tLEASE UNTIL\tPING ISP HOST")
	for _, b := range st.Bindings {
		s, ok := byMAC[b.MAC]
		name, res := "?", "-"
		if ok {
			name, res = s.Name, "FAILED"
			if ping(ctx, s.NS, lab.HostAddr) {
				res = "ok"
			}
		}
		exp := b.Expires
		if t, err := time.Parse(time.RFC3339, exp); err == nil {
			exp = t.UTC().Format("15:04:05Z")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", name, b.MAC, b.ISP, b.IP, exp, res)
	}
	for _, o := range st.Onboarding {
		name := "?"
		if s, ok := byMAC[o.MAC]; ok {
			name = s.Name
		}
		fmt.Fprintf(tw, "  %s\t%s\t(walled garden)\t%s\t\t-\n", name, o.MAC, o.IP)
	}
	tw.Flush()
}

func portalCounters(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v > 0 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

func allValidBound(ctx context.Context, topo *lab.Topology) bool {
	for _, s := range topo.Subscribers {
		if s.Role == lab.RoleValid {
			if _, ok := topo.SubAddr(ctx, s); !ok {
				return false
			}
		}
	}
	return true
}

func waitExit(c *exec.Cmd) <-chan struct{} {
	ch := make(chan struct{})
	go func() { _ = c.Wait(); close(ch) }()
	return ch
}

func waitReady(ctx context.Context, sock string) error {
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		st, err := ctlsock.FetchStatus(ctx, sock)
		if err == nil {
			ready := true
			for _, i := range st.ISPs {
				ready = ready && i.State == "reachable"
			}
			if ready {
				return nil
			}
			last = errors.New("next hops not resolved")
		} else {
			last = err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return last
}

func counters(m map[string]uint64) string {
	var b strings.Builder
	for _, k := range []string{"relayed_discover", "offer", "relayed_request", "ack", "nak", "timeout", "unknown_subscriber",
		"onboarding_grant", "onboarding_handover_nak"} {
		if v, ok := m[k]; ok {
			fmt.Fprintf(&b, "%s=%d ", k, v)
		}
	}
	return strings.TrimSpace(b.String())
}

// showAPI says where the management API listens in the demo and where its
// tokens are, after a GET /v1/isps with the operator's token (from inside
// the appliance's namespace, as the API listens on its loopback) shows it
// answers.
func showAPI(ctx context.Context, w io.Writer, topo *lab.Topology) error {
	ns := topo.Appliance.NS
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialInNS(ctx, ns, network, addr)
		}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+lab.APIListen+"/v1/isps", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+topo.API.Operator)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var isps struct {
		Items []tenants.ISPInfo `json:"items"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&isps) != nil {
		return fmt.Errorf("GET /v1/isps: %s", resp.Status)
	}
	var names []string
	for _, i := range isps.Items {
		names = append(names, fmt.Sprintf("%s (%d customers)", i.Name, i.Customers))
	}
	fmt.Fprintf(w, "demo: management API on http://%s in %s (GET /v1/isps: %s); tokens: %s (operator), %s (installer claims), %s\n",
		lab.APIListen, ns, strings.Join(names, ", "), topo.API.OperatorFile, topo.API.ClaimFile, strings.Join(ispTokenFiles(topo), ", "))
	return nil
}

// ispTokenFiles lists the token file of each ISP of the lab, "NAME:
// FILE", by name (the lab writes some for ISPs it does not run: not
// listed, a trial's token of one was refused).
func ispTokenFiles(topo *lab.Topology) []string {
	var out []string
	for _, isp := range topo.ISPs {
		if f, ok := topo.API.ISPFile[isp.Name]; ok {
			out = append(out, isp.Name+": "+f)
		}
	}
	slices.Sort(out)
	return out
}
