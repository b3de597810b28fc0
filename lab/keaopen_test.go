package lab

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ispmux/ispmux/internal/privtest"
)

// TestKeaOpen checks the benchmark's open Kea configuration: one /16
// subnet selected by either relay address, a pool without a client class,
// no validating classes (TestKeaOpenAccepted has Kea check it).
func TestKeaOpen(t *testing.T) {
	if _, err := plan(Options{ID: "x", KeaOpen: true}); err == nil {
		t.Error("KeaOpen without DHCP accepted")
	}
	topo, err := plan(Options{ID: "x", ISPs: 1, DHCP: true, KeaOpen: true, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !topo.KeaOpen {
		t.Fatal("Topology.KeaOpen not set")
	}
	b, err := topo.KeaConfigJSON(0)
	if err != nil {
		t.Fatal(err)
	}
	var c keaFile
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Dhcp4.ClientClasses) != 0 || strings.Contains(string(b), "client-class") {
		t.Errorf("open config has client classes:\n%s", b)
	}
	if len(c.Dhcp4.Subnet4) != 1 {
		t.Fatalf("%d subnets, want 1", len(c.Dhcp4.Subnet4))
	}
	s := c.Dhcp4.Subnet4[0]
	if s.Subnet != KeaOpenSubnet || len(s.Pools) != 1 || s.Pools[0].Pool != KeaOpenPoolFirst+" - "+KeaOpenPoolLast {
		t.Errorf("subnet %s pools %+v", s.Subnet, s.Pools)
	}
	if got := strings.Join(s.Relay.IPAddresses, ","); got != RelayAddr+","+Gateway {
		t.Errorf("relay addresses %s, want %s,%s", got, RelayAddr, Gateway)
	}

	// The validating lab is unchanged.
	closed, err := plan(Options{ID: "x", ISPs: 1, DHCP: true, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := closed.KeaConfigJSON(0)
	if !strings.Contains(string(cb), `"client-class": "`+ValidClass+`"`) || !strings.Contains(string(cb), DHCPSubnet) {
		t.Errorf("validating config changed:\n%s", cb)
	}
}

// TestKeaOpenAccepted: Kea itself accepts the open configuration
// (kea-dhcp4 -t). It runs Kea, so -short skips it; a missing kea-dhcp4
// fails it (lab/deps.sh installs it) unless ISPMUX_SKIP_PRIVILEGED=1.
func TestKeaOpenAccepted(t *testing.T) {
	privtest.Short(t)
	kea := privtest.Tool(t, "kea-dhcp4")
	topo, err := plan(Options{ID: "x", ISPs: 1, DHCP: true, KeaOpen: true, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := topo.KeaConfigJSON(0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "kea.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kea, "-t", path)
	cmd.Env = append(os.Environ(), "KEA_PIDFILE_DIR="+dir, "KEA_LOCKFILE_DIR="+dir, "KEA_LOGGER_DESTINATION="+filepath.Join(dir, "log"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("kea-dhcp4 -t: %v\n%s", err, out)
	}
}
