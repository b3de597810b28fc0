package appliance

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/sdnotify"
)

func TestStalled(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	prev := liveness{at: t0, workers: []uint64{10, 20}, sleeping: []bool{false, false}, proxy: 5, control: 7}
	for _, tc := range []struct {
		name string
		now  liveness
		want string
	}{
		{"all turned", liveness{at: t0.Add(2 * time.Second), idle: 10 * time.Second, workers: []uint64{11, 21}, sleeping: []bool{false, false}, proxy: 6, control: 8}, ""},
		{"an idle worker waits", liveness{at: t0.Add(2 * time.Second), idle: 10 * time.Second, workers: []uint64{10, 21}, sleeping: []bool{true, false}, proxy: 6, control: 8}, ""},
		{"a worker stuck", liveness{at: t0.Add(2 * time.Second), idle: 10 * time.Second, workers: []uint64{10, 21}, sleeping: []bool{false, false}, proxy: 6, control: 8}, "worker 0"},
		{"the proxy's timers", liveness{at: t0.Add(2 * time.Second), idle: 10 * time.Second, workers: []uint64{11, 21}, sleeping: []bool{false, false}, proxy: 5, control: 8}, "dhcp proxy timers"},
		{"a worker stuck in its idle wait past poll_timeout", liveness{at: t0.Add(15 * time.Second), idle: 10 * time.Second, workers: []uint64{10, 21}, sleeping: []bool{true, false}, proxy: 6, control: 8}, "worker 0"},
		{"everything", liveness{at: t0.Add(2 * time.Second), idle: 10 * time.Second, workers: []uint64{10, 20}, sleeping: []bool{false, false}, proxy: 5, control: 7}, "worker 0, worker 1, dhcp proxy timers, control plane"},
	} {
		if got := strings.Join(stalled(prev, tc.now), ", "); got != tc.want {
			t.Errorf("%s: stalled %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestWatchdogWithholdsPingsWhileStalled runs the watchdog against a
// notification socket with parts that turn, then a DHCP proxy whose
// timers stop, then turn again: pings come, stop while it is stuck (the
// log and the status line name it), and come again.
func TestWatchdogWithholdsPingsWhileStalled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "200000") // a ping every 100 ms; progress judged over 1 s
	n, err := sdnotify.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	var logs syncBuf
	a := &Appliance{log: slog.New(slog.NewTextHandler(&logs, nil)), notify: n}
	var proxy, stuck atomic.Uint64
	look := func(now time.Time) liveness {
		if stuck.Load() == 0 {
			proxy.Add(1)
		}
		return liveness{at: now, workers: []uint64{uint64(now.UnixNano())}, sleeping: []bool{false}, proxy: proxy.Load(), control: uint64(now.UnixNano())}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.watchdog(ctx, look) }()
	defer func() { cancel(); <-done }()

	var mu sync.Mutex
	var got []string
	go func() {
		buf := make([]byte, 512)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, strings.TrimSpace(string(buf[:k])))
			mu.Unlock()
		}
	}()
	pings := func() (k int, status string) {
		mu.Lock()
		defer mu.Unlock()
		for _, g := range got {
			if g == "WATCHDOG=1" {
				k++
			} else {
				status = g
			}
		}
		return k, status
	}
	time.Sleep(1500 * time.Millisecond)
	if k, _ := pings(); k < 5 {
		t.Fatalf("%d pings in 1.5 s while every part turns, want ~15", k)
	}
	stuck.Store(1)
	time.Sleep(2500 * time.Millisecond) // a judgement of the stall within 1 s
	k1, status := pings()
	time.Sleep(1500 * time.Millisecond)
	if k2, _ := pings(); k2 != k1 {
		t.Errorf("%d pings while the proxy's timers are stuck", k2-k1)
	}
	if status != "STATUS=stalled: dhcp proxy timers" {
		t.Errorf("status %q while stuck", status)
	}
	if !strings.Contains(logs.String(), "stalled=\"dhcp proxy timers\"") {
		t.Errorf("no log line naming the stalled part:\n%s", logs.String())
	}
	stuck.Store(0)
	time.Sleep(2500 * time.Millisecond)
	if k3, status := pings(); k3 <= k1 || !strings.HasPrefix(status, "STATUS=forwarding") {
		t.Errorf("after the proxy turns again: %d more pings, status %q", k3-k1, status)
	}
}
