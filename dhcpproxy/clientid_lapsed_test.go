package dhcpproxy

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// byMACKeaFor is byMACKea with leases of lease.
func byMACKeaFor(lease time.Duration) func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := byMACKea(m)
		if rep != nil {
			rep.UpdateOption(dhcpv4.OptIPAddressLeaseTime(lease))
		}
		return rep
	}
}

// holdID has holder bind with client identifier id (byMACKea's address),
// for a lease of a second and then let it run out (lapsed: no tick runs
// here), or for an hour.
func (r *prig) holdID(holder string, id []byte, lapsed bool) {
	r.t.Helper()
	lease := time.Hour
	if lapsed {
		lease = time.Second
	}
	if got := r.doraWithID(holder, id, byMACKeaFor(lease), byMACKeaFor(lease)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		r.t.Fatalf("%s's DORA with %x: %v (counters %v)", holder, id, got, r.p.Counters())
	}
	r.p.committing.Wait()
	r.p.notes.wait()
	r.snd.take()
	if lapsed {
		time.Sleep(1100 * time.Millisecond)
	}
}

// wantLapsedEnded checks that holder's binding was ended as the expiry
// tick ends one, once: one expired event of it, no revoked one, nothing
// sent to the ISP (up) and no RELEASE of its address recorded, counted
// as client_id_lapsed; and that a tick now ends nothing more.
func (r *prig) wantLapsedEnded(holder string, up []string) {
	r.t.Helper()
	hm := binding.MAC48([6]byte(mac(holder)))
	if r.tab.isBound(hm) {
		r.t.Errorf("%s's lapsed binding still in the tables", holder)
	}
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac(holder))); err == nil {
		r.t.Errorf("%s's lapsed binding still stored", holder)
	}
	check := func(when string) {
		var expired int
		for _, e := range r.eventsOf(subscribers.EventExpired) {
			if binding.MAC48(e.MAC) == hm {
				expired++
			}
		}
		if expired != 1 || len(r.eventsOf(subscribers.EventRevoked)) != 0 {
			r.t.Errorf("%s: %d expired events of %s, revoked events %v; want one expired, none revoked", when, expired, holder,
				r.eventsOf(subscribers.EventRevoked))
		}
	}
	check("at the end")
	for _, s := range up {
		if s == "RELEASE "+holder {
			r.t.Errorf("to the ISP %v: %s's RELEASE sent (its lease ran out: nothing to tell)", up, holder)
		}
	}
	ins, err := r.store.Intents()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, in := range ins {
		if in.MAC == [6]byte(mac(holder)) {
			r.t.Errorf("intent %+v of %s recorded, want none", in, holder)
		}
	}
	if c := r.p.Counters(); c["client_id_lapsed"] != 1 || c["expired"] != 1 || c["client_id_reclaimed"] != 0 || c["binding_revoked"] != 0 {
		r.t.Errorf("counters %v, want one client_id_lapsed and one expired, nothing reclaimed or revoked", c)
	}
	r.p.expire(time.Now())
	r.p.notes.wait()
	check("after a tick")
	if c := r.p.Counters(); c["expired"] != 1 || c["expiry_superseded"] != 0 {
		r.t.Errorf("after a tick: counters %v, want still one expired, no expiry_superseded", c)
	}
}

// typesUp is what went to the ISP in toISP, as "TYPE mac" (askWithOwnID).
func typesUp(toISP []*dhcpv4.DHCPv4) []string {
	var up []string
	for _, m := range toISP {
		up = append(up, m.MessageType().String()+" "+net.HardwareAddr(m.ClientHWAddr).String())
	}
	return up
}

