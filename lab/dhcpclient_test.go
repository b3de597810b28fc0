package lab

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLeaseServer(t *testing.T) {
	dir := t.TempDir()
	lf := filepath.Join(dir, "dhclient.leases")
	if got := leaseServer(lf); got != Gateway {
		t.Errorf("no lease file: %q, want the gateway %q", got, Gateway)
	}
	leases := `lease {
  interface "eth0";
  fixed-address 100.64.0.101;
  option dhcp-server-identifier 100.64.0.1;
}
lease {
  interface "eth0";
  fixed-address 100.64.0.102;
  option subnet-mask 255.255.255.0;
  option dhcp-server-identifier 10.1.2.3;
  renew 6 2026/12/05 19:03:46;
}
`
	if err := os.WriteFile(lf, []byte(leases), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := leaseServer(lf); got != "10.1.2.3" {
		t.Errorf("leaseServer = %q, want the last lease's server 10.1.2.3", got)
	}
	if err := os.WriteFile(lf, []byte("lease {\n  option dhcp-server-identifier bogus;\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := leaseServer(lf); got != Gateway {
		t.Errorf("unparsable server: %q, want the gateway", got)
	}
}
