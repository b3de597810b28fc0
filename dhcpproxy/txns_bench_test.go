package dhcpproxy

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/registry"
)

// BenchmarkTxnBeginTake is the pending table's part of a DHCP exchange:
// a DISCOVER's transaction begun, then taken by its answer, with pending
// others in the table; the keys cycle over subs subscribers (each
// begin+take is a new transaction: an insert and a delete in steady
// state).
func BenchmarkTxnBeginTake(b *testing.B) {
	for _, others := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("pending=%d", others), func(b *testing.B) { benchBeginTake(b, others) })
	}
}

func benchBeginTake(b *testing.B, others int) {
	var x txns
	x.init()
	isp := &ISP{Name: "alpha", Servers: []netip.Addr{ispSID}}
	c := &Circuit{Name: "acc0"}
	m, err := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 1, 1})
	if err != nil {
		b.Fatal(err)
	}
	raw := m.ToBytes()
	now := time.Now()
	x.mu.Lock()
	for i := range others {
		sk := subKey{mac: 0x030000000000 | uint64(i)}
		x.put(pendKey{[4]byte{1}, sk.mac, 0}, &txn{sub: sk, isp: isp, msgType: dhcpv4.MessageTypeDiscover, deadline: now.Add(time.Hour)})
	}
	x.mu.Unlock()
	const subs = 4096
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		sk := subKey{mac: 0x020000000000 | uint64(i%subs)}
		pk := pendKey{[4]byte{byte(i >> 12), byte(i >> 20)}, sk.mac, 0}
		t, _, err := x.begin(pk, sk, c, isp, registry.Entry{}, nil, raw, m, netip.Addr{}, 0, now, time.Second, 1<<30, 1<<30)
		if err != nil {
			b.Fatal(err)
		}
		if x.take(pk, t) == nil {
			b.Fatal("taken: none")
		}
	}
}

// BenchmarkDropSub is a binding end's taking of its subscriber's two
// transactions (dropSub, then unpark as committed) with others pending:
// a bulk revocation does it once per subscriber, so its cost must not
// grow with the table.
func BenchmarkDropSub(b *testing.B) {
	for _, others := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("pending=%d", others), func(b *testing.B) { benchDropSub(b, others) })
	}
}

func benchDropSub(b *testing.B, others int) {
	var x txns
	x.init()
	isp := &ISP{Name: "alpha"}
	x.mu.Lock()
	for i := range others {
		sk := subKey{mac: 0x030000000000 | uint64(i)}
		x.put(pendKey{[4]byte{1}, sk.mac, 0}, &txn{sub: sk, isp: isp})
	}
	x.mu.Unlock()
	sk := subKey{mac: 0x020000000101}
	pks := [2]pendKey{{[4]byte{1}, sk.mac, 0}, {[4]byte{2}, sk.mac, 0}}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		x.mu.Lock()
		for _, pk := range pks {
			x.put(pk, &txn{sub: sk, isp: isp})
		}
		x.mu.Unlock()
		d := x.dropSub(sk)
		if len(d.keys) != len(pks) {
			b.Fatalf("dropSub took %d, want %d", len(d.keys), len(pks))
		}
		x.unpark(sk, d, false, 0, 0, time.Time{}, 0)
	}
}
