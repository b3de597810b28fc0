package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/lab"
)

// The switching rows of the failpoint matrix: ispmux answering a renewal
// itself (before the ISP's T1, or after the ISP's silence), relaying one
// past the ISP's T1, and a moved device's old binding ending at its NAK or
// at its deadline. Crashed at each of their points, restarted: nothing
// lost, phantom or orphaned (the views of crash_test.go).

// switchCrashCovers are the failpoints TestCrashMatrixSwitch crashes at
// (see TestCrashMatrixCoversEveryPoint).
var switchCrashCovers = []string{
	failpoint.RenewLocalAfterAck, failpoint.RenewRelayBeforeSend, failpoint.RenewSilenceAfterAck,
	failpoint.MoveNakBeforeEnd, failpoint.MoveAfterNak, failpoint.MoveCutBeforeEnd,
}

// The switching lab: Kea leases of switchLease (a client asking for less
// gets less: the matrix's short conf, matrixLease), ispmux's client leases
// of at most switchClientLease.
const (
	switchLease       = 120 * time.Second
	switchClientLease = 30 * time.Second
)

// afterISPT1 waits until the ISP's T1 of c's binding (half a matrixLease
// before its end, c.exp; the status gives whole seconds) has passed: a
// renewal before it is answered by ispmux itself (nothing relayed, no
// bind/ point hit), after it is relayed to the ISP.
func (c *caseRun) afterISPT1() { c.afterT1(matrixLease) }

// afterT1 is afterISPT1 for a binding of an ISP lease of lease.
func (c *caseRun) afterT1(lease time.Duration) {
	time.Sleep(time.Until(c.exp.Add(-lease/2 + 1500*time.Millisecond)))
}

// stopKeaUntilCrash stops (SIGSTOP) the Kea of c's ISP and has it
// continue as soon as the armed ispmux is dead (the runner then asks Kea
// for the lease, and the settling needs it), or after 30 s.
func (c *caseRun) stopKeaUntilCrash() {
	c.t.Helper()
	r := c.m.r
	if n := r.killInNS(r.isp(c.sub.ISP).NS, "kea-dhcp4", syscall.SIGSTOP); n != 1 {
		c.t.Errorf("SIGSTOP to %d kea-dhcp4 processes, want 1", n)
	}
	ns, cur := r.isp(c.sub.ISP).NS, c.m.cur
	cont := func() { r.killInNS(ns, "kea-dhcp4", syscall.SIGCONT) }
	c.t.Cleanup(cont)
	go func() {
		for deadline := time.Now().Add(30 * time.Second); !cur.exited() && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		for _, pid := range nsPids(ns, "kea-dhcp4") {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
}

// nsPids are the pids of the processes named name in namespace ns.
func nsPids(ns, name string) []int {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && filepath.Base(strings.Split(string(cl), "\x00")[0]) == name {
			pids = append(pids, pid)
		}
	}
	return pids
}

// silenceLease is what the ISP-silent row's dhclient asks for: T1 at
// 20 s, and the lease still running through the 4 s timeout, the crash and
// the restart.
const silenceLease = 40 * time.Second

// moveToBeta moves c's subscriber (alpha's) to beta by a reload: make-
// before-break, its alpha binding keeps forwarding. (beta's Kea does not
// know it: it gets no lease there, so its views stay alpha's.)
func (c *caseRun) moveToBeta() {
	c.reconfigure(func(e string) string { return strings.Replace(e, `isp = "alpha"`, `isp = "beta"`, 1) })
}

// rebindUntilACK retransmits a REBINDING REQUEST until answered (settle).
func (c *caseRun) rebindUntilACK() {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if a := c.rebind(time.Second); a != nil {
			if a.MessageType() != dhcpv4.MessageTypeAck || !a.YourIPAddr.Equal(net.IP(c.addr.AsSlice())) {
				c.t.Errorf("rebinding answered %s for %v, want an ACK for %v", a.MessageType(), a.YourIPAddr, c.addr)
			}
			return
		}
	}
	c.t.Errorf("no answer to the rebinding REQUEST after the restart")
}

// oldLeaseReleased checks that alpha's Kea no longer holds c's lease
// within the given time after the restart.
func (c *caseRun) oldLeaseReleased(within time.Duration) {
	if !c.m.waitKea(c.sub, within, func(l lab.KeaLease, ok bool) bool { return !ok || !l.Active(time.Now()) }) {
		c.t.Errorf("alpha's Kea still holds the lease of the subscriber moved to beta %v after the restart", within)
	}
}

