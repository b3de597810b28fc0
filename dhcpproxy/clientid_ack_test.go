package dhcpproxy

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// byMACKea answers every relayed DISCOVER and REQUEST as a server that
// keys leases by hardware address (and Option 82) would: 100.64.0.x, x the
// last byte of the client's MAC plus 100 (s1 .101, s2 .102, s3 .103), so
// two clients with one client identifier get two addresses and the
// address check (bind_conflict) does not stand between them.
func byMACKea(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	mt := dhcpv4.MessageTypeOffer
	if m.MessageType() == dhcpv4.MessageTypeRequest {
		mt = dhcpv4.MessageTypeAck
	} else if m.MessageType() != dhcpv4.MessageTypeDiscover {
		return nil
	}
	rep, _ := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(mt),
		dhcpv4.WithYourIP(net.IPv4(100, 64, 0, 100+m.ClientHWAddr[5])),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispSID.AsSlice()))),
		dhcpv4.WithLeaseTime(3600),
		dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, m.Options.Get(dhcpv4.OptionRelayAgentInformation)))
	return rep
}

// byMACAddr is the address byMACKea gives subscriber m.
func byMACAddr(m string) netip.Addr { return netip.AddrFrom4([4]byte{100, 64, 0, 100 + mac(m)[5]}) }

// requestInFlight has subscriber m ask with client identifier id: its
// DISCOVER relayed and answered by byMACKea, its REQUEST relayed. It
// returns that REQUEST as the ISP got it, unanswered.
func (r *prig) requestInFlight(m string, id []byte) *dhcpv4.DHCPv4 {
	r.t.Helper()
	r.fromClient(discover(r.t, dhcpv4.WithHwAddr(mac(m)), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, id)))
	got := r.serve(byMACKea)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		r.t.Fatalf("%s's DISCOVER with %x: got %v, want an OFFER (counters %v)", m, id, got, r.p.Counters())
	}
	r.snd.take() // a RELEASE sent meanwhile (a reclaim's)
	req, _ := dhcpv4.NewRequestFromOffer(got[0], dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, id))
	r.fromClient(req)
	r.p.committing.Wait()
	var relayed *dhcpv4.DHCPv4
	for _, s := range r.snd.take() {
		if msg := dhcpOf(s.frame); s.port == upPort && msg.MessageType() == dhcpv4.MessageTypeRequest {
			relayed = msg
		}
	}
	if relayed == nil {
		r.t.Fatalf("%s's REQUEST with %x not relayed (counters %v)", m, id, r.p.Counters())
	}
	return relayed
}

// ackOf has the ISP's server ACK req (byMACKea) and returns what its
// client was sent, and what went to the ISP meanwhile.
func (r *prig) ackOf(req *dhcpv4.DHCPv4) (toClient, toISP []*dhcpv4.DHCPv4) {
	r.t.Helper()
	r.p.HandleFrame(upPort, fib.UDPFrame(upMAC, gwMAC, 0, ispSID, giaddr, 67, 67, byMACKea(req).ToBytes()))
	r.p.committing.Wait()
	r.p.notes.wait()
	for _, s := range r.snd.take() {
		if msg := dhcpOf(s.frame); s.port == upPort {
			toISP = append(toISP, msg)
		} else if bytes.Equal(msg.ClientHWAddr, req.ClientHWAddr) {
			toClient = append(toClient, msg)
		}
	}
	return toClient, toISP
}

// wantBoundAlone checks that winner is bound (in the tables and the
// store) and loser is not, and that loser's client got a NAK (nak).
func (r *prig) wantBoundAlone(winner, loser string, loserGot []*dhcpv4.DHCPv4) {
	r.t.Helper()
	if !r.tab.isBound(binding.MAC48([6]byte(mac(winner)))) {
		r.t.Errorf("%s not bound (counters %v)", winner, r.p.Counters())
	}
	if r.tab.isBound(binding.MAC48([6]byte(mac(loser)))) {
		r.t.Errorf("%s bound too: two bindings hold one client identifier at one ISP (counters %v)", loser, r.p.Counters())
	}
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac(loser))); err == nil {
		r.t.Errorf("%s's binding stored", loser)
	}
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac(winner))); err != nil {
		r.t.Errorf("%s's binding not stored: %v", winner, err)
	}
	if loserGot != nil && (len(loserGot) != 1 || loserGot[0].MessageType() != dhcpv4.MessageTypeNak) {
		r.t.Errorf("%s got %v, want a NAK", loser, loserGot)
	}
}

