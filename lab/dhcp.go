package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

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

// Kea's configuration, as much of it as the lab uses.
type (
	keaFile struct {
		Dhcp4 keaDhcp4 `json:"Dhcp4"`
	}
	keaDhcp4 struct {
		InterfacesConfig  keaInterfaces `json:"interfaces-config"`
		LeaseDatabase     keaLeaseDB    `json:"lease-database"`
		StoreExtendedInfo bool          `json:"store-extended-info"`
		Authoritative     bool          `json:"authoritative"`
		ValidLifetime     int           `json:"valid-lifetime"`
		MinValidLifetime  int           `json:"min-valid-lifetime,omitempty"`
		MaxValidLifetime  int           `json:"max-valid-lifetime,omitempty"`
		RenewTimer        int           `json:"renew-timer"`
		RebindTimer       int           `json:"rebind-timer"`
		ClientClasses     []keaClass    `json:"client-classes,omitempty"`
		Subnet4           []keaSubnet   `json:"subnet4"`
		ControlSocket     *keaCtlSocket `json:"control-socket,omitempty"`
		HooksLibraries    []keaHook     `json:"hooks-libraries,omitempty"`
		Loggers           []keaLogger   `json:"loggers"`
	}
	keaCtlSocket struct {
		SocketType string `json:"socket-type"`
		SocketName string `json:"socket-name"`
	}
	keaHook struct {
		Library string `json:"library"`
	}
	keaInterfaces struct {
		Interfaces     []string `json:"interfaces"`
		DHCPSocketType string   `json:"dhcp-socket-type"`
	}
	keaLeaseDB struct {
		Type        string `json:"type"`
		Persist     bool   `json:"persist"`
		Name        string `json:"name"`
		LFCInterval int    `json:"lfc-interval"`
	}
	keaClass struct {
		Name string `json:"name"`
		Test string `json:"test"`
	}
	keaSubnet struct {
		ID         int          `json:"id"`
		Subnet     string       `json:"subnet"`
		Relay      keaRelay     `json:"relay"`
		Pools      []keaPool    `json:"pools"`
		OptionData []keaOptData `json:"option-data"`
	}
	keaRelay struct {
		IPAddresses []string `json:"ip-addresses"`
	}
	keaPool struct {
		Pool        string `json:"pool"`
		ClientClass string `json:"client-class,omitempty"`
	}
	keaOptData struct {
		Name string `json:"name"`
		Data string `json:"data"`
	}
	keaLogger struct {
		Name          string         `json:"name"`
		OutputOptions []keaLogOutput `json:"output_options"`
		Severity      string         `json:"severity"`
		DebugLevel    int            `json:"debuglevel"`
	}
	keaLogOutput struct {
		Output string `json:"output"`
	}
)

// KnownBy returns the subscribers the Kea of ISP isp knows: its RoleValid
// subscribers (not s4, which ispmux registers at alpha but alpha refuses).
func (t *Topology) KnownBy(isp string) []Sub {
	var subs []Sub
	for _, s := range t.Subscribers {
		if s.ISP == isp && s.Role == RoleValid {
			subs = append(subs, s)
		}
	}
	return subs
}

// validTest is the VALID class's test for isp: the subscriber-id (Option 82
// sub-option 6) is a known customer ID, or the remote-id (sub-option 2) is a
// known MAC address as 6 raw bytes.
func (t *Topology) validTest(isp string) string {
	var terms []string
	for _, s := range t.KnownBy(isp) {
		terms = append(terms, "relay4[6].hex == '"+s.CustomerID+"'")
	}
	for _, id := range t.KeaKnown[isp] {
		terms = append(terms, "relay4[6].hex == '"+id+"'")
	}
	for _, s := range t.KnownBy(isp) {
		hw, err := net.ParseMAC(s.MAC)
		if err != nil {
			continue
		}
		terms = append(terms, "relay4[2].hex == 0x"+hex.EncodeToString(hw))
	}
	if len(terms) == 0 {
		return "'known' == 'nobody'" // Kea has no boolean literals
	}
	return strings.Join(terms, " or ")
}