// The ACK's client identifier held by another subscriber's binding whose
// lease ran out, the expiry tick not having ended it yet (two clones, the
// holder's exchange first, its lease over before the asker's ACK). The
// holder is ended as the tick would end it (one expired event, no
// RELEASE), and the asker bound: it was refused as ack_client_id_taken
// (fails without the lapsed holder's end at the ACK). A live holder
// refuses the asker as before.
func TestClientIDAckLapsedHolderEnded(t *testing.T) {
	for _, lapsed := range []bool{true, false} {
		t.Run(map[bool]string{true: "lapsed", false: "live"}[lapsed], func(t *testing.T) {
			r := newPRig(t)
			id := []byte{0, 'r', 'o', 'u', 't', 'e', 'r'}
			req2 := r.requestInFlight(s2, id) // free when relayed
			r.holdID(s1, id, lapsed)
			got, up := r.ackOf(req2)
			if !lapsed {
				r.wantBoundAlone(s1, s2, got)
				r.wantReleased(s2, id, up)
				if c := r.p.Counters(); c["ack_client_id_taken"] != 1 || c["client_id_lapsed"] != 0 || c["expired"] != 0 {
					t.Errorf("counters %v, want one ack_client_id_taken, nothing ended", c)
				}
				return
			}
			if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
				t.Fatalf("s2 got %v, want its ACK: s1's lease of the identifier ran out (counters %v)", got, r.p.Counters())
			}
			r.wantBoundAlone(s2, s1, nil)
			r.wantLapsedEnded(s1, typesUp(up))
			if c := r.p.Counters(); c["ack_client_id_taken"] != 0 || c["ack"] != 2 {
				t.Errorf("counters %v, want no ack_client_id_taken, two ack", c)
			}
		})
	}
}

// The owner's ACK (its hardware identifier) while another subscriber's
// binding that holds the identifier has run out: the holder is ended as
// the tick would end it (an expired event, no RELEASE intent: its lease
// ran out at the ISP too), not revoked by a reclaim (a revoked event, a
// RELEASE recorded and sent, client_id_reclaimed; fails without the
// lapsed holder's end at the ACK), and the owner bound. A live holder is
// reclaimed as before.
func TestClientIDAckOwnerLapsedHolderEnded(t *testing.T) {
	for _, lapsed := range []bool{true, false} {
		t.Run(map[bool]string{true: "lapsed", false: "live"}[lapsed], func(t *testing.T) {
			r := newPRig(t)
			id := append([]byte{1}, mac(s1)...)
			req1 := r.requestInFlight(s1, id) // free when relayed
			r.holdID(s2, id, lapsed)
			got, up := r.ackOf(req1)
			if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
				t.Fatalf("s1 got %v, want its ACK (counters %v)", got, r.p.Counters())
			}
			r.wantBoundAlone(s1, s2, nil)
			if !lapsed {
				if len(up) != 1 || up[0].MessageType() != dhcpv4.MessageTypeRelease || net.HardwareAddr(up[0].ClientHWAddr).String() != s2 {
					t.Errorf("to the ISP %v, want s2's RELEASE", up)
				}
				if c := r.p.Counters(); c["client_id_reclaimed"] != 1 || c["client_id_lapsed"] != 0 || c["expired"] != 0 {
					t.Errorf("counters %v, want one client_id_reclaimed, nothing expired", c)
				}
				return
			}
			r.wantLapsedEnded(s2, typesUp(up))
		})
	}
}

// At the relay: a DISCOVER whose client identifier another subscriber's
// binding holds, its lease run out, the tick not having ended it yet.
// The holder is ended as the tick would end it (one expired event, no
// RELEASE), and the DISCOVER relayed; it was refused (client_id_taken)
// or, the sender's own hardware identifier, the holder revoked with a
// RELEASE (client_id_reclaimed). Fails without the lapsed holder's end
// at the relay. A live holder refuses or is reclaimed from as before.
func TestClientIDRelayLapsedHolderEnded(t *testing.T) {
	for _, own := range []bool{false, true} {
		for _, lapsed := range []bool{true, false} {
			name := map[bool]string{true: "own", false: "other"}[own] + "/" + map[bool]string{true: "lapsed", false: "live"}[lapsed]
			t.Run(name, func(t *testing.T) {
				r := newPRig(t)
				id := []byte{0, 'r', 'o', 'u', 't', 'e', 'r'}
				if own {
					id = append([]byte{1}, mac(s1)...)
				}
				r.holdID(s2, id, lapsed)
				up := r.askWithOwnID(s1, id)
				c := r.p.Counters()
				switch {
				case lapsed:
					if len(up) != 1 || up[0] != "DISCOVER "+s1 {
						t.Errorf("to the ISP %v, want s1's DISCOVER alone (counters %v)", up, c)
					}
					if c["client_id_taken"] != 0 || c["client_id_reclaim_waits"] != 0 {
						t.Errorf("counters %v, want no client_id_taken, no wait", c)
					}
					r.wantLapsedEnded(s2, up)
				case own:
					if len(up) == 0 || up[0] != "RELEASE "+s2 || c["client_id_reclaimed"] != 1 || c["expired"] != 0 {
						t.Errorf("to the ISP %v, counters %v; want s2's RELEASE (reclaimed), nothing expired", up, c)
					}
				default:
					if len(up) != 0 || c["client_id_taken"] != 1 || c["expired"] != 0 || !r.tab.isBound(s2MAC) {
						t.Errorf("to the ISP %v, counters %v; want nothing, one client_id_taken, s2 bound", up, c)
					}
				}
			})
		}
	}
}

