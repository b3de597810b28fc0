package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/lab"
)

// soakDiagLines bounds each source's lines for one subscriber in a soak
// check's diagnostics (the newest kept).
const soakDiagLines = 40

// soakDiagMax bounds the subscribers a check's diagnostics cover (of the
// up to 10 views a check keeps).
const soakDiagMax = 5

// soakDiagnostics says, for each inconsistent subscriber of vs (the first
// soakDiagMax), what tells where its exchanges were lost: ispmux's log
// lines naming its MAC (the soak logs at debug level: each message relayed
// to the ISP and each answer from it), its events (ctl events --mac), its
// ISP's Kea log and lease file lines naming the MAC, and its client's own
// output (timestamped), the newest soakDiagLines of each. A soak once
// failed with two subscribers lost, their renewals unanswered for 15 s,
// and nothing in its output to tell whether the client, ispmux or the
// ISP's server had dropped them.
func (r *rig) soakDiagnostics(vs []subView, ispmuxLog string, clients map[string]*client) string {
	var b strings.Builder
	for i, v := range vs {
		if i == soakDiagMax {
			fmt.Fprintf(&b, "(%d more inconsistent subscribers not shown)\n", len(vs)-i)
			break
		}
		mac := strings.ToLower(v.MAC)
		fmt.Fprintf(&b, "=== %s %s (%s): ispmux %v (%s, expires %s), %s's lease %v (expires %s), client %v\n",
			v.Sub, mac, v.ISP, v.Ispmux, v.IspmuxISP, stampOf(v.IspmuxExpires), v.ISP, v.Kea, stampOf(v.KeaExpires), v.Client)
		section(&b, "ispmux log lines naming it", matching(ispmuxLog, mac, soakDiagLines))
		section(&b, "its events (ctl events --mac)", r.macEvents(mac, soakDiagLines))
		if isp := r.ispOf(v.ISP); isp != nil {
			section(&b, isp.Name+"'s Kea log lines naming it", fileMatching(isp.KeaLog, mac, soakDiagLines))
			section(&b, isp.Name+"'s Kea lease file lines naming it", fileMatching(isp.KeaLeaseFile, mac, soakDiagLines))
		}
		if c := clients[v.Sub]; c != nil && c.out != nil {
			section(&b, "its client's output ("+c.kind+")", lastLines(c.out.String(), soakDiagLines))
		}
	}
	return b.String()
}

func section(b *strings.Builder, title, body string) {
	if strings.TrimSpace(body) == "" {
		body = "(none)"
	}
	fmt.Fprintf(b, "--- %s:\n%s\n", title, strings.TrimRight(body, "\n"))
}

func stampOf(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("15:04:05.000")
}

// lastInfoLines is lastLines of ispmux's log without its debug lines
// (the soak logs every DHCP message: a failure's last lines would be
// those alone).
func lastInfoLines(log string, n int) string {
	var out []string
	for l := range strings.SplitSeq(log, "\n") {
		if !strings.Contains(l, "level=DEBUG") {
			out = append(out, l)
		}
	}
	return lastLines(strings.Join(out, "\n"), n)
}

// matching returns the newest n lines of text that contain needle (both
// compared in lower case).
func matching(text, needle string, n int) string {
	var out []string
	for l := range strings.SplitSeq(text, "\n") {
		if strings.Contains(strings.ToLower(l), needle) {
			out = append(out, l)
		}
	}
	return strings.Join(out[max(0, len(out)-n):], "\n")
}

// fileMatching is matching of the file at path (an error: what it was).
func fileMatching(path, needle string, n int) string {
	if path == "" {
		return "(no such file in this lab)"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return matching(string(b), needle, n)
}

// macEvents is ctl events --mac mac --limit n over the control socket, as
// an operator reads them (an error: what it said).
func (r *rig) macEvents(mac string, n int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binPath, "ctl", "--socket", r.sock(), "events", "--mac", mac, "--limit", fmt.Sprint(n)).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%s(ctl events: %v)", out, err)
	}
	return string(out)
}

func (r *rig) ispOf(name string) *lab.ISP {
	for i := range r.topo.ISPs {
		if r.topo.ISPs[i].Name == name {
			return &r.topo.ISPs[i]
		}
	}
	return nil
}

// stampWriter writes each line to w with the time it was written ahead
// of it (udhcpc's output has none, and a lost renewal is found by when).
type stampWriter struct {
	mu   sync.Mutex
	w    *syncBuffer
	part bool // the last write ended inside a line
}

func (s *stampWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		if !s.part {
			_, _ = s.w.Write([]byte(time.Now().Format("15:04:05.000 ")))
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			_, _ = s.w.Write(p)
			s.part = true
			break
		}
		_, _ = s.w.Write(p[:i+1])
		p, s.part = p[i+1:], false
	}
	return n, nil
}

// TestSoakDiagHelpers: the client's output is stamped line by line however
// it is written (a line in pieces, several in one write), and matching
// keeps the newest n lines naming the MAC, in any case.
func TestSoakDiagHelpers(t *testing.T) {
	var out syncBuffer
	w := &stampWriter{w: &out}
	for _, p := range []string{"udhcpc: sending ", "renew to 100.64.0.1\nudhcpc: lease of 100.64.0.10 ", "obtained\n", "a\nb\n"} {
		if n, err := w.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("Write %q: %d, %v", p, n, err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []string{"udhcpc: sending renew to 100.64.0.1", "udhcpc: lease of 100.64.0.10 obtained", "a", "b"}
	if len(lines) != len(want) {
		t.Fatalf("stamped output:\n%s", out.String())
	}
	for i, l := range lines {
		ts, rest, _ := strings.Cut(l, " ")
		if _, err := time.Parse("15:04:05.000", ts); err != nil || rest != want[i] {
			t.Errorf("line %d: %q, want a time then %q", i, l, want[i])
		}
	}
	log := "x mac=02:00:00:00:01:01 a\ny mac=02:00:00:00:01:02\nz [hwtype=1 02:00:00:00:01:01] b\nw MAC=02:00:00:00:01:01 c\n"
	if got := matching(log, "02:00:00:00:01:01", 2); got != "z [hwtype=1 02:00:00:00:01:01] b\nw MAC=02:00:00:00:01:01 c" {
		t.Errorf("matching: %q", got)
	}
}
