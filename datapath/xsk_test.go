package datapath

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/netnsrun"
	"github.com/ispmux/ispmux/internal/privtest"
)

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func uniq() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "dp" + hex.EncodeToString(b[:])
}

// wireTopo builds
//
//	ID-a [eth0 10.9.0.1/24] ── veth ── [p0] ID-x [p1] ── veth ── [eth0 10.9.0.2/24] ID-b
//
// and removes it when the test ends, failed or not.
func wireTopo(t *testing.T) (id string) {
	id = uniq()
	for _, ns := range []string{"x", "a", "b"} {
		sh(t, "ip", "netns", "add", id+"-"+ns)
	}
	t.Cleanup(func() {
		for _, ns := range []string{"x", "a", "b"} {
			_ = exec.Command("ip", "netns", "del", id+"-"+ns).Run()
		}
	})
	sh(t, "ip", "-n", id+"-x", "link", "add", "name", "p0", "type", "veth", "peer", "name", "eth0", "netns", id+"-a")
	sh(t, "ip", "-n", id+"-x", "link", "add", "name", "p1", "type", "veth", "peer", "name", "eth0", "netns", id+"-b")
	for _, c := range [][]string{
		{"-n", id + "-x", "link", "set", "p0", "up"},
		{"-n", id + "-x", "link", "set", "p1", "up"},
		{"-n", id + "-a", "addr", "add", "10.9.0.1/24", "dev", "eth0"},
		{"-n", id + "-b", "addr", "add", "10.9.0.2/24", "dev", "eth0"},
		{"-n", id + "-a", "link", "set", "eth0", "up"},
		{"-n", id + "-b", "link", "set", "eth0", "up"},
	} {
		sh(t, append([]string{"ip"}, c...)...)
	}
	return id
}

// inNetns runs fn on a thread switched to network namespace name, on a
// goroutine of its own: a thread that cannot be switched back stays locked
// (netnsrun.In) and dies with that goroutine, never with the test's. (A
// main thread left in another namespace would make the whole process look
// like a member of it.)
func inNetns(t *testing.T, name string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := netnsrun.InNamed(name, func() error { fn(); return nil }); err != nil {
			t.Errorf("netns %s: %v", name, err)
		}
	}()
	<-done
}

// wire forwards every frame from port p to port 1-p unchanged.
type wire struct{}

func (wire) Process(b *Batch) {
	for i, f := range b.Frames {
		b.Out[i] = Verdict{Action: Forward, Port: 1 - b.Port, Len: uint16(len(f))}
	}
}
func (wire) Flush() {}

func testConfig(ifname string) XDPConfig {
	return XDPConfig{Interface: ifname, Queues: 1, Frames: 4096, FrameSize: 2048,
		FillRing: 2048, CompletionRing: 2048, RXRing: 2048, TXRing: 2048,
		AttachMode: "native", BindMode: "auto"}
}

// TestXDPWire runs a real AF_XDP forwarder between two veths and pings
// through it: ARP and ICMP cross both UMEMs in both directions.
func TestXDPWire(t *testing.T) {
	privtest.Lab(t)
	for _, mode := range []string{"native", "skb"} {
		t.Run(mode, func(t *testing.T) {
			id := wireTopo(t)
			var ports []*XDPPort
			inNetns(t, id+"-x", func() {
				for _, n := range []string{"p0", "p1"} {
					c := testConfig(n)
					c.AttachMode = mode
					p, err := OpenXDP(c)
					if err != nil {
						t.Errorf("open %s: %v", n, err)
						return
					}
					ports = append(ports, p)
				}
			})
			if len(ports) != 2 {
				for _, p := range ports {
					p.Close()
				}
				t.FailNow()
			}
			if ports[0].ZeroCopy {
				t.Errorf("veth bound zero-copy; expected copy mode")
			}
			w, err := NewWorker(0, []Queue{ports[0].Queue(0), ports[1].Queue(0)}, wire{}, 64, 50*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error)
			go func() { done <- w.Run() }()

			out, err := exec.Command("ip", "netns", "exec", id+"-a", "ping", "-c", "20", "-i", "0.01", "-W", "1", "10.9.0.2").CombinedOutput()
			w.Stop()
			if err := <-done; err != nil {
				t.Errorf("worker: %v", err)
			}
			if err != nil || !strings.Contains(string(out), " 0% packet loss") {
				t.Errorf("ping through the AF_XDP wire: %v\n%s", err, out)
			}
			st := ports[0].Queue(0).Stats()
			if st.RxFrames < 20 || st.TxFrames < 20 {
				t.Errorf("p0 counters: %+v, want >= 20 rx and tx", st)
			}
			inNetns(t, id+"-x", func() {
				for _, p := range ports {
					if err := p.Close(); err != nil {
						t.Errorf("close: %v", err)
					}
				}
			})
			for _, n := range []string{"p0", "p1"} {
				if o := sh(t, "ip", "-n", id+"-x", "link", "show", n); strings.Contains(o, "xdp") {
					t.Errorf("XDP program still attached to %s after Close:\n%s", n, o)
				}
			}
		})
	}
}