// theSwitchExchanges are the switching rows. s1 is alpha's (the moves);
// s2 (udhcpc) and s3 (hand-built) beta's.
func theSwitchExchanges() []exchange {
	return []exchange{
		{
			// Before the ISP's T1 (60 s of 120): ispmux answers.
			name: "local renewal", sub: "s2", client: "udhcpc (SIGUSR1: unicast REQUEST)", points: []string{failpoint.RenewLocalAfterAck},
			setup: func(c *caseRun) { c.bindWith("udhcpc") },
			act:   func(c *caseRun) { c.cl.signal(syscall.SIGUSR1) },
			settle: func(c *caseRun) {
				// Answered by ispmux again after the restart, the
				// binding as it was (nothing to extend before T1).
				deadline := time.Now().Add(15 * time.Second)
				for time.Now().Before(deadline) {
					if c.m.counter("renewal_local") > 0 {
						if b, ok := c.m.r.boundNoFail(c.sub.MAC); !ok || b.IP != c.addr.String() {
							c.t.Errorf("binding after the restart %+v %v, want %v", b, ok, c.addr)
						}
						return
					}
					c.cl.signal(syscall.SIGUSR1)
					time.Sleep(1500 * time.Millisecond)
				}
				c.t.Errorf("no renewal answered by ispmux after the restart; client:\n%s", lastLines(c.cl.out.String(), 10))
			},
		},
		{
			name: "renewal past the ISP's T1", sub: "s3", client: "hand-built REBINDING REQUEST (dhclient's 30 s lease)",
			points: []string{failpoint.RenewRelayBeforeSend},
			setup: func(c *caseRun) {
				c.bindShort()
				c.cl.kill() // its address stays: the test is the client now
			},
			act: func(c *caseRun) {
				c.afterISPT1()
				c.rebind(0)
			},
			settle: func(c *caseRun) { c.rebindUntilACK() },
		},
		{
			// The ISP's Kea stopped (SIGSTOP): the relayed renewal times
			// out (dhcp.timeout, 4 s) and ispmux answers from the binding.
			name: "renewal, the ISP silent", sub: "s3", client: "hand-built REBINDING REQUEST (dhclient's 40 s lease), Kea stopped",
			points: []string{failpoint.RenewSilenceAfterAck},
			setup: func(c *caseRun) {
				c.bindFor(silenceLease)
				c.cl.kill()
			},
			act: func(c *caseRun) {
				c.afterT1(silenceLease)
				c.stopKeaUntilCrash()
				c.rebind(0)
			},
			settle: func(c *caseRun) { c.rebindUntilACK() },
		},
		{
			// Moved by a reload: its next renewal is NAKed, the old
			// binding ended first (RELEASE to alpha). At a restart
			// before that end, the start keeps it, forwarding, until
			// the device's next message or client_lease_max (the move
			// is in the configuration): the client's renewal (again)
			// ends it.
			name: "move, renewal NAKed", sub: "s1", client: "udhcpc (SIGUSR1 after the move)", staleClient: true,
			points: []string{failpoint.MoveNakBeforeEnd, failpoint.MoveAfterNak},
			setup:  func(c *caseRun) { c.bindWith("udhcpc") },
			act: func(c *caseRun) {
				c.moveToBeta()
				if b, ok := c.m.r.boundNoFail(c.sub.MAC); !ok || b.ISP != "alpha" {
					c.t.Errorf("the old binding stopped at the move (make-before-break): %+v %v", b, ok)
				}
				c.cl.signal(syscall.SIGUSR1)
			},
			settle: func(c *caseRun) {
				// After move/after-nak the end is durable and its
				// replayed intent frees alpha's lease; after
				// move/nak-before-end the client's renewal does.
				deadline := time.Now().Add(15 * time.Second)
				for time.Now().Before(deadline) {
					if l, ok := c.m.keaLease(c.sub); !ok || !l.Active(time.Now()) {
						return
					}
					c.cl.signal(syscall.SIGUSR1)
					time.Sleep(1500 * time.Millisecond)
				}
				c.t.Errorf("alpha's Kea still holds the lease of the subscriber moved to beta after the restart and its renewals")
			},
		},
		{
			// Moved by a reload, the client gone: the old binding is cut
			// client_lease_max after the move. At a restart before that
			// cut, the start keeps it until client_lease_max from the
			// start (a deadline in RAM, every lease ispmux gave before
			// the restart run out by then).
			name: "move, client gone", sub: "s1", client: "dhclient, killed", staleClient: true,
			points: []string{failpoint.MoveCutBeforeEnd},
			setup: func(c *caseRun) {
				c.bindWith("dhclient")
				c.cl.kill()
			},
			act: func(c *caseRun) {
				c.moveToBeta()
				// The runner waits 20 s for the crash.
				time.Sleep(switchClientLease - 15*time.Second)
			},
			settle: func(c *caseRun) {
				if b, ok := c.m.r.boundNoFail(c.sub.MAC); !ok || b.ISP != "alpha" {
					c.t.Errorf("the start ended the moved device's old binding: %+v %v; want it kept until client_lease_max from the start", b, ok)
				}
				c.oldLeaseReleased(switchClientLease + 10*time.Second)
			},
		},
	}
}

