package dhcpproxy

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

// betaKea answers like kea() but as beta's server (its server id), and
// knows customer c-s1.
func betaKea(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	mt := dhcpv4.MessageTypeOffer
	switch m.MessageType() {
	case dhcpv4.MessageTypeRequest:
		mt = dhcpv4.MessageTypeAck
	case dhcpv4.MessageTypeRelease:
		return nil
	}
	rep, _ := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(mt),
		dhcpv4.WithYourIP(net.IPv4(100, 65, 0, 7)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(betaSID.AsSlice()))),
		dhcpv4.WithLeaseTime(3600),
		dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, m.Options.Get(dhcpv4.OptionRelayAgentInformation)))
	return rep
}

// serveBeta plays beta's server for the frames sent to beta so far; the
// frames to other ports are kept for the test. It returns what the
// subscriber was sent.
func (r *prig) serveBeta() []*dhcpv4.DHCPv4 {
	r.t.Helper()
	return r.serveBetaWith(betaKea)
}

// serveBetaWith is serveBeta with betaKea's answers made by betaKea.
func (r *prig) serveBetaWith(betaKea func(*dhcpv4.DHCPv4) *dhcpv4.DHCPv4) []*dhcpv4.DHCPv4 {
	r.t.Helper()
	var toClient []*dhcpv4.DHCPv4
	var keep []sent
	for _, s := range r.snd.take() {
		switch s.port {
		case betaPort:
			if rep := betaKea(dhcpOf(s.frame)); rep != nil {
				r.p.HandleFrame(betaPort, fib.UDPFrame(upMAC+1, gwMAC, 0, betaSID, betaGiaddr, 67, 67, rep.ToBytes()))
			}
		case accPort:
			toClient = append(toClient, dhcpOf(s.frame))
		default:
			keep = append(keep, s)
		}
	}
	r.p.committing.Wait()
	r.p.notes.wait()
	for _, s := range r.snd.take() {
		if s.port == accPort {
			toClient = append(toClient, dhcpOf(s.frame))
		} else {
			keep = append(keep, s)
		}
	}
	r.snd.mu.Lock()
	r.snd.frames = append(r.snd.frames, keep...)
	r.snd.mu.Unlock()
	return toClient
}

// A device bound at alpha moves to beta while alpha's uplink is down: its
// old binding is revoked through an intent (the RELEASE to alpha waits for
// alpha's next hop) and its DORA at beta goes ahead, as documented
// (ARCHITECTURE.md "Intent before telling the ISP": a device that left an
// ISP whose uplink is down still reaches its new one). Then ispmux
// restarts (a crash, or a plain restart: the intent is durable and
// pending either way). The restore's supersede() sees the beta binding,
// newer than alpha's intent, and completed alpha's intent without ever
// sending it: alpha kept the lease for good (orphaned past the start,
// which the rules forbid for a revocation). The beta binding proves only
// that beta's DISCOVER went out, not alpha's RELEASE: flushIntentsOf
// holds back only the intents of the ISP the message goes to. Only the
// answer of the intent's own ISP to a message relayed after it completes
// it early now (completeAnswered).
func TestMovedDeviceReleaseToDownISPNotSuperseded(t *testing.T) {
	r, cs := boundAtAlpha(t)
	down := downISPTables{r.tab, 0}
	r.p = New(r.p.config(), cs, r.p.reg, down, r.snd, nil)
	if _, err := r.p.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	r.moveTo("beta")
	r.p.RevalidateMACs([]uint64{s1MAC})
	time.Sleep(5 * time.Millisecond)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	got := r.serveBeta()
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("DISCOVER at beta: %v (counters %v)", got, r.p.Counters())
	}
	req, _ := dhcpv4.NewRequestFromOffer(got[0])
	r.fromClient(req)
	if got := r.serveBeta(); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("REQUEST at beta: %v (counters %v)", got, r.p.Counters())
	}
	if r.p.PendingIntents() != 1 {
		t.Fatalf("pending intents %d, want alpha's RELEASE (alpha unreachable)", r.p.PendingIntents())
	}
	for _, s := range r.snd.take() {
		if s.port == upPort {
			t.Fatalf("something was sent to alpha while it was down: %v", dhcpOf(s.frame))
		}
	}

	// Restart (crash or not), alpha reachable again.
	p2 := New(r.p.config(), cs, r.p.reg, r.tab, r.snd, nil)
	if _, err := p2.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	p2.expire(time.Now())
	p2.expire(time.Now().Add(time.Second))
	released := len(r.sentUp(dhcpv4.MessageTypeRelease)) > 0
	if !released {
		ins, _ := r.store.Intents()
		t.Errorf("alpha was never sent the RELEASE of the revoked lease (intents left %d, counters %v): alpha keeps it, orphaned for good", len(ins), p2.Counters())
	}
}