// openWire opens p0 and p1 of wireTopo id with testConfig (the test stops
// if either fails).
func openWire(t *testing.T, id string) []*XDPPort {
	t.Helper()
	var ports []*XDPPort
	inNetns(t, id+"-x", func() {
		for _, n := range []string{"p0", "p1"} {
			p, err := OpenXDP(testConfig(n))
			if err != nil {
				t.Errorf("open %s: %v", n, err)
				return
			}
			ports = append(ports, p)
		}
	})
	if len(ports) != 2 {
		t.FailNow()
	}
	return ports
}

// parkedWire opens p0 and p1 of wireTopo id (closed when the test ends)
// with nothing on the wire but what the test sends: a stray frame would
// wake a worker that missed one. Static neighbours both ways (no ARP, which
// is sent again a second later), no IPv6 (router solicitations, MLD
// reports), and checksums computed in software (a veth leaves UDP's to an
// offload that never happens on the way through the AF_XDP copy). It
// returns them with a worker over both, handler h, that parks in the
// netpoller for an hour at a time (not running: the test runs it).
func parkedWire(t *testing.T, id string, h Handler) ([]*XDPPort, *Worker) {
	t.Helper()
	for _, side := range []struct{ ns, peerNS, peerIP string }{{"-a", "-b", "10.9.0.2"}, {"-b", "-a", "10.9.0.1"}} {
		mac := strings.Fields(sh(t, "ip", "-n", id+side.peerNS, "-br", "link", "show", "eth0"))[2]
		sh(t, "ip", "-n", id+side.ns, "neigh", "replace", side.peerIP, "lladdr", mac, "dev", "eth0", "nud", "permanent")
		sh(t, "ip", "netns", "exec", id+side.ns, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1")
		sh(t, "ip", "netns", "exec", id+side.ns, "ethtool", "-K", "eth0", "tx", "off")
	}
	ports := openWire(t, id)
	t.Cleanup(func() {
		inNetns(t, id+"-x", func() {
			for _, p := range ports {
				p.Close()
			}
		})
	})
	w, err := NewWorker(0, []Queue{ports[0].Queue(0), ports[1].Queue(0)}, h, 64, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if w.epc == nil {
		t.Fatal("no netpoller wait")
	}
	return ports, w
}

// TestXDPIdleWake: a frame already in the RX ring when a worker goes to
// sleep (with a deadline an hour away) keeps it awake. The worker looks at
// the rings instead of calling epoll_wait before it parks (epollReady); a
// frame the netpoller saw before the wait is forgotten by the runtime, so
// the look must find it, or the worker would sleep on it for the hour.
// TestXDPIdleWakeStress has frames arrive around and during its waits.
func TestXDPIdleWake(t *testing.T) {
	privtest.Lab(t)
	id := wireTopo(t)
	ports, w := parkedWire(t, id, wire{})

	// A frame in the ring before the worker sleeps: one ping, nobody
	// forwarding, nothing else on the wire (parkedWire). Once the ring
	// shows it, give the netpoller time to see (and the runtime to
	// forget) its edge, then sleep.
	ping := exec.Command("ip", "netns", "exec", id+"-a", "ping", "-c", "1", "-W", "1", "10.9.0.2")
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	defer ping.Wait()
	rx := ports[0].Queue(0).(rxPeeker)
	for deadline := time.Now().Add(5 * time.Second); !rx.rxReady(); {
		if time.Now().After(deadline) {
			t.Fatal("the ping never reached p0's RX ring")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	slept := make(chan error, 1)
	start := time.Now()
	go func() { slept <- w.sleep() }()
	select {
	case err := <-slept:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("slept %v with a frame in the ring", time.Since(start))
	case <-time.After(500 * time.Millisecond):
		w.Stop() // ends the sleep, and the test
		<-slept
		t.Fatal("the worker slept on a frame waiting in its RX ring")
	}
	w.RunOnce() // forward it (its answer may come too late for ping)
}

// TestXDPPortVanishes deletes one port's interface under a running worker:
// the worker keeps running and the other port keeps working.
func TestXDPPortVanishes(t *testing.T) {
	privtest.Lab(t)
	id := wireTopo(t)
	ports := openWire(t, id)
	// p0 is checked alone after p1 disappears.
	h := wire{}
	w, err := NewWorker(0, []Queue{ports[0].Queue(0), ports[1].Queue(0)}, h, 64, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- w.Run() }()
	ping := func() string {
		out, _ := exec.Command("ip", "netns", "exec", id+"-a", "ping", "-c", "5", "-i", "0.05", "-W", "1", "10.9.0.2").CombinedOutput()
		return string(out)
	}
	if out := ping(); !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("ping before: %s", out)
	}
	sh(t, "ip", "netns", "del", id+"-b") // p1's peer goes, and p1 with it
	time.Sleep(100 * time.Millisecond)
	_ = ping() // frames now go to a dead port: counted, never a crash
	before := ports[0].Queue(0).Stats().RxFrames
	_ = ping()
	if after := ports[0].Queue(0).Stats().RxFrames; after <= before {
		t.Errorf("p0 stopped receiving after p1 vanished: rx %d → %d", before, after)
	}
	w.Stop()
	if err := <-done; err != nil {
		t.Errorf("worker: %v", err)
	}
	t.Logf("p1 after vanishing: %+v", ports[1].Queue(0).Stats())
	inNetns(t, id+"-x", func() {
		for _, p := range ports {
			_ = p.Close()
		}
	})
}

// TestXDPMultiQueue runs two workers, one per queue, over veths with two
// queues each, and checks that traffic spread over many flows is forwarded
// and that both queues carried some of it.
func TestXDPMultiQueue(t *testing.T) {
	privtest.Lab(t)
	id := uniq()
	for _, ns := range []string{"x", "a", "b"} {
		sh(t, "ip", "netns", "add", id+"-"+ns)
	}
	t.Cleanup(func() {
		for _, ns := range []string{"x", "a", "b"} {
			_ = exec.Command("ip", "netns", "del", id+"-"+ns).Run()
		}
	})
	for i, peer := range []string{"a", "b"} {
		sh(t, "ip", "-n", id+"-x", "link", "add", "name", fmt.Sprintf("p%d", i), "numtxqueues", "2", "numrxqueues", "2",
			"type", "veth", "peer", "name", "eth0", "numtxqueues", "2", "numrxqueues", "2", "netns", id+"-"+peer)
		sh(t, "ip", "-n", id+"-x", "link", "set", "dev", fmt.Sprintf("p%d", i), "up")
		sh(t, "ip", "-n", id+"-"+peer, "addr", "add", fmt.Sprintf("10.9.0.%d/24", i+1), "dev", "eth0")
		sh(t, "ip", "-n", id+"-"+peer, "link", "set", "dev", "eth0", "up")
		sh(t, "ip", "netns", "exec", id+"-"+peer, "ethtool", "-K", "eth0", "tx", "off")
	}
	var ports []*XDPPort
	inNetns(t, id+"-x", func() {
		for _, n := range []string{"p0", "p1"} {
			c := testConfig(n)
			c.Queues = 2
			p, err := OpenXDP(c)
			if err != nil {
				t.Errorf("open %s: %v", n, err)
				return
			}
			ports = append(ports, p)
		}
	})
	if len(ports) != 2 {
		for _, p := range ports {
			p.Close()
		}
		t.FailNow()
	}
	defer inNetns(t, id+"-x", func() {
		for _, p := range ports {
			_ = p.Close()
		}
	})
	var workers []*Worker
	done := make(chan error, 2)
	for q := range 2 {
		w, err := NewWorker(q, []Queue{ports[0].Queue(q), ports[1].Queue(q)}, wire{}, 64, 20*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		workers = append(workers, w)
		go func() { done <- w.Run() }()
	}
	srv := exec.Command("ip", "netns", "exec", id+"-b", "iperf3", "-s", "-1")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	out, err := exec.Command("ip", "netns", "exec", id+"-a", "iperf3", "-c", "10.9.0.2", "-t", "2", "-P", "8", "--connect-timeout", "3000").CombinedOutput()
	_ = srv.Wait()
	for _, w := range workers {
		w.Stop()
	}
	for range workers {
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}
	if err != nil || !strings.Contains(string(out), "receiver") {
		t.Fatalf("iperf3 over two queues: %v\n%s", err, out)
	}
	for q := range 2 {
		st := ports[0].Queue(q).Stats()
		t.Logf("p0 queue %d: %+v", q, st)
		if st.RxFrames == 0 {
			t.Errorf("queue %d of p0 received nothing: flows were not spread, or its worker did not run", q)
		}
	}
}

// TestXDPOneOwner: a second OpenXDP on an interface that is open fails and
// leaves the first owner's program and traffic alone.
func TestXDPOneOwner(t *testing.T) {
	privtest.Lab(t)
	id := wireTopo(t)
	ports := openWire(t, id)
	w, err := NewWorker(0, []Queue{ports[0].Queue(0), ports[1].Queue(0)}, wire{}, 64, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- w.Run() }()
	ping := func() bool {
		out, _ := exec.Command("ip", "netns", "exec", id+"-a", "ping", "-c", "3", "-i", "0.05", "-W", "1", "10.9.0.2").CombinedOutput()
		return strings.Contains(string(out), " 0% packet loss")
	}
	if !ping() {
		t.Fatal("no forwarding to start with")
	}
	inNetns(t, id+"-x", func() {
		p, err := OpenXDP(testConfig("p0"))
		if err == nil {
			p.Close()
			t.Error("a second owner opened p0")
		} else if !strings.Contains(err.Error(), "in use") {
			t.Errorf("second open: %v, want an in-use error", err)
		}
	})
	if !ping() {
		t.Error("the failed second open broke the first owner's forwarding")
	}
	w.Stop()
	if err := <-done; err != nil {
		t.Errorf("worker: %v", err)
	}
	inNetns(t, id+"-x", func() {
		for _, p := range ports {
			_ = p.Close()
		}
	})
}

// TestXDPDeadOwnerReplaced: the program of an owner that died (SIGKILL, a
// real process: its lock and sockets go with it, its program stays
// attached) is replaced by the next owner, which reports it.
func TestXDPDeadOwnerReplaced(t *testing.T) {
	privtest.Lab(t)
	id := wireTopo(t)
	child := exec.Command("ip", "netns", "exec", id+"-x", os.Args[0], "-test.run", "^TestXDPOwnerChild$", "-test.v")
	child.Env = append(os.Environ(), "ISPMUX_XSK_CHILD=p0")
	var childLog strings.Builder
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			childLog.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "child: open") {
				ok = true
				break
			}
		}
		ready <- ok
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = child.Process.Kill()
			_ = child.Wait()
			t.Fatalf("the child did not open p0:\n%s", childLog.String())
		}
	case <-time.After(10 * time.Second):
		_ = child.Process.Kill()
		_ = child.Wait()
		t.Fatal("the child did not open p0 within 10 s")
	}
	_ = child.Process.Kill() // ip netns exec execs the test binary: this is it
	_ = child.Wait()
	inNetns(t, id+"-x", func() {
		p, err := OpenXDP(testConfig("p0"))
		if err != nil {
			t.Errorf("open after the owner died: %v", err)
			return
		}
		if p.Replaced == 0 {
			t.Error("the dead owner's program was not reported as replaced")
		}
		p.Close()
	})
}

