package dhcpproxy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// A subscriber's DISCOVER or REQUEST with the client identifier of
// another's binding at the same ISP is not relayed: the ISP's server would
// hand it the other's address and record that lease as this subscriber's
// (hardware address, Option 82) until the other renewed; ispmux refused
// the address but not the relay (a trial against Kea, with a neighbour's
// 01+MAC). The holder's own messages with it, and anyone's once the
// holder's binding ends, are relayed; the index is rebuilt at a restart.
func TestClientIDOfAnotherNotRelayed(t *testing.T) {
	const s2 = "02:00:00:00:01:02"
	r := newPRig(t)
	id := append([]byte{1}, mac(s1)...)
	if got := r.doraWithID(s1, id, kea(t, time.Hour), kea(t, time.Hour)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("s1's DORA: %v", got)
	}
	forged := func(p *Proxy) (relayed int) {
		t.Helper()
		m := discover(t, dhcpv4.WithHwAddr(mac(s2)), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, id))
		p.HandleFrame(accPort, fib.UDPFrame(0xffffffffffff, binding.MAC48([6]byte(m.ClientHWAddr)), 0, netip.IPv4Unspecified(),
			netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, m.ToBytes()))
		for _, s := range r.snd.take() {
			if s.port != accPort {
				relayed++
			}
		}
		return relayed
	}
	if n := forged(r.p); n != 0 {
		t.Fatalf("s2's DISCOVER with s1's client identifier relayed %d times", n)
	}
	if c := r.p.Counters(); c["client_id_taken"] != 1 {
		t.Errorf("client_id_taken %d, want 1", c["client_id_taken"])
	}
	r.p.notes.wait()
	evs := r.eventsOf(subscribers.EventRejected)
	if len(evs) != 1 || binding.MACString(binding.MAC48(evs[0].MAC)) != s2 || !strings.Contains(evs[0].Reason, s1) {
		t.Errorf("rejected events %+v, want one for %s naming %s", evs, s2, s1)
	}
	// The holder's own DISCOVER with it is relayed.
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, id)))
	if up, _ := r.relayedTo(); len(up) != 1 {
		t.Errorf("s1's own DISCOVER relayed to %v", up)
	}
	// A restart on the same store: the index comes back with the lease.
	r.p.committing.Wait()
	r.tab = &fakeTables{bound: map[uint64]binding.Binding{}, store: r.store}
	p2 := New(r.p.cfg, r.store, r.p.reg, r.tab, r.snd, nil)
	if _, err := p2.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := forged(p2); n != 0 {
		t.Errorf("after a restart, s2's DISCOVER with s1's client identifier relayed %d times", n)
	}
	// Two bindings with one identifier (made before this check, or at a
	// server that keys leases otherwise): each holder's own messages are
	// relayed, or it would be cut off while the other renews.
	b2 := subscribers.Binding{MAC: [6]byte(mac(s2)), Access: "acc0", ISP: "alpha", IP: netip.MustParseAddr("100.64.0.102"),
		ServerID: ispSID, Expires: time.Now().Add(time.Hour), ClientID: id}
	if err := r.store.CommitBinding(b2); err != nil {
		t.Fatal(err)
	}
	r.tab = &fakeTables{bound: map[uint64]binding.Binding{}, store: r.store}
	p3 := New(r.p.cfg, r.store, r.p.reg, r.tab, r.snd, nil)
	if _, err := p3.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := forged(p3); n != 1 {
		t.Errorf("s2, holding a binding with the identifier too, had its DISCOVER relayed %d times, want 1", n)
	}
	p3.HandleFrame(accPort, fib.UDPFrame(0xffffffffffff, s1MAC, 0, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67,
		discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, id)).ToBytes()))
	if up, _ := r.relayedTo(); len(up) != 1 {
		t.Errorf("s1's own DISCOVER with s2 holding the identifier too relayed to %v", up)
	}
	// s1's binding ends (its RELEASE): the identifier is free.
	r.p = p2
	b, _ := r.store.Binding("acc0", 0, [6]byte(mac(s1)))
	r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(b.IP.AsSlice()),
		dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, id), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ourSID.AsSlice()))))
	r.p.committing.Wait()
	r.snd.take()
	if _, ok := p2.Lease(accPort, 0, s1MAC); ok {
		t.Fatal("s1 still bound after its RELEASE")
	}
	if n := forged(p2); n != 1 {
		t.Errorf("s2's DISCOVER with the identifier s1 released relayed %d times, want 1", n)
	}
}
