package lab

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

const usage = `usage:
  lab up   [--id ID] [--subscribers N] [--isps N] [--generator] [--traffic-subscribers N] [--portal]
           [--dhcp [--isp-server kea|dnsmasq] [--lease-time DUR] [--lab-dir DIR]] [--config FILE --state-dir DIR] [--json]
  lab down [--id ID]
  lab isp-config [kea|dnsmasq]   ISP alpha's DHCP server configuration (docs/ISP-SERVERS.md)`

// Main implements the "lab" subcommand: args are what follows "lab".
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "up":
		fs := flag.NewFlagSet("lab up", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var o Options
		var asJSON bool
		var cfg, stateDir string
		fs.StringVar(&o.ID, "id", DefaultID, "namespace prefix")
		fs.IntVar(&o.Subscribers, "subscribers", 3, "subscriber namespaces")
		fs.IntVar(&o.ISPs, "isps", 2, "ISPs")
		fs.BoolVar(&o.Generator, "generator", false, "add the traffic generator namespace on acc1")
		fs.IntVar(&o.TrafficSubscribers, "traffic-subscribers", 0, "synthetic subscribers on acc1 (with --generator)")
		fs.BoolVar(&o.DHCP, "dhcp", false, "DHCP lab: subscribers without addresses, Kea in every ISP namespace")
		fs.StringVar(&o.ISPServer, "isp-server", ServerKea, "the ISPs' DHCP server: kea or dnsmasq (with --dhcp)")
		fs.DurationVar(&o.LeaseTime, "lease-time", DefaultLeaseTime, "the ISP server's lease time (with --dhcp)")
		fs.BoolVar(&o.Portal, "portal", false, "captive portal and onboarding on acc0 (with --dhcp)")
		fs.StringVar(&o.StateDir, "lab-dir", "", "the lab's own files (Kea configs, leases, logs, client scripts); default /tmp/ispmux-lab-ID")
		fs.BoolVar(&asJSON, "json", false, "print the topology as JSON")
		fs.StringVar(&cfg, "config", "", "also write an ispmux config for the lab to FILE")
		fs.StringVar(&stateDir, "state-dir", "/var/lib/ispmux", "state_dir written into --config")
		if err := fs.Parse(args[1:]); err != nil {
			return parseError(err, stdout)
		}
		if fs.NArg() != 0 {
			return fmt.Errorf("lab up: unexpected arguments %q\n%s", fs.Args(), usage)
		}
		if o.Subscribers < 1 {
			// Options' 0 means the default; on the command line it
			// is a request the lab cannot honour.
			return fmt.Errorf("lab up: --subscribers must be at least 1, got %d", o.Subscribers)
		}
		if !o.DHCP && o.ISPServer == ServerKea {
			o.ISPServer = ""
		}
		t, err := Up(ctx, o)
		if err != nil {
			return err
		}
		if cfg != "" {
			if err := os.MkdirAll(filepath.Dir(cfg), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(cfg, t.ConfigTOML(stateDir), 0o644); err != nil {
				return err
			}
		}
		if asJSON {
			return json.NewEncoder(stdout).Encode(t)
		}
		return t.WriteTable(stdout)
	case "down":
		fs := flag.NewFlagSet("lab down", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		id := fs.String("id", DefaultID, "namespace prefix")
		if err := fs.Parse(args[1:]); err != nil {
			return parseError(err, stdout)
		}
		if fs.NArg() != 0 {
			return fmt.Errorf("lab down: unexpected arguments %q\n%s", fs.Args(), usage)
		}
		return Down(ctx, *id)
	case "isp-config":
		server := ServerKea
		switch len(args) {
		case 1:
		case 2:
			if isHelp(args[1]) {
				return printHelp(stdout)
			}
			server = args[1]
		default:
			return fmt.Errorf("lab isp-config: unexpected arguments %q\n%s", args[2:], usage)
		}
		cfg, err := ISPServerConfig(server)
		if err != nil {
			return err
		}
		_, err = stdout.Write(cfg)
		return err
	case "-h", "--help", "help":
		_, err := fmt.Fprintln(stdout, usage)
		return err
	}
	return fmt.Errorf("lab: unknown command %q\n%s", args[0], usage)
}

// parseError is a subcommand's flag error: on -h (--help) the usage,
// printed to stdout, and flag.ErrHelp, which the command takes for
// success; else the error with the usage.
func parseError(err error, stdout io.Writer) error {
	if errors.Is(err, flag.ErrHelp) {
		return printHelp(stdout)
	}
	return fmt.Errorf("%v\n%s", err, usage)
}

// printHelp prints the usage to stdout and returns flag.ErrHelp.
func printHelp(stdout io.Writer) error {
	if _, err := fmt.Fprintln(stdout, usage); err != nil {
		return err
	}
	return flag.ErrHelp
}

// isHelp reports whether arg asks for help, as the flag package reads it.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--h", "--help":
		return true
	}
	return false
}

