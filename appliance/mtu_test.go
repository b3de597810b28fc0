package appliance

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/ispmux/ispmux/configs"
)

// A port MTU whose frames a UMEM frame cannot hold is warned of, naming
// the largest MTU that fits and the way out; one that fits is not.
func TestCheckMTU(t *testing.T) {
	if got := maxMTU(2048); got != 1774 {
		t.Errorf("maxMTU(2048) = %d, want 1774 (2048 - 256 headroom - 14 Ethernet - 4 VLAN)", got)
	}
	var buf bytes.Buffer
	cfg := &configs.Config{}
	cfg.Datapath.FrameSize = 2048
	a := &Appliance{cfg: cfg, log: slog.New(slog.NewTextHandler(&buf, nil))}
	a.checkMTU("acc0", 1500)
	a.checkMTU("acc0", 1774)
	if buf.Len() != 0 {
		t.Errorf("MTU 1500 and 1774 with 2048-byte frames warned:\n%s", buf.String())
	}
	a.checkMTU("acc0", 3000)
	if out := buf.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "port=acc0 mtu=3000 max_mtu=1774") ||
		!strings.Contains(out, "frame_size = 4096") {
		t.Errorf("MTU 3000 with 2048-byte frames:\n%s", out)
	}
}
