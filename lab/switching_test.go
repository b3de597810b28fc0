package lab

import (
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/configs"
)

// Options.ClientLeaseMax reaches ispmux's configuration as [dhcp]
// client_lease_max; without it there is no [dhcp] table (the defaults).
func TestConfigTOMLClientLeaseMax(t *testing.T) {
	for _, d := range []time.Duration{0, 30 * time.Second, time.Hour} {
		topo, err := plan(Options{ID: "x", Subscribers: 3, DHCP: true, ClientLeaseMax: d})
		if err != nil {
			t.Fatal(err)
		}
		b := topo.ConfigTOML("/tmp/state")
		c, err := configs.Parse("lab.toml", b)
		if err != nil {
			t.Fatalf("ispmux rejects the lab's config: %v\n%s", err, b)
		}
		want := d
		if d == 0 {
			want = 10 * time.Minute
			if strings.Contains(string(b), "[dhcp]") {
				t.Errorf("a [dhcp] table without ClientLeaseMax:\n%s", b)
			}
		}
		if c.DHCP.ClientLeaseMaxDur != want {
			t.Errorf("ClientLeaseMax %v: client_lease_max %v in the config, want %v", d, c.DHCP.ClientLeaseMaxDur, want)
		}
	}
}