// WriteTable prints the topology as human-readable tables.
func (t *Topology) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "lab %s: appliance namespace %s, access bridge namespace %s\n\n", t.ID, t.Appliance.NS, t.AccessNS)
	fmt.Fprintln(tw, "PORT\tMAC\tPEER\tPEER NS")
	for _, l := range [][]Iface{t.Appliance.Access, t.Appliance.Uplinks} {
		for _, i := range l {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", i.Name, i.MAC, i.Peer, i.PeerNS)
		}
	}
	fmt.Fprintln(tw, "\nISP\tUPLINK\tROUTER NS\tROUTER\tROUTER MAC\tOUR ADDR\tHOST NS\tHOST")
	for _, i := range t.ISPs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", i.Name, i.Uplink, i.NS, i.RouterAddr, i.RouterMAC, i.OurAddr, i.HostNS, i.HostAddr)
	}
	if t.DHCP {
		fmt.Fprintf(tw, "\nDHCP lab: files in %s, lease time %d s\n", t.StateDir, t.LeaseTime)
		if t.ISPServer == ServerDnsmasq {
			fmt.Fprintln(tw, "ISP\tDNSMASQ CONFIG\tDNSMASQ LEASES\tDNSMASQ LOG")
			for n, i := range t.ISPs {
				f := t.Dnsmasq(n)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", i.Name, f.Config, f.Leases, f.Log)
			}
		} else {
			fmt.Fprintln(tw, "ISP\tKEA CONFIG\tKEA LEASES\tKEA LOG\tKEA CONTROL SOCKET")
			for _, i := range t.ISPs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", i.Name, i.KeaConfig, i.KeaLeaseFile, i.KeaLog, i.KeaSocket)
			}
		}
		fmt.Fprintln(tw, "\nSUBSCRIBER\tNS\tMAC\tCUSTOMER ID\tISP\tROLE\tACCESS")
		for _, s := range t.Subscribers {
			isp := s.ISP
			if isp == "" {
				isp = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.NS, s.MAC, s.CustomerID, isp, s.Role, s.Access)
		}
	} else {
		fmt.Fprintln(tw, "\nSUBSCRIBER\tNS\tMAC\tIP\tISP\tACCESS")
		for _, s := range t.Subscribers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.NS, s.MAC, s.IP, s.ISP, s.Access)
		}
	}
	if g := t.Generator; g != nil {
		fmt.Fprintf(tw, "\ngenerator: %s %s %s on %s (%d traffic subscribers)\n", g.NS, g.If, g.MAC, g.Access, g.TrafficSubscribers)
	}
	return tw.Flush()
}

// Packages maps each binary the lab and its users need to its Debian package.
var Packages = map[string]string{
	"ip":         "iproute2",
	"bridge":     "iproute2",
	"ss":         "iproute2",
	"trafgen":    "netsniff-ng",
	"iperf3":     "iperf3",
	"ping":       "iputils-ping",
	"tcpdump":    "tcpdump",
	"ethtool":    "ethtool",
	"kea-dhcp4":  "kea-dhcp4-server",
	"dhclient":   "isc-dhcp-client",
	"busybox":    "busybox",
	"perfdhcp":   "kea-admin",
	"dhcrelay":   "isc-dhcp-relay",
	"sysctl":     "procps",
	"nft":        "nftables",        // bench forward's kernel baseline (lab.Topology.NFTRouter)
	"chromium":   "chromium",        // the portal's browser tests (e2e), headless
	"certutil":   "libnss3-tools",   // the lab CA in the browser's trust store
	"dnsmasq":    "dnsmasq-base",    // the second kind of ISP DHCP server (no system service)
	"dhcpcd":     "dhcpcd-base",     // a third kind of subscriber client (e2e; no system service)
	"dhcpd":      "isc-dhcp-server", // a third kind of ISP DHCP server (e2e; its service is left unconfigured)
	"networkctl": "systemd",         // systemd-networkd, a fourth kind of subscriber client (e2e, run by hand in a namespace)
	"promtool":   "prometheus",      // the metrics tests check the suggested alert rules and /metrics with it (the server is not run)
	"node":       "nodejs",          // api's OpenAPI tests run their checker (api/testdata/openapi) with it
	"npm":        "npm",             // ... and install its pinned packages with it (make tools)
	"python3":    "python3",         // docs/API.md's example webhook receiver (webhooks' test runs it); a port holder (appliance)
}

// MissingPackages returns the Debian packages whose binaries are missing.
func MissingPackages() []string {
	seen := map[string]bool{}
	var missing []string
	for bin, pkg := range Packages {
		if found(bin) || seen[pkg] {
			continue
		}
		seen[pkg] = true
		missing = append(missing, pkg)
	}
	return missing
}

func found(bin string) bool {
	if _, err := exec.LookPath(bin); err == nil {
		return true
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		if fi, err := os.Stat(filepath.Join(d, bin)); err == nil && !fi.IsDir() {
			return true
		}
	}
	return false
}

// EnsurePackages installs the lab's Debian packages when any binary is
// missing (apt-get update, then apt-get install --no-install-recommends).
func EnsurePackages(ctx context.Context) error {
	missing := MissingPackages()
	if len(missing) == 0 {
		return nil
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{
		{"update"},
		append([]string{"install", "-y", "--no-install-recommends"}, missing...),
	} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("lab: apt-get %s: %v: %s", strings.Join(args, " "), err, lastLines(string(out), 10))
		}
	}
	if m := MissingPackages(); len(m) != 0 {
		return fmt.Errorf("lab: still missing after install: %v", m)
	}
	return nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
