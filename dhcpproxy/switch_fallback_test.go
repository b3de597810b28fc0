package dhcpproxy

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/subscribers"
)

// switchedAt binds s1 at beta, then moves its registration to alpha's
// c-s1 with source, and has the device renew: NAKed (its beta binding
// ends, the RELEASE to beta).
func switchedAt(t *testing.T, source string) *prig {
	t.Helper()
	r := newORig(t, Onboarding{}, 0, false)
	cfg := r.p.config()
	cfg.Limits.ClientLeaseMax = 10 * time.Minute
	cfg.ISPs = append(cfg.ISPs, ISP{Index: 1, Name: "beta", Port: betaPort, MAC: upMAC + 1, Addr: betaGiaddr,
		Servers: []netip.Addr{betaSID}, CircuitID: "{interface}:{vlan}"})
	r.p = New(cfg, r.store, r.p.reg, r.tab, r.snd, nil)
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(s1)), CustomerID: "c-s1", ISP: "beta", Source: "api"}); err != nil {
		t.Fatal(err)
	}
	// beta's address outside the onboarding pool (betaKea's is in it).
	beta := func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := betaKea(m)
		if rep != nil {
			rep.YourIPAddr = net.IPv4(100, 66, 0, 7)
		}
		return rep
	}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	got := r.serveBetaWith(beta)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("DISCOVER at beta: %v (counters %v)", got, r.p.Counters())
	}
	req, _ := dhcpv4.NewRequestFromOffer(got[0])
	r.fromClient(req)
	got = r.serveBetaWith(beta)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("REQUEST at beta: %v (counters %v)", got, r.p.Counters())
	}
	betaIP := addrOf(got[0].YourIPAddr)
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(s1)), CustomerID: "c-s1", ISP: "alpha", Source: source}); err != nil {
		t.Fatal(err)
	}
	r.p.RevalidateMACs([]uint64{s1MAC})
	r.fromClient(renewOf(t, s1, betaIP))
	if got := r.serveBetaWith(beta); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("the moved device's renewal: %v, want ispmux's NAK (counters %v)", got, r.p.Counters())
	}
	r.snd.take() // the RELEASE to beta
	return r
}

// A subscriber bound at beta switches itself to alpha on the portal (a
// claim), with a customer alpha registered in ispmux but refuses in its
// DHCP server: after alpha's NAK the device's next DISCOVER is answered
// from the garden, with the failure for the portal, as for a device
// claimed from the garden. Before, a switch alpha did not take left the
// device with no address and no portal, and handover_failed counted
// nothing. A move by the API (an ISP, the operator) is not sent to the
// garden: its refusals are alpha's nak and timeout events, as before.
func TestSwitchRefusedBackToGarden(t *testing.T) {
	r := switchedAt(t, "claim")
	if c := r.p.Counters(); c["switch_held"] != 1 {
		t.Errorf("counters after the switch's NAK %v, want switch_held 1", c)
	}
	if got := r.dora(s1, keaRefusing(t), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("the switch's DORA at alpha: %v, want alpha's NAK passed on", got)
	}
	ip := r.gardenDORA(s1, "after alpha refused the switch")
	l, ok := r.p.OnboardingByAddr(ip)
	if !ok || l.MAC != s1MAC || l.HandoverFailed != HandoverRefused || l.HandoverISP != "alpha" {
		t.Errorf("OnboardingByAddr = %+v, %v; want the refused handover to alpha", l, ok)
	}
	if c := r.p.Counters(); c["handover_failed"] != 1 || c["handover_failed_refused"] != 1 {
		t.Errorf("counters %v", c)
	}

	r2 := switchedAt(t, "api")
	if got := r2.dora(s1, keaRefusing(t), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("the API move's DORA at alpha: %v, want alpha's NAK passed on", got)
	}
	r2.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	if got := r2.toPorts(); len(got[upPort]) != 1 || len(got[accPort]) != 0 {
		t.Errorf("DISCOVER after the NAK of an API move: relayed %v, answered %v; want it relayed", got[upPort], got[accPort])
	}
	if c := r2.p.Counters(); c["handover_failed"] != 0 || c["switch_held"] != 0 {
		t.Errorf("counters of the API move %v", c)
	}
}

// ispmux restarts during a switch the subscriber made on the portal: the
// hold of its DORA with the new ISP is gone (RAM), but the claim is
// recent (the registration's time, in the store), so alpha's refusal
// still sends the device to the garden. Before, a restart in that window
// left a device alpha refused without an address and without a portal,
// and counted nothing. A claim older than a handover takes is an ISP's
// refusal as any other.
func TestSwitchRefusedAfterRestart(t *testing.T) {
	for _, c := range []struct {
		name   string
		age    time.Duration
		garden bool
	}{{"recent claim", 0, true}, {"claim of long ago", time.Hour, false}} {
		t.Run(c.name, func(t *testing.T) {
			r := switchedAt(t, "claim")
			if c.age > 0 {
				reg, err := r.store.Registration([6]byte(mac(s1)))
				if err != nil {
					t.Fatal(err)
				}
				reg.Updated = time.Now().Add(-c.age)
				if err := r.store.PutRegistration(reg); err != nil {
					t.Fatal(err)
				}
			}
			r.p = New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil) // the restart
			if _, err := r.p.Restore(time.Now()); err != nil {
				t.Fatal(err)
			}
			r.p.expire(time.Now())
			r.snd.take()
			if got := r.dora(s1, keaRefusing(t), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
				t.Fatalf("the switch's DORA at alpha after the restart: %v, want alpha's NAK passed on", got)
			}
			if !c.garden {
				r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
				if got := r.toPorts(); len(got[upPort]) != 1 || len(got[accPort]) != 0 {
					t.Errorf("DISCOVER after the NAK: relayed %v, answered %v; want it relayed", got[upPort], got[accPort])
				}
				if n := r.p.Counters()["handover_failed"]; n != 0 {
					t.Errorf("handover_failed %d", n)
				}
				return
			}
			ip := r.gardenDORA(s1, "after alpha refused the switch, restarted")
			if l, ok := r.p.OnboardingByAddr(ip); !ok || l.HandoverFailed != HandoverRefused || l.HandoverISP != "alpha" {
				t.Errorf("OnboardingByAddr = %+v, %v; want the refused handover to alpha", l, ok)
			}
		})
	}
}