// wantReleased checks that toISP is the RELEASE of m's address (byMACKea)
// under client identifier id, recorded as an intent (the newest; a
// reclaim's may be there too, until the next tick).
func (r *prig) wantReleased(m string, id []byte, toISP []*dhcpv4.DHCPv4) {
	r.t.Helper()
	ip := byMACAddr(m)
	if len(toISP) != 1 || toISP[0].MessageType() != dhcpv4.MessageTypeRelease ||
		!toISP[0].ClientIPAddr.Equal(net.IP(ip.AsSlice())) || net.HardwareAddr(toISP[0].ClientHWAddr).String() != m ||
		!bytes.Equal(toISP[0].Options.Get(dhcpv4.OptionClientIdentifier), id) {
		r.t.Errorf("to the ISP %v, want the RELEASE of %s's %v under %x", toISP, m, ip, id)
	}
	ins, _ := r.store.Intents()
	if n := len(ins); n == 0 || ins[n-1].Kind != subscribers.IntentReleaseUnbound || ins[n-1].IP != ip {
		r.t.Errorf("intents %+v, want the RELEASE of %v stored last", ins, ip)
	}
}

// Two MACs asking with one client identifier (not either's hardware
// address), each found free when relayed: the first ACK binds, the
// second is refused: nothing bound or stored, its client NAKed, its
// lease released to the ISP through an intent, ack_client_id_taken and a
// rejected event naming the holder. Both were bound before (fails
// without the check at the ACK).
func TestClientIDTwoInFlightOneBinds(t *testing.T) {
	r := newPRig(t)
	id := []byte{0, 'r', 'o', 'u', 't', 'e', 'r'}
	req1 := r.requestInFlight(s1, id)
	req2 := r.requestInFlight(s2, id)
	if got, _ := r.ackOf(req1); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("s1 got %v, want an ACK", got)
	}
	got, up := r.ackOf(req2)
	r.wantBoundAlone(s1, s2, got)
	r.wantReleased(s2, id, up)
	if c := r.p.Counters(); c["ack_client_id_taken"] != 1 || c["ack_refused_released"] != 1 || c["ack"] != 1 {
		t.Errorf("counters %v, want one ack_client_id_taken, one ack_refused_released, one ack", c)
	}
	if e, ok := r.lastRejected(s2); !ok || !strings.Contains(e.Reason, s1) || e.IP != byMACAddr(s2) {
		t.Errorf("s2's rejected event %+v, want one naming s1", e)
	}
	// Its next DISCOVER meets the relay's rule.
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s2)), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, id)))
	r.p.committing.Wait()
	if c := r.p.Counters(); c["client_id_taken"] != 1 {
		t.Errorf("s2's next DISCOVER: counters %v, want client_id_taken", c)
	}
}

