package tenants

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/auth"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// benchTenants opens a store with fsync on (what an import really costs).
func benchTenants(b *testing.B) *Tenants {
	st, err := subscribers.Open(filepath.Join(b.TempDir(), "s.db"), subscribers.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	t := New(Config{ISPs: []string{"alpha", "beta"}, MaxDevices: 1 << 21}, st, registry.New(), &fakeProxy{}, &fakeAdm{set: map[uint64]bool{}}, nil)
	if err := t.Load(); err != nil {
		b.Fatal(err)
	}
	return t
}

// BenchmarkImportPrehashed imports customers with argon2id PHC hashes in
// batches of 500 lines (what the API's NDJSON import does): customers/s.
func BenchmarkImportPrehashed(b *testing.B) {
	t := benchTenants(b)
	h, err := auth.HashPassword("imported-password")
	if err != nil {
		b.Fatal(err)
	}
	const batch = 500
	b.ResetTimer()
	n := 0
	for b.Loop() {
		ins := make([]CustomerInput, batch)
		for i := range ins {
			ins[i] = CustomerInput{ID: fmt.Sprintf("c-%08d", n+i), PasswordHash: h}
		}
		for _, r := range t.ImportCustomers(ctx, op, "beta", n+1, ins) {
			if r.Result != "created" {
				b.Fatalf("line %d: %+v", r.Line, r)
			}
		}
		n += batch
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "customers/s")
}

// BenchmarkImportDevices attaches devices to customers in batches of 500
// lines (the API's devices:import), against one AttachDevice (one
// transaction) each: devices/s. A trial attached 100k devices one request
// at a time in 114 s.
func BenchmarkImportDevices(b *testing.B) {
	for _, bulk := range []bool{true, false} {
		name := "single"
		if bulk {
			name = "batch500"
		}
		b.Run(name, func(b *testing.B) {
			t := benchTenants(b)
			const batch = 500
			n := 0
			for b.Loop() {
				b.StopTimer()
				cs := make([]CustomerInput, batch)
				ds := make([]DeviceInput, batch)
				for i := range cs {
					k := n + i
					cs[i] = CustomerInput{ID: fmt.Sprintf("c-%08d", k)}
					ds[i] = DeviceInput{MAC: fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", byte(k>>32), byte(k>>24), byte(k>>16), byte(k>>8), byte(k)), CustomerID: cs[i].ID}
				}
				t.ImportCustomers(ctx, op, "beta", n+1, cs)
				b.StartTimer()
				if bulk {
					for _, r := range t.ImportDevices(ctx, beta, "beta", n+1, ds) {
						if r.Result != "attached" {
							b.Fatalf("line %d: %+v", r.Line, r)
						}
					}
				} else {
					for _, d := range ds {
						if _, err := t.AttachDevice(ctx, beta, "beta", d); err != nil {
							b.Fatal(err)
						}
					}
				}
				n += batch
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "devices/s")
		})
	}
}

// BenchmarkClaimConcurrent runs claims from 8 (and 200) concurrent
// clients, each for its own customer: latency percentiles and the heap
// peak (argon2id takes 19 MiB a verify; auth caps the concurrent ones).
func BenchmarkClaimConcurrent(b *testing.B) {
	for _, clients := range []int{8, 200} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			t := benchTenants(b)
			h, err := auth.HashPassword("claim-password")
			if err != nil {
				b.Fatal(err)
			}
			ins := make([]CustomerInput, clients)
			for i := range ins {
				ins[i] = CustomerInput{ID: fmt.Sprintf("k-%d", i), PasswordHash: h, DeviceLimit: 64}
			}
			t.ImportCustomers(ctx, op, "beta", 1, ins)
			var mu sync.Mutex
			var lat []time.Duration
			var peak uint64
			stop := make(chan struct{})
			go func() {
				var ms runtime.MemStats
				for {
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
					runtime.ReadMemStats(&ms)
					mu.Lock()
					peak = max(peak, ms.HeapInuse)
					mu.Unlock()
				}
			}()
			b.ResetTimer()
			round := 0
			for b.Loop() {
				var wg sync.WaitGroup
				for c := range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						mac := fmt.Sprintf("02:%02x:%02x:00:%02x:%02x", round>>8&0xff, round&0xff, c>>8, c&0xff)
						start := time.Now()
						_, err := t.Claim(ctx, Actor{Kind: ActorClaim}, ClaimRequest{ISP: "beta", CustomerID: fmt.Sprintf("k-%d", c), Password: "claim-password", MAC: mac})
						d := time.Since(start)
						if err != nil {
							b.Error(err)
						}
						mu.Lock()
						lat = append(lat, d)
						mu.Unlock()
					}()
				}
				wg.Wait()
				round++
			}
			b.StopTimer()
			close(stop)
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
}