// KeaConfigJSON returns the Kea configuration of the ISP at index i of a
// DHCP lab (written to ISPs[i].KeaConfig by Up).
func (t *Topology) KeaConfigJSON(i int) ([]byte, error) {
	if !t.DHCP || i < 0 || i >= len(t.ISPs) {
		return nil, fmt.Errorf("lab: no Kea for ISP %d", i)
	}
	isp := t.ISPs[i]
	lt := t.LeaseTime
	c := keaFile{Dhcp4: keaDhcp4{
		InterfacesConfig:  keaInterfaces{Interfaces: []string{isp.RouterIf}, DHCPSocketType: "udp"},
		LeaseDatabase:     keaLeaseDB{Type: "memfile", Persist: true, Name: isp.KeaLeaseFile, LFCInterval: 0},
		StoreExtendedInfo: true,
		Authoritative:     !t.KeaNotAuthoritative,
		ValidLifetime:     lt,
		// A client asking for a shorter lease (option 51) gets it, down
		// to MinLeaseTime; none gets more than the lab's lease time.
		MinValidLifetime: MinLeaseTime,
		MaxValidLifetime: lt,
		RenewTimer:       lt / 2,
		RebindTimer:      lt * 7 / 8,
		ClientClasses:    []keaClass{{Name: ValidClass, Test: t.validTest(isp.Name)}},
		Subnet4: []keaSubnet{{
			ID: DHCPSubnetID, Subnet: DHCPSubnet,
			Relay: keaRelay{IPAddresses: []string{RelayAddr}},
			Pools: []keaPool{{Pool: DHCPPoolFirst + " - " + DHCPPoolLast, ClientClass: ValidClass}},
			OptionData: []keaOptData{
				{Name: "routers", Data: Gateway},
				{Name: "subnet-mask", Data: "255.255.255.0"},
			},
		}},
		Loggers: []keaLogger{{
			Name: "kea-dhcp4", OutputOptions: []keaLogOutput{{Output: isp.KeaLog}}, Severity: "INFO",
		}},
	}}
	if isp.KeaSocket != "" {
		// The control channel (ISP.Leases, ISP.KeaCommand): lease_cmds
		// when Kea ships it (Debian's kea-common does).
		c.Dhcp4.ControlSocket = &keaCtlSocket{SocketType: "unix", SocketName: isp.KeaSocket}
		if p := KeaHookPath(LeaseCmdsHook); p != "" {
			c.Dhcp4.HooksLibraries = []keaHook{{Library: p}}
		}
	}
	if t.KeaOpen {
		// Benchmarks: anyone relayed by ispmux (giaddr 192.0.2.2) or by
		// a kernel relay on the access side (giaddr 100.64.0.1, which
		// is inside the subnet anyway) gets an address.
		c.Dhcp4.ClientClasses = nil
		c.Dhcp4.Subnet4 = []keaSubnet{{
			ID: DHCPSubnetID, Subnet: KeaOpenSubnet,
			Relay: keaRelay{IPAddresses: []string{RelayAddr, Gateway}},
			Pools: []keaPool{{Pool: KeaOpenPoolFirst + " - " + KeaOpenPoolLast}},
			OptionData: []keaOptData{
				{Name: "routers", Data: Gateway},
				{Name: "subnet-mask", Data: "255.255.0.0"},
			},
		}}
	}
	return json.MarshalIndent(c, "", "  ")
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
	ip addr replace "$new_ip_address/${new_subnet_mask:-255.255.255.255}" dev "$interface" || exit 1
	for r in ${new_routers:-}; do
		ip route replace default via "$r" dev "$interface" || exit 1
		break
	done
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
	ip addr replace "$ip/${mask:-${subnet:-32}}" dev "$interface" || exit 1
	for r in ${router:-}; do
		ip route replace default via "$r" dev "$interface" || exit 1
		break
	done
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
	out, err := exec.CommandContext(ctx, "ip", t.dhclientArgs(sub, nil, "-r")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: dhclient -r in %s: %v: %s", sub.NS, err, lastLines(string(out), 5))
	}
	return nil
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

// KeaLease is one lease of an ISP's Kea: a record of its memfile lease file
// (KeaLeases) or one lease of its lease database as lease_cmds returns it
// (ISP.Leases). The file is a log: a later record for the same address
// supersedes an earlier one, and a released or deleted lease is written
// with ValidLifetime 0.
type KeaLease struct {
	Address       netip.Addr
	HWAddr        string    // "02:00:00:00:01:01"
	ClientID      string    // as stored (colon-separated hex), may be empty
	ValidLifetime int       // seconds
	CLTT          time.Time // client last transmission time (ISP.Leases only)
	Expire        time.Time
	SubnetID      int
	Hostname      string
	State         int    // 0 default, 1 declined, 2 expired-reclaimed
	UserContext   string // raw JSON, empty when none
	// From the relay agent information Kea stored in the user context
	// ("store-extended-info"): the Option 82 sub-options.
	RelayAgentInfo []byte // the whole option 82 payload
	CircuitID      []byte // sub-option 1
	RemoteID       []byte // sub-option 2
	LinkSelection  []byte // sub-option 5
	SubscriberID   []byte // sub-option 6
}

// ActiveKeaLeases returns, of records in file order (see KeaLeases), the last
// record per address when it is a lease in force at now: state 0, a
// non-zero lifetime and not expired.
func ActiveKeaLeases(records []KeaLease, now time.Time) []KeaLease {
	last := map[netip.Addr]int{}
	var order []netip.Addr
	for i, l := range records {
		if _, ok := last[l.Address]; !ok {
			order = append(order, l.Address)
		}
		last[l.Address] = i
	}
	var active []KeaLease
	for _, a := range order {
		l := records[last[a]]
		if l.State == 0 && l.ValidLifetime > 0 && l.Expire.After(now) {
			active = append(active, l)
		}
	}
	return active
}

// KeaLeases parses a Kea memfile lease file (CSV with a header line naming
// the columns) and returns its records in file order.
func KeaLeases(path string) ([]KeaLease, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseKeaLeases(f, path)
}

func parseKeaLeases(r io.Reader, name string) ([]KeaLease, error) {
	// Not RFC 4180 CSV: Kea never quotes, it escapes a comma inside a
	// field as "&#x2c" (user contexts are JSON with bare quotes).
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	if !sc.Scan() {
		return nil, sc.Err()
	}
	header := strings.Split(strings.TrimSpace(sc.Text()), ",")
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	for _, need := range []string{"address", "hwaddr", "expire"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("lab: %s: no %q column in header %q", name, need, header)
		}
	}
	var leases []KeaLease
	for line := 2; sc.Scan(); line++ {
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" {
			continue
		}
		rec := strings.Split(text, ",")
		get := func(c string) string {
			if i, ok := col[c]; ok && i < len(rec) {
				return keaUnescape.Replace(rec[i])
			}
			return ""
		}
		atoi := func(c string) (int64, error) {
			v := get(c)
			if v == "" {
				return 0, nil
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("lab: %s:%d: %s: %w", name, line, c, err)
			}
			return n, nil
		}
		var l KeaLease
		var err error
		if l.Address, err = netip.ParseAddr(get("address")); err != nil {
			return nil, fmt.Errorf("lab: %s:%d: %w", name, line, err)
		}
		l.HWAddr, l.ClientID, l.Hostname = get("hwaddr"), get("client_id"), get("hostname")
		var n int64
		if n, err = atoi("valid_lifetime"); err != nil {
			return nil, err
		}
		l.ValidLifetime = int(n)
		if n, err = atoi("expire"); err != nil {
			return nil, err
		}
		l.Expire = time.Unix(n, 0)
		if n, err = atoi("subnet_id"); err != nil {
			return nil, err
		}
		l.SubnetID = int(n)
		if n, err = atoi("state"); err != nil {
			return nil, err
		}
		l.State = int(n)
		l.UserContext = get("user_context")
		if l.UserContext != "" {
			if err := l.decodeRelayInfo(); err != nil {
				return nil, fmt.Errorf("lab: %s:%d: %w", name, line, err)
			}
		}
		leases = append(leases, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", name, err)
	}
	return leases, nil
}