// The race a review found: s2 held s1's hardware identifier (01 and s1's
// MAC), s1's DISCOVER reclaimed it (s2's binding revoked), and then s2's
// exchange with the identifier and s1's were under way together, each
// found free when relayed. Both ACKs bound, s2's until s1's next message
// reclaimed it again. Now whichever ACK comes first, s1 (the owner) ends
// up the one binding: s2's ACK after s1's is refused (NAKed, released);
// s1's ACK after s2's reclaims the identifier again (s2's binding revoked,
// its RELEASE sent before s1's ACK). Fails without the check at the ACK.
func TestClientIDAckAfterReclaim(t *testing.T) {
	for _, ownerFirst := range []bool{true, false} {
		r := newPRig(t)
		id := squatWith(t, r, s2, s1)
		req1 := r.requestInFlight(s1, id) // reclaims: s2 revoked
		if c := r.p.Counters(); c["client_id_reclaimed"] != 1 || r.tab.isBound(s2MAC) {
			t.Fatalf("s1's DISCOVER did not reclaim from s2: counters %v", c)
		}
		req2 := r.requestInFlight(s2, id) // free now: relayed
		if ownerFirst {
			if got, _ := r.ackOf(req1); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
				t.Fatalf("s1 got %v, want an ACK", got)
			}
			got, up := r.ackOf(req2)
			r.wantBoundAlone(s1, s2, got)
			r.wantReleased(s2, id, up)
			if c := r.p.Counters(); c["ack_client_id_taken"] != 1 || c["client_id_reclaimed"] != 1 {
				t.Errorf("s1's ACK first: counters %v, want one ack_client_id_taken and no second reclaim", c)
			}
			continue
		}
		if got, _ := r.ackOf(req2); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("s2 got %v, want an ACK (nothing holds the identifier yet)", got)
		}
		got, up := r.ackOf(req1)
		if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
			t.Errorf("s1 got %v, want its ACK", got)
		}
		r.wantBoundAlone(s1, s2, nil)
		if len(up) != 1 || up[0].MessageType() != dhcpv4.MessageTypeRelease || net.HardwareAddr(up[0].ClientHWAddr).String() != s2 ||
			!up[0].ClientIPAddr.Equal(net.IP(byMACAddr(s2).AsSlice())) {
			t.Errorf("to the ISP %v, want s2's RELEASE of %v", up, byMACAddr(s2))
		}
		if c := r.p.Counters(); c["client_id_reclaimed"] != 2 || c["ack_client_id_taken"] != 0 || c["ack"] != 3 {
			t.Errorf("s2's ACK first: counters %v, want a second client_id_reclaimed and s1 ACKed", c)
		}
		evs := r.eventsOf(subscribers.EventRevoked)
		if len(evs) != 2 || binding.MAC48(evs[1].MAC) != s2MAC || !strings.Contains(evs[1].Reason, s1) {
			t.Errorf("revoked events %+v, want s2's second naming s1", evs)
		}
	}
}

// The reclaim at the ACK is bounded as at the relay: s3, whose MAC was
// registered after s2 bound with 01+s3, does not take it from s2 by its
// ACK either: not bound, NAKed, released, client_id_reclaim_refused, and
// s2 keeps its binding. (s2's exchange and s3's under way together, s2's
// ACK first.) Fails without the check at the ACK (both bound).
func TestClientIDAckReclaimBounded(t *testing.T) {
	r := newPRig(t)
	id := append([]byte{1}, mac(s3)...)
	req2 := r.requestInFlight(s2, id)
	r.register(s3, "c-s3")
	req3 := r.requestInFlight(s3, id)
	if got, _ := r.ackOf(req2); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("s2 got %v, want an ACK", got)
	}
	got, up := r.ackOf(req3)
	r.wantBoundAlone(s2, s3, got)
	r.wantReleased(s3, id, up)
	if c := r.p.Counters(); c["client_id_reclaim_refused"] != 1 || c["client_id_reclaimed"] != 0 || c["binding_revoked"] != 0 {
		t.Errorf("counters %v, want one client_id_reclaim_refused and nothing revoked", c)
	}
	if e, ok := r.lastRejected(s3); !ok || !strings.Contains(e.Reason, s2) || !strings.HasSuffix(e.Reason, "not bound") {
		t.Errorf("s3's rejected event %+v, want one naming s2, not bound", e)
	}
}

// ACKs of one identifier to two MACs arriving together (their commits on
// two goroutines) bind one of them: the check and the commit are one step
// per identifier (cidMu). Without the lock both checks could pass before
// either commit; this catches that only some of the time.
func TestClientIDTwoAcksAtOnce(t *testing.T) {
	for i := range 20 {
		r := newPRig(t)
		id := []byte{0, 's', 'h', 'a', 'r', 'e', 'd'}
		reqs := []*dhcpv4.DHCPv4{r.requestInFlight(s1, id), r.requestInFlight(s2, id)}
		var wg sync.WaitGroup
		for _, req := range reqs {
			wg.Go(func() {
				r.p.HandleFrame(upPort, fib.UDPFrame(upMAC, gwMAC, 0, ispSID, giaddr, 67, 67, byMACKea(req).ToBytes()))
			})
		}
		wg.Wait()
		r.p.committing.Wait()
		if r.tab.isBound(0x020000000101) == r.tab.isBound(s2MAC) {
			t.Fatalf("run %d: s1 bound %v, s2 bound %v; want one (counters %v)", i, r.tab.isBound(0x020000000101), r.tab.isBound(s2MAC), r.p.Counters())
		}
		r.p.notes.wait()
	}
}
