package dhcpproxy

import (
	"bytes"
	"net"
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
	p2 := New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil)
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
	p3 := New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil)
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

// A client restarted with another client identifier (an INIT-REBOOT for
// its bound address, before the ISP's T1) is not answered by ispmux: the
// ISP's server holds the lease under the old identifier and decides. Its
// NAK ends the binding and releases the old lease. Before, ispmux answered
// it, and the client's later RELEASE, under the new identifier, was
// ignored by the server: the lease stayed held while ispmux said released;
// a loop of it drained a Kea pool (a trial).
func TestRenewalOtherClientIDRelayed(t *testing.T) {
	r, _ := newSRig(t)
	idA, idB := []byte{1, 2, 0xaa, 0, 0, 0, 1}, []byte{1, 2, 0xaa, 0, 0, 0, 2}
	if got := r.doraWithID(s1, idA, keaT1(t, time.Hour, 30*time.Minute), keaT1(t, time.Hour, 30*time.Minute)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DORA: %v", got)
	}
	r.p.committing.Wait()
	r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(s1Addr))),
		dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, idB)))
	sent := r.toPorts()
	if len(sent[accPort]) != 0 || len(sent[upPort]) != 1 || sent[upPort][0].MessageType() != dhcpv4.MessageTypeRequest {
		t.Fatalf("INIT-REBOOT under another client identifier: to the client %v, relayed %v; want it relayed, not answered", sent[accPort], sent[upPort])
	}
	if c := r.p.Counters(); c["renewal_other_client_id"] != 1 || c["renewal_local"] != 0 {
		t.Errorf("counters %v, want renewal_other_client_id", c)
	}
}

// A bound client's RELEASE under another client identifier than its
// binding's goes to the ISP with the binding's identifier (as a
// revocation's RELEASE), which the ISP's server holds the lease under;
// the client's own was ignored there (a trial).
func TestReleaseOtherClientIDUsesBindings(t *testing.T) {
	r := newPRig(t)
	idA, idB := []byte{1, 2, 0xaa, 0, 0, 0, 1}, []byte{1, 2, 0xaa, 0, 0, 0, 2}
	if got := r.doraWithID(s1, idA, kea(t, time.Minute), kea(t, time.Minute)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DORA: %v", got)
	}
	r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.ParseIP(s1Addr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ourSID.AsSlice())), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, idB)))
	r.p.committing.Wait()
	up, _ := r.relayedTo()
	rel := up[ispSID]
	if rel == nil || rel.MessageType() != dhcpv4.MessageTypeRelease || !rel.ClientIPAddr.Equal(net.ParseIP(s1Addr)) ||
		!bytes.Equal(rel.Options.Get(dhcpv4.OptionClientIdentifier), idA) {
		t.Fatalf("sent the ISP %v, want the RELEASE of %s under the binding's client identifier %x", up, s1Addr, idA)
	}
	if r.tab.isBound(s1MAC) || r.p.Counters()["release_other_client_id"] != 1 {
		t.Errorf("bound %v, counters %v: want ended, release_other_client_id", r.tab.isBound(s1MAC), r.p.Counters())
	}
}

// So is a DECLINE under another client identifier: relayed with the
// binding's (a review).
func TestDeclineOtherClientIDUsesBindings(t *testing.T) {
	r := newPRig(t)
	idA, idB := []byte{1, 2, 0xaa, 0, 0, 0, 1}, []byte{1, 2, 0xaa, 0, 0, 0, 2}
	if got := r.doraWithID(s1, idA, kea(t, time.Minute), kea(t, time.Minute)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DORA: %v", got)
	}
	r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeDecline, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(s1Addr))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ourSID.AsSlice())), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, idB)))
	r.p.committing.Wait()
	up, _ := r.relayedTo()
	dec := up[ispSID]
	if dec == nil || dec.MessageType() != dhcpv4.MessageTypeDecline || !bytes.Equal(dec.Options.Get(dhcpv4.OptionClientIdentifier), idA) ||
		len(dec.Options.Get(dhcpv4.OptionRelayAgentInformation)) == 0 {
		t.Fatalf("sent the ISP %v, want the DECLINE under the binding's client identifier %x, with Option 82", up, idA)
	}
	if r.p.Counters()["decline_other_client_id"] != 1 {
		t.Errorf("counters %v", r.p.Counters())
	}
}