// bindShort binds c.sub with dhclient asking for a matrixLease lease (T1
// 15 s, reached within a case).
func (c *caseRun) bindShort() { c.bindFor(matrixLease) }

// bindFor binds c.sub with dhclient asking for a lease of lease.
func (c *caseRun) bindFor(lease time.Duration) {
	c.t.Helper()
	m := c.m
	conf := m.short
	if lease != matrixLease {
		conf = filepath.Join(m.r.dir, fmt.Sprintf("dhclient-lease-%d.conf", int(lease/time.Second)))
		if err := os.WriteFile(conf, []byte(clientConf+fmt.Sprintf("send dhcp-lease-time %d;\n", int(lease/time.Second))), 0o644); err != nil {
			c.fatalf("%v", err)
		}
	}
	c.cl = m.r.startDhclient(c.sub, conf)
	m.clients = append(m.clients, c.cl)
	a, exp, ok := m.waitBound(c.sub, 15*time.Second, netip.Addr{})
	if !ok {
		c.fatalf("setup: %s not bound; client:\n%s", c.sub.Name, c.cl.out.String())
	}
	if time.Until(exp) > lease+time.Second {
		c.fatalf("lease until %v: Kea did not grant the %v asked for", exp, lease)
	}
	c.addr, c.exp = a, exp
	if l, ok := m.keaLease(c.sub); ok && l.ClientID != "" {
		c.cid, _ = hexColon(l.ClientID)
	}
}

// TestCrashMatrixSwitch runs the switching rows of the failpoint matrix
// on a lab of their own (Kea leases of 120 s, client leases of 30 s).
func TestCrashMatrixSwitch(t *testing.T) {
	t.Parallel()
	r := newRig(t, lab.Options{Subscribers: 3, DHCP: true, LeaseTime: switchLease, ClientLeaseMax: switchClientLease})
	m := &matrix{r: r, fp: failpointBinary(t)}
	var err error
	if m.base, err = os.ReadFile(r.cfg); err != nil {
		t.Fatal(err)
	}
	m.conf = r.writeClientConf("")
	m.short = r.writeClientConf(fmt.Sprintf("send dhcp-lease-time %d;\n", int(matrixLease/time.Second)))
	for _, s := range r.topo.Subscribers {
		if s.Role == lab.RoleValid {
			m.subs = append(m.subs, s)
		}
	}
	t.Cleanup(func() {
		for _, c := range m.clients {
			c.kill()
		}
		m.cur.kill9()
	})
	only := os.Getenv("ISPMUX_CRASH_ONLY")
	var results []caseResult
	for _, ex := range theSwitchExchanges() {
		for _, p := range ex.points {
			name := ex.name + "/" + p
			if only != "" && !strings.Contains(name, only) {
				continue
			}
			res := caseResult{Exchange: ex.name, Point: p, Client: ex.client}
			t.Run(name, func(t *testing.T) { m.runCase(t, ex, p, "", &res) })
			r.t = t
			results = append(results, res)
		}
	}
	passed := 0
	for _, res := range results {
		mark := "FAIL"
		if res.Pass {
			passed++
			mark = "PASS"
			if res.Orphaned > 0 || res.StaleClient > 0 {
				mark = "PASS*"
			}
		}
		t.Logf("  %s %-28s %-24s lost %d phantom %d orphaned %d restart %d ms  at restart: %s  %s", mark, res.Exchange, res.Point,
			res.Lost, res.Phantom, res.Orphaned, res.RestartMS, res.AtRestart, res.View)
	}
	t.Logf("switching rows: %d cases, %d passed", len(results), passed)
}
