package datapath

import (
	"math/rand/v2"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/privtest"
)

// TestXDPIdleWakeStress pings through a worker that parks for an hour at a
// time and whose iterations sometimes end slowly (slowFlush), so that
// frames (ping -f's next request, sent as soon as the reply is out) often
// land after the worker read its rings and before its wait begins: the
// netpoller sees their edge then and the runtime forgets it when the wait
// starts (RawRead resets the descriptor); only the look at the rings
// (epollReady) finds them. A frame left in a ring waits for the next
// request (10 ms in a flood) or, the last of a run, for the hour (lost to
// ping's -W 1), so the short floods from both sides (p0's ring, p1's)
// catch a look that misses a ring: a mutant that skips it, or skips p1,
// loses 2-7 of the 60 last requests. "kicks" adds injections at random
// moments (read deadlines in the past racing the parks).
func TestXDPIdleWakeStress(t *testing.T) {
	privtest.Lab(t)
	if testing.Short() {
		t.Skip("-short")
	}
	for _, kicks := range []bool{false, true} {
		name := map[bool]string{false: "frames", true: "kicks"}[kicks]
		t.Run(name, func(t *testing.T) { idleWakeStress(t, kicks) })
	}
}

func idleWakeStress(t *testing.T, kicks bool) {
	id := wireTopo(t)
	ports := openWire(t, id)
	defer inNetns(t, id+"-x", func() {
		for _, p := range ports {
			p.Close()
		}
	})
	w, err := NewWorker(0, []Queue{ports[0].Queue(0), ports[1].Queue(0)}, slowFlush{}, 64, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if w.epc == nil {
		t.Fatal("no netpoller wait")
	}
	done := make(chan error)
	go func() { done <- w.Run() }()
	stopInj := make(chan struct{})
	var wg sync.WaitGroup
	if kicks {
		wg.Add(1)
		go func() { // junk frames out of p1, dropped by b
			defer wg.Done()
			junk := make([]byte, 60)
			copy(junk, []byte{0x02, 0, 0, 0, 0, 0x99, 0x02, 0, 0, 0, 0, 0x98, 0x88, 0xb5})
			for {
				select {
				case <-stopInj:
					return
				case <-time.After(time.Duration(rand.IntN(3000)) * time.Microsecond):
				}
				w.Inject(1, junk)
			}
		}()
	}
	// Each run pings from a or from b: requests wait in p0's ring or in p1's.
	type run struct {
		from, to string
		args     []string
	}
	runs := []run{
		{"a", "10.9.0.2", []string{"-f", "-c", "2000", "-W", "1"}},
		{"b", "10.9.0.1", []string{"-c", "300", "-i", "0.003", "-W", "1"}},
	}
	if !kicks {
		// Short floods: within one, the next request rescues a stuck
		// frame (10 ms later); the last request of each has nothing
		// after it. Kicks would rescue it within 3 ms.
		for i := range 60 {
			r := run{"a", "10.9.0.2", []string{"-f", "-c", "25", "-W", "1"}}
			if i%2 == 1 {
				r.from, r.to = "b", "10.9.0.1"
			}
			runs = append(runs, r)
		}
	}
	rtt := regexp.MustCompile(`= [0-9.]+/[0-9.]+/([0-9.]+)/`)
	for _, r := range runs {
		cmd := append([]string{"netns", "exec", id + "-" + r.from, "ping"}, append(r.args, r.to)...)
		out, err := exec.Command("ip", cmd...).CombinedOutput()
		s := string(out)
		maxms := 1e9
		if m := rtt.FindStringSubmatch(s); m != nil {
			maxms, _ = strconv.ParseFloat(m[1], 64)
		}
		if r.args[2] != "25" {
			t.Logf("%s: ping %v: max rtt %v ms", r.from, r.args, maxms)
		}
		if err != nil || !strings.Contains(s, " 0% packet loss") || maxms > 100 {
			t.Errorf("%s: ping %v through a worker parked for an hour: %v\n%s", r.from, r.args, err, s[max(0, len(s)-300):])
		}
	}
	close(stopInj)
	wg.Wait()
	w.Stop()
	if err := <-done; err != nil {
		t.Errorf("worker: %v", err)
	}
}

// slowFlush is wire whose Flush (the end of an iteration, after the rings
// were read) takes up to 200 µs half the time.
type slowFlush struct{ wire }

func (slowFlush) Flush() {
	if d := rand.IntN(400); d < 200 {
		time.Sleep(time.Duration(d) * time.Microsecond)
	}
}
