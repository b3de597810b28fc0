package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/internal/privtest"
)

func testID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "lt" + hex.EncodeToString(b)
}

// up builds a lab with a fresh ID and registers its teardown.
func up(t *testing.T, o Options) *Topology {
	t.Helper()
	privtest.Lab(t)
	if o.ID == "" {
		o.ID = testID(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t.Cleanup(func() {
		if err := Down(context.Background(), o.ID); err != nil {
			t.Errorf("Down: %v", err)
		}
	})
	start := time.Now()
	topo, err := Up(ctx, o)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Logf("Up %s took %v", o.ID, time.Since(start))
	return topo
}

func labNamespaces(t *testing.T, id string) []string {
	t.Helper()
	out, err := run(context.Background(), "ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], id+"-") {
			ns = append(ns, f[0])
		}
	}
	return ns
}

type linkInfo struct {
	IfName   string `json:"ifname"`
	Address  string `json:"address"`
	MTU      int    `json:"mtu"`
	OperSt   string `json:"operstate"`
	AddrInfo []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

func link(t *testing.T, ns, ifname string) linkInfo {
	t.Helper()
	out, err := run(context.Background(), "ip", "-n", ns, "-j", "addr", "show", "dev", ifname)
	if err != nil {
		t.Fatal(err)
	}
	var l []linkInfo
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l) != 1 {
		t.Fatalf("ip addr show %s in %s: %v %q", ifname, ns, err, out)
	}
	return l[0]
}

func addrs(l linkInfo) []string {
	var a []string
	for _, ai := range l.AddrInfo {
		a = append(a, ai.Local+"/"+strconv.Itoa(ai.PrefixLen))
	}
	return a
}

func checkLink(t *testing.T, ns, ifname, mac string, want ...string) {
	t.Helper()
	l := link(t, ns, ifname)
	if l.Address != mac {
		t.Errorf("%s/%s: mac %s, want %s", ns, ifname, l.Address, mac)
	}
	if l.MTU != 1500 {
		t.Errorf("%s/%s: mtu %d", ns, ifname, l.MTU)
	}
	if got := strings.Join(addrs(l), ","); got != strings.Join(want, ",") {
		t.Errorf("%s/%s: addresses %q, want %q", ns, ifname, got, strings.Join(want, ","))
	}
	if l.OperSt != "UP" {
		t.Errorf("%s/%s: operstate %s", ns, ifname, l.OperSt)
	}
}

func sysctlValue(t *testing.T, topo *Topology, ns, key string) string {
	t.Helper()
	out, err := topo.Run(context.Background(), ns, "sysctl", "-n", key)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func ping(topo *Topology, ns, dst string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := topo.Run(ctx, ns, "ping", "-c", "1", "-W", "2", dst)
	return err
}

func TestUpStructureDown(t *testing.T) {
	topo := up(t, Options{Generator: true})
	ctx := context.Background()

	if len(topo.Subscribers) != 3 || len(topo.ISPs) != 2 {
		t.Fatalf("got %d subscribers, %d isps", len(topo.Subscribers), len(topo.ISPs))
	}
	wantSubs := []struct{ isp, ip string }{{"alpha", "100.64.0.11"}, {"beta", "100.64.0.12"}, {"beta", "100.64.0.11"}}
	for i, s := range topo.Subscribers {
		if s.ISP != wantSubs[i].isp || s.IP != wantSubs[i].ip {
			t.Errorf("%s: isp %s ip %s, want %v", s.Name, s.ISP, s.IP, wantSubs[i])
		}
		checkLink(t, s.NS, s.If, s.MAC, s.IP+"/24")
		out, err := run(ctx, "ip", "-n", s.NS, "route", "show", "default")
		if err != nil || !strings.Contains(out, "via 100.64.0.1 dev eth0") {
			t.Errorf("%s: default route %q %v", s.Name, out, err)
		}
		if v := sysctlValue(t, topo, s.NS, "net.ipv6.conf.all.disable_ipv6"); v != "1" {
			t.Errorf("%s: disable_ipv6 %s", s.NS, v)
		}
	}
	// The access bridge hands nothing to netfilter (bridgeNFOff).
	if _, err := os.Stat("/proc/sys/net/bridge"); err == nil {
		for _, k := range []string{"iptables", "ip6tables", "arptables"} {
			if v := sysctlValue(t, topo, topo.AccessNS, "net.bridge.bridge-nf-call-"+k); v != "0" {
				t.Errorf("access bridge-nf-call-%s %s, want 0", k, v)
			}
		}
	}
	// The appliance: fixed MACs, no addresses, no forwarding.
	for _, i := range append(append([]Iface(nil), topo.Appliance.Access...), topo.Appliance.Uplinks...) {
		checkLink(t, topo.Appliance.NS, i.Name, i.MAC)
	}
	wantMAC := map[string]string{"acc0": "02:00:00:00:a0:00", "acc1": "02:00:00:00:a0:01", "upa": "02:00:00:00:a1:01", "upb": "02:00:00:00:a1:02"}
	for name, m := range wantMAC {
		checkLink(t, topo.Appliance.NS, name, m)
	}
	if v := sysctlValue(t, topo, topo.Appliance.NS, "net.ipv4.ip_forward"); v != "0" {
		t.Errorf("appliance ip_forward %s", v)
	}
	if v := sysctlValue(t, topo, topo.Appliance.NS, "net.ipv4.conf.all.rp_filter"); v != "0" {
		t.Errorf("appliance rp_filter %s", v)
	}
	// ISP routers and hosts.
	for i, isp := range topo.ISPs {
		checkLink(t, isp.NS, isp.RouterIf, isp.RouterMAC, "192.0.2.1/24")
		if want := []string{"02:00:00:00:b1:01", "02:00:00:00:b1:02"}[i]; isp.RouterMAC != want {
			t.Errorf("%s router mac %s", isp.Name, isp.RouterMAC)
		}
		checkLink(t, isp.HostNS, "eth0", link(t, isp.HostNS, "eth0").Address, "198.51.100.10/24")
		if err := ping(topo, isp.NS, isp.HostAddr); err != nil {
			t.Errorf("ISP %s router cannot reach its host: %v", isp.Name, err)
		}
		out, err := run(ctx, "ip", "-n", isp.NS, "route", "show", "100.64.0.0/16")
		if err != nil || !strings.Contains(out, "via 192.0.2.2") {
			t.Errorf("%s: route to subscribers %q %v", isp.NS, out, err)
		}
	}
	// Bridge: subscriber ports isolated, the appliance port not.
	out, err := topo.Run(ctx, topo.AccessNS, "bridge", "-j", "-d", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	var ports []struct {
		IfName   string `json:"ifname"`
		Master   string `json:"master"`
		State    string `json:"state"`
		Isolated bool   `json:"isolated"`
	}
	if err := json.Unmarshal([]byte(out), &ports); err != nil {
		t.Fatalf("bridge link: %v %s", err, out)
	}
	seen := 0
	for _, p := range ports {
		if p.Master != "br0" {
			continue
		}
		seen++
		if p.Isolated != strings.HasPrefix(p.IfName, "p") {
			t.Errorf("bridge port %s isolated=%v", p.IfName, p.Isolated)
		}
		if p.State != "forwarding" {
			t.Errorf("bridge port %s state %s", p.IfName, p.State)
		}
	}
	if seen != 4 {
		t.Errorf("bridge has %d ports, want 4: %s", seen, out)
	}
	// Isolation: s1 cannot reach s2 on the shared /24 at L2.
	if err := ping(topo, topo.Subscribers[0].NS, topo.Subscribers[1].IP); err == nil {
		t.Errorf("s1 reached s2 across the isolated bridge")
	}
	// Generator.
	g := topo.Generator
	checkLink(t, g.NS, g.If, g.MAC)

	// JSON round trip.
	b, err := json.Marshal(topo)
	if err != nil {
		t.Fatal(err)
	}
	var back Topology
	if err := json.Unmarshal(b, &back); err != nil || back.AccessNS != topo.AccessNS || len(back.Subscribers) != 3 {
		t.Errorf("json round trip: %v %+v", err, back)
	}

	if err := Down(ctx, topo.ID); err != nil {
		t.Fatal(err)
	}
	if ns := labNamespaces(t, topo.ID); len(ns) != 0 {
		t.Errorf("after Down: %v", ns)
	}
	if err := Down(ctx, topo.ID); err != nil {
		t.Errorf("second Down: %v", err)
	}
}

func TestUpTwiceAndDownKills(t *testing.T) {
	id := testID(t)
	topo := up(t, Options{ID: id, Subscribers: 2})
	// A process left in a namespace must not stop the next Up.
	cmd := topo.Cmd(context.Background(), topo.Appliance.NS, "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	topo2 := up(t, Options{ID: id, Subscribers: 5, ISPs: 3})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Errorf("Up did not kill the process left in %s", topo.Appliance.NS)
	}
	if got := len(labNamespaces(t, id)); got != 2+3*2+5 {
		t.Errorf("%d namespaces, want %d", got, 2+3*2+5)
	}
	wantISP := []string{"alpha", "beta", "beta", "alpha", "beta"}
	wantIP := []string{"100.64.0.11", "100.64.0.12", "100.64.0.11", "100.64.0.13", "100.64.0.14"}
	for i, s := range topo2.Subscribers {
		if s.ISP != wantISP[i] || s.IP != wantIP[i] {
			t.Errorf("%s: %s %s, want %s %s", s.Name, s.ISP, s.IP, wantISP[i], wantIP[i])
		}
		checkLink(t, s.NS, s.If, s.MAC, s.IP+"/24")
	}
	checkLink(t, topo2.ISPs[2].NS, "eth0", "02:00:00:00:b1:03", "192.0.2.1/24")
}

func TestKernelRouter(t *testing.T) {
	topo := up(t, Options{Generator: true, TrafficSubscribers: 50})
	ctx := context.Background()
	if err := topo.KernelRouter(ctx, true); err != nil {
		t.Fatal(err)
	}
	// s1 (alpha) and s2 (beta) reach their ISP's host. s3 is not tested: it
	// shares s1's address at another ISP, and a kernel policy router selects
	// the table by source address only, so it cannot express overlapping
	// plans (s3 gets no rule; its traffic would leave through alpha).
	for _, s := range topo.Subscribers[:2] {
		if err := ping(topo, s.NS, HostAddr); err != nil {
			t.Errorf("%s (isp %s) cannot reach its ISP's host: %v", s.Name, s.ISP, err)
		}
	}
	// The ping went through the right ISP: each host's eth0 received one.
	for i, isp := range topo.ISPs {
		rx, _, _, err := LinkStats(isp.HostNS, "eth0")
		if err != nil {
			t.Fatal(err)
		}
		if rx == 0 {
			t.Errorf("ISP %d host received nothing", i)
		}
	}
	// The generator's frames are routed to the ISP routers: 50 traffic
	// subscribers alternate alpha/beta, 200 frames, 100 per ISP.
	g := topo.Generator
	conf := filepath.Join(t.TempDir(), "gen.cfg")
	if err := os.WriteFile(conf, []byte(TrafgenConfig(topo.TrafficSubscribers(50), g.AccessMAC, HostAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	var before [2]uint64
	for i, isp := range topo.ISPs {
		before[i], _, _, _ = LinkStats(isp.NS, isp.RouterIf)
	}
	accRx0, _, _, _ := LinkStats(topo.Appliance.NS, g.Access)
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if out, err := topo.Run(tctx, g.NS, "trafgen", "--dev", g.If, "--conf", conf, "-n", "200", "-q", "-t", "0"); err != nil {
		t.Fatalf("trafgen: %v\n%s", err, out)
	}
	time.Sleep(200 * time.Millisecond)
	accRx, _, _, _ := LinkStats(topo.Appliance.NS, g.Access)
	if accRx-accRx0 < 200 {
		t.Errorf("acc1 received %d frames, want 200", accRx-accRx0)
	}
	for i, isp := range topo.ISPs {
		rx, _, _, err := LinkStats(isp.NS, isp.RouterIf)
		if err != nil {
			t.Fatal(err)
		}
		if d := rx - before[i]; d < 100 {
			t.Errorf("ISP %s router received %d frames, want >= 100", isp.Name, d)
		}
	}

	if err := topo.KernelRouter(ctx, false); err != nil {
		t.Fatal(err)
	}
	out, err := run(ctx, "ip", "-n", topo.Appliance.NS, "rule", "show")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "lookup 100") || strings.Contains(out, "lookup 101") {
		t.Errorf("rules remain after off:\n%s", out)
	}
	for _, i := range topo.Appliance.Access {
		checkLink(t, topo.Appliance.NS, i.Name, i.MAC)
	}
	for _, i := range topo.Appliance.Uplinks {
		checkLink(t, topo.Appliance.NS, i.Name, i.MAC)
	}
	if v := sysctlValue(t, topo, topo.Appliance.NS, "net.ipv4.ip_forward"); v != "0" {
		t.Errorf("ip_forward %s after off", v)
	}
	if err := ping(topo, topo.Subscribers[0].NS, HostAddr); err == nil {
		t.Errorf("s1 still reaches the host with the kernel router off")
	}
}

func TestMain_(t *testing.T) {
	privtest.Lab(t)
	id := testID(t)
	t.Cleanup(func() { _ = Down(context.Background(), id) })
	var out bytes.Buffer
	if err := Main(context.Background(), []string{"up", "--id", id, "--subscribers", "1", "--json"}, &out); err != nil {
		t.Fatal(err)
	}
	var topo Topology
	if err := json.Unmarshal(out.Bytes(), &topo); err != nil || topo.ID != id || len(topo.Subscribers) != 1 {
		t.Fatalf("up --json: %v %s", err, out.String())
	}
	out.Reset()
	if err := topo.WriteTable(&out); err != nil || !strings.Contains(out.String(), "02:00:00:00:01:01") {
		t.Errorf("table: %v\n%s", err, out.String())
	}
	t.Logf("\n%s", out.String())
	if err := Main(context.Background(), []string{"down", "--id", id}, &out); err != nil {
		t.Fatal(err)
	}
	if ns := labNamespaces(t, id); len(ns) != 0 {
		t.Errorf("after down: %v", ns)
	}
	if err := Main(context.Background(), []string{"bogus"}, &out); err == nil {
		t.Error("bogus subcommand accepted")
	}
}

func TestConfigTOML(t *testing.T) {
	topo, err := plan(Options{ID: "x", Subscribers: 5, Generator: true, TrafficSubscribers: 7})
	if err != nil {
		t.Fatal(err)
	}
	b := topo.ConfigTOML("/tmp/state")
	// The appliance's own strict parser must accept it as it is.
	if _, err := configs.Parse("lab.toml", b); err != nil {
		t.Fatalf("ispmux rejects the lab's config: %v\n%s", err, b)
	}
	var m map[string]any
	if _, err := toml.Decode(string(b), &m); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if m["version"] != int64(1) {
		t.Errorf("version %v", m["version"])
	}
	if sd := m["appliance"].(map[string]any)["state_dir"]; sd != "/tmp/state" {
		t.Errorf("state_dir %v", sd)
	}
	dp := m["datapath"].(map[string]any)
	if dp["attach_mode"] != "native" || dp["bind_mode"] != "copy" || dp["frames"] != int64(4096) ||
		dp["rx_ring"] != int64(2048) || dp["tx_ring"] != int64(2048) || dp["fill_ring"] != int64(2048) || dp["completion_ring"] != int64(2048) {
		t.Errorf("datapath %v", dp)
	}
	acc := m["access"].([]map[string]any)
	if len(acc) != 2 || acc[0]["interface"] != "acc0" || acc[1]["interface"] != "acc1" || acc[0]["address"] != "100.64.0.1" {
		t.Errorf("access %v", acc)
	}
	isps := m["isp"].([]map[string]any)
	if len(isps) != 2 || isps[1]["name"] != "beta" || isps[1]["uplink"] != "upb" || isps[0]["address"] != "192.0.2.2/24" ||
		isps[0]["next_hop"] != "192.0.2.1" || isps[0]["dhcp_servers"].([]any)[0] != "192.0.2.1" {
		t.Errorf("isp %v", isps)
	}
	subs := m["subscriber"].([]map[string]any)
	all := append(topo.Subscribers, topo.TrafficSubscribers(7)...)
	if len(subs) != len(all) {
		t.Fatalf("%d subscribers in config, want %d", len(subs), len(all))
	}
	for i, s := range all {
		got := subs[i]
		if got["mac"] != s.MAC || got["isp"] != s.ISP || got["ip"] != s.IP || got["access"] != s.Access || len(got) != 4 {
			t.Errorf("subscriber %d: %v, want %+v", i, got, s)
		}
	}
	if subs[2]["ip"] != "100.64.0.11" || subs[2]["isp"] != "beta" {
		t.Errorf("s3 is not the overlap case: %v", subs[2])
	}
}

func TestTrafficSubscribersAndTrafgen(t *testing.T) {
	topo, err := plan(Options{ID: "x", Generator: true})
	if err != nil {
		t.Fatal(err)
	}
	subs := topo.TrafficSubscribers(1000)
	macs, ips := map[string]bool{}, map[string]bool{}
	for i, s := range subs {
		if macs[s.MAC] || ips[s.IP] || !strings.HasPrefix(s.MAC, "02:10:") || !strings.HasPrefix(s.IP, "100.65.") {
			t.Fatalf("bad or duplicate %+v", s)
		}
		macs[s.MAC], ips[s.IP] = true, true
		if s.ISP != topo.ISPs[i%2].Name || s.Access != "acc1" {
			t.Fatalf("%+v", s)
		}
	}
	c := TrafgenConfig(subs[:2], "02:00:00:00:a0:01", "198.51.100.10")
	if n := strings.Count(c, "csumip(14, 33)"); n != 2 {
		t.Errorf("%d packets:\n%s", n, c)
	}
	if !strings.Contains(c, "{ 0x02,0x00,0x00,0x00,0xa0,0x01,  0x02,0x10,0x00,0x00,0x00,0x01,  0x08,0x00,") ||
		!strings.Contains(c, "100,65,0,1,  198,51,100,10,") {
		t.Errorf("unexpected config:\n%s", c)
	}
	if noGen, _ := plan(Options{ID: "x"}); noGen.TrafficSubscribers(3) != nil {
		t.Error("traffic subscribers without a generator")
	}
}

func TestUpFailureTearsDown(t *testing.T) {
	privtest.Lab(t)
	id := testID(t)
	t.Cleanup(func() { _ = Down(context.Background(), id) })
	injectFault = "name h0"
	defer func() { injectFault = "" }()
	_, err := Up(context.Background(), Options{ID: id})
	if err == nil || !strings.Contains(err.Error(), "ip link add name h0") || !strings.Contains(err.Error(), "injected fault") {
		t.Fatalf("Up error %v, want one naming the failed command", err)
	}
	if ns := labNamespaces(t, id); len(ns) != 0 {
		t.Errorf("after a failed Up: %v", ns)
	}
	injectFault = ""
	// A real failure reports the command's stderr.
	_, err = run(context.Background(), "ip", "-n", id+"-nonexistent", "link")
	if err == nil || !strings.Contains(err.Error(), "ip -n "+id+"-nonexistent link") || !strings.Contains(err.Error(), "No such file") {
		t.Errorf("error without stderr: %v", err)
	}
}

func TestSweep(t *testing.T) {
	privtest.Lab(t)
	ctx := context.Background()
	nss := []string{"sw1a2b-s1", "sw1a2b-app", "swzz-s1", "sw3c4d-s1"}
	for _, ns := range nss {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", ns, err, out)
		}
	}
	t.Cleanup(func() {
		for _, ns := range nss {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	// sw3c4d belongs to another live process (another test run).
	if err := os.MkdirAll(filepath.Dir(ownerPath("sw3c4d")), 0o755); err != nil {
		t.Fatal(err)
	}
	holder := exec.Command("flock", ownerPath("sw3c4d"), "sleep", "60")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait(); _ = os.Remove(ownerPath("sw3c4d")) })
	for i := 0; !ownedElsewhere("sw3c4d"); i++ {
		if i == 100 {
			t.Fatal("flock did not take the owner lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ids, err := Sweep(ctx, "sw[0-9a-f]{4}")
	if err != nil || len(ids) != 1 || ids[0] != "sw1a2b" {
		t.Fatalf("Sweep: %v, %v; want only sw1a2b", ids, err)
	}
	out, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	if strings.Contains(string(out), "sw1a2b-") || !strings.Contains(string(out), "swzz-s1") || !strings.Contains(string(out), "sw3c4d-s1") {
		t.Errorf("after Sweep:\n%s", out)
	}
}
