package fib

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentReaders runs one writer (Table.Set/Delete, Uplinks
// reconfiguration, Resolver) against lock-free readers that take their
// snapshots once per batch, as datapath workers do. Every value the writer
// stores is a function of its key or of its own snapshot, so a reader can
// tell a torn or misplaced read. Run it with -race.
func TestConcurrentReaders(t *testing.T) {
	const (
		vrfs    = 4
		ips     = 2000
		readers = 4
	)
	writes := 100_000
	if testing.Short() {
		writes = 10_000
	}
	tb := NewTable(vrfs*ips/2, 99) // smaller than the key space: ErrFull happens
	var ups Uplinks
	res := NewResolver(&ups)

	// destFor is the only Dest ever stored for (vrf, ip), bar the port,
	// which counts writes.
	destFor := func(vrf uint8, ip uint32, gen int) Dest {
		return Dest{Port: uint8(gen & 15), VLAN: uint16(ip & 0xfff), MAC: uint64(vrf)<<32 | uint64(ip)}
	}
	gwMAC := func(gw uint32) uint64 { return 0x02_00_00_00_00_00 | uint64(gw&0xffffff) }

	var stop atomic.Bool
	var batches, hits atomic.Int64
	var wg sync.WaitGroup
	for w := range readers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			var nb, nh int64
			for !stop.Load() {
				tv := tb.View() // once per batch
				us := ups.Load()
				for range 64 {
					vrf, ip := uint8(r.IntN(vrfs)), 0x0a000000|uint32(r.IntN(ips))
					if d, ok := tv.Lookup(vrf, ip); ok {
						nh++
						if want := destFor(vrf, ip, int(d.Port)); d != want {
							t.Errorf("Lookup(%d, %s) = %+v, want %+v", vrf, ipString(ip), d, want)
							return
						}
					}
					up := us.Get(vrf)
					if !up.Configured {
						continue
					}
					if up.Port != uint8(up.Gateway&15) || up.VLAN != uint16(up.Gateway&0xfff) {
						t.Errorf("ISP %d: torn uplink %+v", vrf, *up)
						return
					}
					if up.Resolved != (up.GatewayMAC != 0) || up.Resolved && up.GatewayMAC != gwMAC(up.Gateway) {
						t.Errorf("ISP %d: gateway MAC does not belong to the gateway: %+v", vrf, *up)
						return
					}
				}
				nb++
			}
			batches.Add(nb)
			hits.Add(nh)
		})
	}

	r := rand.New(rand.NewPCG(7, 7))
	now := time.Unix(0, 0)
	var due []uint8
	full := 0
	for i := range writes {
		vrf, ip := uint8(r.IntN(vrfs)), 0x0a000000|uint32(r.IntN(ips))
		if r.IntN(3) == 0 {
			tb.Delete(vrf, ip)
		} else if err := tb.Set(vrf, ip, destFor(vrf, ip, i)); err != nil {
			full++
		}
		if i%50 == 0 {
			isp := uint8(r.IntN(vrfs))
			gw := uint32(r.IntN(1 << 20))
			if r.IntN(8) == 0 {
				ups.Configure(isp, Uplink{})
			} else {
				ups.Configure(isp, Uplink{Configured: true, Port: uint8(gw & 15), VLAN: uint16(gw & 0xfff), Gateway: gw})
			}
		}
		if i%7 == 0 {
			now = now.Add(time.Second)
			due = res.Due(now, due[:0])
			for _, isp := range due {
				if r.IntN(2) == 0 { // half the requests are answered
					res.Learn(isp, ups.Load().Get(isp).Gateway, gwMAC(ups.Load().Get(isp).Gateway), now)
				}
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d writes (%d refused as full), %d reader batches, %d hits", writes, full, batches.Load(), hits.Load())
	if hits.Load() == 0 {
		t.Error("readers never found an entry")
	}
}
