package lab

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestThreadedNAPI: bench forward's --xdp-napi-thread turns on threaded
// NAPI for a port, pins the thread it gets to the CPU asked for, and turns
// it off again.
func TestThreadedNAPI(t *testing.T) {
	topo := up(t, Options{})
	ctx := context.Background()
	ns, dev := topo.Appliance.NS, topo.Appliance.Access[0].Name
	// A veth has a NAPI instance once GRO (or XDP) is on.
	if err := SetGRO(ctx, ns, dev, true); err != nil {
		t.Fatal(err)
	}
	cpu := strconv.Itoa(runtime.NumCPU() - 1)
	off, err := ThreadedNAPI(ctx, ns, dev, cpu)
	if err != nil {
		t.Fatal(err)
	}
	on, err := run(ctx, "ip", "netns", "exec", ns, "cat", "/sys/class/net/"+dev+"/threaded")
	if err != nil || strings.TrimSpace(on) != "1" {
		t.Errorf("threaded reads %q (%v), want 1", on, err)
	}
	threads := napiThreads(dev)
	if len(threads) == 0 {
		t.Fatal("no NAPI thread")
	}
	pinned := 0
	for pid := range threads {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok && strings.TrimSpace(v) == cpu {
				pinned++
			}
		}
	}
	if pinned == 0 {
		t.Errorf("no NAPI thread of %s pinned to CPU %s", dev, cpu)
	}
	if err := off(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := run(ctx, "ip", "netns", "exec", ns, "cat", "/sys/class/net/"+dev+"/threaded"); err != nil || strings.TrimSpace(v) != "0" {
		t.Errorf("after off, threaded reads %q (%v), want 0", v, err)
	}
}