// switchRigAt is newSRig on the store file path (kept across a crash).
func switchRigAt(t *testing.T, path string) *prig {
	st, err := subscribers.Open(path, subscribers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &prig{t: t, store: st, tab: &fakeTables{bound: map[uint64]binding.Binding{}, store: st}, snd: &fakeSender{}}
	r.p = New(switchRigConfig(), st, storeRegistry{st}, r.tab, r.snd, nil)
	return r
}

// switchRigConfig is switchRigAt's configuration: circuit acc0, ISPs
// alpha and beta.
func switchRigConfig() Config {
	return Config{
		Limits:   Limits{Timeout: 300 * time.Millisecond, MaxPending: 16, MACRate: 100, MACBurst: 100, CircuitRate: 1000, CircuitBurst: 1000, MaxBindingsPerCircuit: 10, ClientLeaseMax: 10 * time.Minute},
		Circuits: []Circuit{{Name: "acc0", Interface: "acc0", Port: accPort, MAC: accMAC, Addr: ourSID}},
		ISPs: []ISP{{Index: 0, Name: "alpha", Port: upPort, MAC: upMAC, Addr: giaddr, Servers: []netip.Addr{ispSID}, CircuitID: "{interface}:{vlan}"},
			{Index: 1, Name: "beta", Port: betaPort, MAC: upMAC + 1, Addr: betaGiaddr, Servers: []netip.Addr{betaSID}, CircuitID: "{interface}:{vlan}"}},
	}
}

const moveCrashEnv = "DHCPPROXY_MOVE_CRASH_CHILD"

// The crash version, alpha reachable throughout: a device bound at alpha
// is moved to beta; its DISCOVER ends the alpha binding (intent durable,
// the RELEASE queued to alpha's uplink) and goes to beta (another uplink,
// another queue); beta ACKs within the 200 ms the intent waits before its
// completion (intentSettle), and ispmux is SIGKILLed at bind/after-ack of
// that ACK. The queued RELEASE may not have left (that is why intents
// wait 200 ms: F3), yet the restore completed the intent without sending
// it, because the beta binding was newer: alpha kept the lease for good.
// The intent is replayed now.
func TestCrashAfterMoveReplaysOtherISPsRelease(t *testing.T) {
	if path := os.Getenv(moveCrashEnv); path != "" {
		r := switchRigAt(t, path)
		if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(s1)), CustomerID: "c-s1", ISP: "alpha", Source: "api"}); err != nil {
			t.Fatal(err)
		}
		r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil) // bind/after-ack #1
		r.snd.take()
		r.moveTo("beta")
		r.p.RevalidateMACs([]uint64{s1MAC})
		time.Sleep(5 * time.Millisecond)
		r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
		got := r.serveBeta()
		if len(got) != 1 {
			t.Fatalf("child: DISCOVER at beta: %v", got)
		}
		req, _ := dhcpv4.NewRequestFromOffer(got[0])
		r.fromClient(req)
		r.serveBeta() // bind/after-ack #2: SIGKILL
		t.Fatal("child: the failpoint was not hit")
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	path := filepath.Join(t.TempDir(), "s.db")
	runKilledAt(t, "TestCrashAfterMoveReplaysOtherISPsRelease", moveCrashEnv, path, failpoint.BindAfterAck+"@2")
	r := switchRigAt(t, path)
	if ins, _ := r.store.Intents(); len(ins) != 1 || ins[0].ISP != "alpha" {
		t.Fatalf("intents after the crash %+v, want alpha's RELEASE pending", ins)
	}
	if _, err := r.p.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.p.Lease(accPort, 0, s1MAC); !ok {
		t.Fatal("the beta binding (ACKed) was not restored")
	}
	r.p.expire(time.Now())
	r.p.expire(time.Now().Add(time.Second))
	released := len(r.sentUp(dhcpv4.MessageTypeRelease)) > 0
	if !released {
		ins, _ := r.store.Intents()
		t.Errorf("after the crash alpha's RELEASE was completed without being sent again (intents left %d, counters %v): alpha keeps the lease of a device that left it", len(ins), r.p.Counters())
	}
}

// At a restart with a RELEASE pending (the ISP's next hop not resolved
// yet), the subscriber's new DISCOVER waits in relayLater. When the next
// hop resolves, the tick's flushIntents and relayLater race: if the tick
// has claimed the intent (sendIntent, between its claim and its inject),
// relayLater's flushIntentsOf reports false ("being sent by another
// goroutine: not known to be on the wire yet") and relayLater ignores
// that and relayed the DISCOVER at once: the ISP got the DISCOVER before
// the RELEASE, which then freed the lease the new exchange was granted
// (F1, docs/RELIABILITY.md: "a subscriber's pending intents are sent
// before any new message of it is relayed"); it waits now. The tick's
// claim is made here by hand, at the instant the tick would hold it.
func TestRelayLaterWaitsForClaimedRelease(t *testing.T) {
	r := releasedWhileDown(t, false) // restarted, the next hop not resolved yet
	p2 := r.p
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	un := p2.intents.unsent()
	if len(un) != 1 {
		t.Fatalf("unsent intents %d, want the RELEASE", len(un))
	}
	// The tick's sendIntent has claimed it, as the next hop resolves.
	if claimed, _ := p2.intents.claim(un[0].in.ID); !claimed {
		t.Fatal("could not claim the intent")
	}
	r.setUplinkDown(false)
	deadline := time.Now().Add(500 * time.Millisecond)
	var order []dhcpv4.MessageType
	for time.Now().Before(deadline) && len(order) == 0 {
		time.Sleep(10 * time.Millisecond)
		for _, s := range r.snd.take() {
			if s.port == upPort {
				order = append(order, dhcpOf(s.frame).MessageType())
			}
		}
	}
	// The tick's send goes on.
	p2.intents.unclaim(un[0].in.ID)
	p2.expire(time.Now())
	p2.committing.Wait()
	for _, s := range r.snd.take() {
		if s.port == upPort {
			order = append(order, dhcpOf(s.frame).MessageType())
		}
	}
	if len(order) == 0 || order[0] != dhcpv4.MessageTypeRelease {
		t.Errorf("to the ISP, in order: %v; want the pending RELEASE before the subscriber's new DISCOVER", order)
	}
}
