package dhcpproxy

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/ispmux/ispmux/subscribers"
)

// The identifiers a start holds for its pending intents (holdIdentifier)
// are let go once those intents are sent, whether or not a message with
// the identifier comes again: a wait was forgotten only by the next
// message with its identifier (waiting), so every RELEASE pending at a
// start (an ISP's outage ended by a mass expiry leaves thousands) kept its
// entry, and its identifier's copy, for the whole run, one per subscriber
// that did not come back. Fails without the prune.
func TestHeldIdentifiersLetGoOnceSent(t *testing.T) {
	r := newPRig(t)
	const n = 50
	for i := range n {
		m := [6]byte{2, 0, 0, 0, 9, byte(i)}
		rel, _ := dhcpv4.New(dhcpv4.WithHwAddr(m[:]), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
			dhcpv4.WithClientIP(net.IPv4(100, 64, 0, byte(100+i))),
			dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, []byte{255, 0, 0, 0, 1, 0, 2, byte(i)}))
		if _, err := r.store.AddIntent(subscribers.Intent{Kind: subscribers.IntentRelease, ISP: "alpha", MAC: m, Access: "acc0",
			IP: netip.AddrFrom4([4]byte{100, 64, 0, byte(100 + i)}), Message: rel.ToBytes(), Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	r.p = New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil)
	if _, err := r.p.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := r.p.reclaims.len(); got != n {
		t.Fatalf("%d identifiers held at the start, want %d (one per pending intent)", got, n)
	}
	now := time.Now()
	for i := range 3 {
		r.p.expire(now.Add(time.Duration(i) * reclaimPruneEvery))
	}
	if r.p.PendingIntents() != 0 {
		t.Fatalf("%d intents still pending: the rig sent none", r.p.PendingIntents())
	}
	if got := r.p.reclaims.len(); got != 0 {
		t.Errorf("%d identifiers still held after their intents were sent, want none", got)
	}
}