// The store refuses the lapsed identifier holder's end at the ACK: the
// holder keeps its binding, the asker is refused (NAKed, its lease
// released), and its rejected event says the holder's lease ran out and
// the store refused to end it, not that the identifier was found free
// when relayed (ack_client_id_taken). Fails without the unended holder
// told at the next pass.
func TestClientIDAckLapsedHolderStoreRefused(t *testing.T) {
	r := newPRig(t)
	id := []byte{0, 'r', 'o', 'u', 't', 'e', 'r'}
	req2 := r.requestInFlight(s2, id)
	r.holdID(s1, id, true)
	r.p.store = endRefuser{r.p.store}
	got, up := r.ackOf(req2)
	r.wantBoundAlone(s1, s2, got)
	r.wantReleased(s2, id, up)
	e, ok := r.lastRejected(s2)
	if !ok || !strings.Contains(e.Reason, s1) || !strings.Contains(e.Reason, "ran out") || !strings.Contains(e.Reason, "store refused") {
		t.Errorf("s2's rejected event %+v, want one naming s1's lease run out and the store's refusal", e)
	}
	if c := r.p.Counters(); c["ack_client_id_taken"] != 0 || c["client_id_lapsed"] != 0 || c["expired"] != 0 || c["store_error"] == 0 {
		t.Errorf("counters %v, want a store_error, nothing ended, no ack_client_id_taken", c)
	}
}

// The lapsed identifier holder has a RELEASE to the ISP not yet sent
// (recorded while the ISP's next hop was unresolved, say), with the
// identifier: ended at the relay, its RELEASE would reach the ISP after
// the asker's exchange and free the lease the ISP, keying it by the
// identifier, grants the asker. The asker's messages wait until it is
// sent, as after a reclaim (client_id_reclaim_waits). Fails without the
// wait: the DISCOVER was relayed at once.
func TestClientIDRelayLapsedHolderIntentsWait(t *testing.T) {
	r := newPRig(t)
	id := []byte{0, 'r', 'o', 'u', 't', 'e', 'r'}
	r.holdID(s2, id, true)
	rel, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(s2)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithClientIP(net.IPv4(100, 64, 0, 200)), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, id))
	r.p.intents.add(subscribers.Intent{ID: 1 << 40, Kind: subscribers.IntentRelease, ISP: "alpha", MAC: [6]byte(mac(s2)),
		Access: "acc0", IP: netip.AddrFrom4([4]byte{100, 64, 0, 200}), Message: rel.ToBytes(), Created: time.Now()}, false)
	for i := range 2 {
		if up := r.askWithOwnID(s1, id); len(up) != 0 {
			t.Errorf("s1's DISCOVER %d: to the ISP %v, want nothing before s2's pending RELEASE is sent", i, up)
		}
	}
	if c := r.p.Counters(); c["client_id_reclaim_waits"] != 2 || c["client_id_lapsed"] != 1 || c["client_id_taken"] != 0 {
		t.Errorf("counters %v, want two client_id_reclaim_waits, one client_id_lapsed, no client_id_taken", c)
	}
	r.p.flushIntents(time.Now().Add(time.Second))
	r.snd.take()
	if up := r.askWithOwnID(s1, id); len(up) != 1 || up[0] != "DISCOVER "+s1 {
		t.Errorf("after s2's RELEASE was sent: to the ISP %v, want s1's DISCOVER", up)
	}
}