// TestXDPOwnerChild is TestXDPDeadOwnerReplaced's owner that dies: it opens the
// port named by ISPMUX_XSK_CHILD and waits to be killed.
func TestXDPOwnerChild(t *testing.T) {
	name := os.Getenv("ISPMUX_XSK_CHILD")
	if name == "" {
		return // not run as the child: nothing to do (see TestXDPDeadOwnerReplaced)
	}
	p, err := OpenXDP(testConfig(name))
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	_ = p
	fmt.Println("child: open")
	time.Sleep(time.Minute)
}

// TestDisableVLANStrip: receive VLAN stripping found on is turned off (and
// reported), found off is left alone.
func TestDisableVLANStrip(t *testing.T) {
	privtest.Lab(t)
	id := wireTopo(t)
	sh(t, "ip", "netns", "exec", id+"-x", "ethtool", "-K", "p0", "rxvlan", "on")
	var changed, again bool
	var err1, err2 error
	inNetns(t, id+"-x", func() {
		changed, err1 = disableVLANStrip("p0")
		again, err2 = disableVLANStrip("p0")
	})
	if err1 != nil || err2 != nil || !changed || again {
		t.Fatalf("first call %v %v, second %v %v: want changed, then nothing to do", changed, err1, again, err2)
	}
	if out := sh(t, "ip", "netns", "exec", id+"-x", "ethtool", "-k", "p0"); !strings.Contains(out, "rx-vlan-offload: off") {
		t.Errorf("rx VLAN offload still on:\n%s", out)
	}
}