// keaUnescape undoes Kea's CSV escaping ("&#x2c" for a comma, and so on).
var keaUnescape = strings.NewReplacer("&#x2c", ",", "&#x0d", "\r", "&#x0a", "\n", "&#x26", "&")

// decodeRelayInfo fills the Option 82 fields from the user context. Kea 2.2
// stores {"ISC": {"relay-agent-info": "0x<option 82 payload>"}}; Kea 2.4
// and later store {"ISC": {"relay-agent-info": {"sub-options": "0x...",
// ...}}}. Both are accepted.
func (l *KeaLease) decodeRelayInfo() error {
	var uc struct {
		ISC struct {
			RAI json.RawMessage `json:"relay-agent-info"`
		} `json:"ISC"`
	}
	if err := json.Unmarshal([]byte(l.UserContext), &uc); err != nil {
		return fmt.Errorf("user context %q: %w", l.UserContext, err)
	}
	if len(uc.ISC.RAI) == 0 {
		return nil
	}
	var s string
	if err := json.Unmarshal(uc.ISC.RAI, &s); err != nil {
		var obj struct {
			SubOptions string `json:"sub-options"`
		}
		if err := json.Unmarshal(uc.ISC.RAI, &obj); err != nil {
			return fmt.Errorf("relay-agent-info %s: %w", uc.ISC.RAI, err)
		}
		s = obj.SubOptions
	}
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	raw, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("relay-agent-info %q: %w", s, err)
	}
	l.RelayAgentInfo = raw
	for p := raw; len(p) > 0; {
		if len(p) < 2 || len(p) < 2+int(p[1]) {
			return fmt.Errorf("relay-agent-info %x: truncated sub-option", raw)
		}
		v := bytes.Clone(p[2 : 2+int(p[1])])
		switch p[0] {
		case 1:
			l.CircuitID = v
		case 2:
			l.RemoteID = v
		case 5:
			l.LinkSelection = v
		case 6:
			l.SubscriberID = v
		}
		p = p[2+int(p[1]):]
	}
	return nil
}
