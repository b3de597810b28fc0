package bench

import (
	"context"
	"math"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestSearchRate: the search brackets a capacity to within the precision,
// doubling up first, then bisecting; edge cases below lo and above hi.
func TestSearchRate(t *testing.T) {
	for _, capacity := range []float64{1000, 1500, 3137, 7999, 15000} {
		var tried []float64
		best, fail, err := searchRate(1000, 32000, 1.1, func(r float64) (bool, error) {
			tried = append(tried, r)
			return r <= capacity, nil
		})
		if err != nil || best > capacity || best < capacity/1.1 || fail <= capacity || fail/best > 1.1 {
			t.Errorf("capacity %g: best %g fail %g err %v (tried %v)", capacity, best, fail, err, tried)
		}
		if len(tried) > 12 {
			t.Errorf("capacity %g: %d steps %v", capacity, len(tried), tried)
		}
		for _, r := range tried {
			if r != math.Round(r) {
				t.Errorf("rate %g not whole", r)
			}
		}
	}
	// Below lo: one step.
	if best, fail, _ := searchRate(1000, 32000, 1.1, func(r float64) (bool, error) { return false, nil }); best != 0 || fail != 1000 {
		t.Errorf("all fail: %g %g", best, fail)
	}
	// Above hi: lo, 2lo, ... hi, no failure.
	var tried []float64
	best, fail, _ := searchRate(1000, 5000, 1.1, func(r float64) (bool, error) { tried = append(tried, r); return true, nil })
	if best != 5000 || fail != 0 || len(tried) != 4 || tried[3] != 5000 {
		t.Errorf("all pass: %g %g %v", best, fail, tried)
	}
	// Noise: a pass above a failure is not believed beyond the bracket.
	best, fail, _ = searchRate(1000, 32000, 1.1, func(r float64) (bool, error) { return r <= 2000 || r == 4000, nil })
	if best != 4000 && best >= 8000 || fail == 0 {
		t.Errorf("noisy: %g %g", best, fail)
	}
	// An error stops it with what it had.
	n := 0
	best, _, err := searchRate(1000, 32000, 1.1, func(r float64) (bool, error) {
		if n++; n == 3 {
			return false, context.Canceled
		}
		return true, nil
	})
	if err == nil || best != 2000 {
		t.Errorf("error: %g %v", best, err)
	}
}

// TestDHCPCPUAccounting: CPU per DORA and utilisation from /proc/PID/stat
// readings (clock ticks of 10 ms, all threads of the process), and the
// process named saturated.
func TestDHCPCPUAccounting(t *testing.T) {
	stat := func(ut, st int) []byte {
		// pid (comm with spaces) state ppid ... utime(14) stime(15) ...
		return []byte("4242 (ispmux (run) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 " +
			itoa(ut) + " " + itoa(st) + " 0 0 20 0 9 0 100 1000 100")
	}
	comm, a, err := parsePIDStat(stat(120, 30))
	if err != nil || comm != "ispmux (run) x" || a != 150 {
		t.Fatalf("parsePIDStat: %q %d %v", comm, a, err)
	}
	_, b, _ := parsePIDStat(stat(520, 130))
	m1 := cpuMeter{ticks: map[int]uint64{4242: a}}
	m2 := cpuMeter{ticks: map[int]uint64{4242: b}}
	s := procS(m1, m2, 4242) // 500 ticks = 5 s
	if s == nil || *s != 5 {
		t.Fatalf("procS = %v", s)
	}
	if procS(m1, m2, 1) != nil {
		t.Error("procS of an unread pid is not nil")
	}
	// 5 s of CPU for 20,000 DORAs: 250 µs each.
	if v := usPerDORA(s, 20000); v == nil || *v != 250 {
		t.Errorf("usPerDORA = %v", v)
	}
	if usPerDORA(s, 0) != nil || usPerDORA(nil, 5) != nil {
		t.Error("usPerDORA without exchanges or CPU")
	}
	// 5 s over a 10 s window: 50 % of one CPU.
	if u, ok := dhcpUtilPct(s, 10); !ok || u != 50 {
		t.Errorf("util %v %v", u, ok)
	}
	if got := saturatedProc(map[string]float64{"ispmux": 50, "kea": 97.2, "generator": 60}); got != "kea 97%" {
		t.Errorf("saturated = %q", got)
	}
	if got := saturatedProc(map[string]float64{"relay": 20, "kea": 40}); got != "none (kea 40%)" {
		t.Errorf("saturated = %q", got)
	}
	// Both name the largest: the first by name of equals; a process at 0%
	// is named, a process saturated in none of the runs is not.
	for _, tt := range []struct{ got, want string }{
		{saturatedProc(map[string]float64{"relay": 0, "kea": 0}), "none (kea 0%)"},
		{saturatedProc(nil), ""},
		{dhcpMostFrequent(map[string]int{"none": 2, "kea": 2, "x": 0}), "kea (2 of 4 runs)"},
		{dhcpMostFrequent(map[string]int{"kea": 0}), ""},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	if dhcpProcName("none (kea 40%)") != "none" || dhcpProcName("kea 97%") != "kea" {
		t.Error("dhcpProcName")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestBackoff: RFC 2131's 4, 8, 16 s ± 1 s with a 4 s first wait, capped
// at 64 s.
func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 4 * time.Second, 2: 8 * time.Second, 3: 16 * time.Second, 5: 64 * time.Second, 9: 64 * time.Second} {
		if got := backoff(4*time.Second, n, 0.5); got != want {
			t.Errorf("backoff(4s, %d) = %v, want %v", n, got, want)
		}
		if lo, hi := backoff(4*time.Second, n, 0), backoff(4*time.Second, n, 0.999999); lo != want-time.Second || hi < want+time.Second-time.Millisecond {
			t.Errorf("backoff(4s, %d) range %v..%v", n, lo, hi)
		}
	}
	if got := scheduleLen(4*time.Second, 2); got != 31*time.Second {
		t.Errorf("scheduleLen = %v, want 31s (5 + 9 + 17)", got)
	}
	if timeoutScan(4*time.Second) != 100*time.Millisecond || timeoutScan(20*time.Millisecond) != 5*time.Millisecond {
		t.Error("timeoutScan")
	}
}

// TestGeneratorPersist: the outage mode. Every client starts once; the
// server ignores each client's first DISCOVER, so every client is bound
// after one retransmission; the run stops once 99.9 % are bound.
func TestGeneratorPersist(t *testing.T) {
	o := &genOptions{clients: 20, rate: 20, timeout: 20 * time.Millisecond, retries: 1, persist: true, until: 0.999, maxTime: 5 * time.Second}
	o.duration = time.Second
	frames := make(chan []byte, 1000)
	g := newGenerator(o, func(f []byte) error {
		frames <- append([]byte(nil), f...)
		return nil
	})
	seen := map[string]int{}
	recv := func(buf []byte) (int, error) {
		select {
		case f := <-frames:
			m, err := dhcpv4.FromBytes(f[42:])
			if err != nil {
				return 0, err
			}
			mt := dhcpv4.MessageTypeOffer
			if m.MessageType() == dhcpv4.MessageTypeRequest {
				mt = dhcpv4.MessageTypeAck
			} else if seen[m.ClientHWAddr.String()]++; seen[m.ClientHWAddr.String()] == 1 {
				return 0, errAgain
			}
			return copy(buf, replyFrame(t, mt, m.ClientHWAddr, m.TransactionID, net.IPv4(100, 64, 1, 9))), nil
		case <-time.After(5 * time.Millisecond):
			return 0, errAgain
		}
	}
	res := g.run(context.Background(), recv)
	if res.Bound != 20 || res.Stopped != "until" {
		t.Fatalf("bound %d stopped %q", res.Bound, res.Stopped)
	}
	var c DHCPCase
	fillOutage(&c, res, 0.999)
	if c.Bound != 20 || c.BoundS == nil || *c.BoundS <= 0 || *c.BoundS > 2 {
		t.Errorf("outage case %+v", c)
	}
	for _, cl := range res.Results {
		if len(cl.Exchanges) != 1 || cl.Exchanges[0].Discovers != 2 || !cl.Exchanges[0].OK {
			t.Errorf("client %s: %+v", cl.MAC, cl.Exchanges)
		}
	}
	// Not reached: nil.
	res.Results[0].BoundUs = 0
	fillOutage(&c, res, 0.999)
	if c.BoundS != nil || c.Bound != 19 {
		t.Errorf("19 of 20 bound: %+v", c)
	}
}

func TestParseUDPRcvbufErrors(t *testing.T) {
	snmp := "Ip: Forwarding DefaultTTL\nIp: 1 64\n" +
		"Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"Udp: 59456 0 16786 59456 16785 0 0 0 0\n" +
		"UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"UdpLite: 0 0 0 0 7 0 0 0 0\n"
	if n, err := parseUDPRcvbufErrors([]byte(snmp)); n != 16785 || err != nil {
		t.Errorf("parseUDPRcvbufErrors = %d, %v; want 16785", n, err)
	}
	if _, err := parseUDPRcvbufErrors([]byte("Ip: a\nIp: 1\n")); err == nil {
		t.Error("no Udp lines: no error")
	}
}
