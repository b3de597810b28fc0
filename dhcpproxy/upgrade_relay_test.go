package dhcpproxy

import (
	"net/netip"
	"testing"
	"time"
)

// TestUpgradedRelayIsFirstServer: a store written by a build before the
// override renewal fix holds Relay = the ISP's first configured server for
// every binding. This build takes Relay for the server that granted the
// lease, so after the upgrade, with server-id override, the renewal of a
// lease the second server granted went to the first server only: it has
// no such lease (no answer, or, authoritative, a NAK that ends the
// binding). A binding last updated before the store's RelayIsSourceSince
// has its Relay taken as unknown now: the renewal goes to every server, as
// the build before sent it.
func TestUpgradedRelayIsFirstServer(t *testing.T) {
	r, second := twoServers(t, true)
	r.bindThrough(second)
	// What the old build stored: Relay = the first configured server.
	bs, err := r.store.Bindings()
	if err != nil || len(bs) != 1 || bs[0].Relay != second {
		t.Fatalf("bindings %+v %v", bs, err)
	}
	b := bs[0]
	b.Relay = ispSID
	b.Updated = r.store.RelayIsSourceSince().Add(-time.Minute) // written by the older build
	if err := r.store.CommitBinding(b); err != nil {
		t.Fatal(err)
	}
	// The upgrade: a restart of this build on that store.
	p2 := New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil)
	if _, err := p2.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	r.p = p2
	ip := netip.MustParseAddr("100.64.0.103")
	r.fromClientUnicast(renewing(t, s1, ip.String()), ip)
	up, _ := r.relayedTo()
	if up[second] == nil {
		t.Errorf("after the upgrade the renewal of %v's lease went to %v only, not to the granting server (the old build sent it to every server)", second, keys(up))
	}
}
