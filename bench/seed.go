package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ispmux/ispmux/subscribers"
)

// Seeding a store for the lab benchmarks (bench scale's dhcp points, bench
// forward's large sweep points): subscribers written straight into the
// store file through package subscribers, not through the API.

// seedSub is one seeded subscriber: its device, its customer (one per
// device) at its ISP, and the address of its DHCP binding.
type seedSub struct {
	MAC      subscribers.MAC
	IP       netip.Addr
	ISP      string
	Customer string
}

// seedTenants writes n subscribers' customers (sub(x): the x-th; source
// "api", DeviceLimit 4) into st with ApplyTenant in batches of 5000, and
// with devices each one's device too; progress is called after each batch
// with what was written ("devices", or "customers" without devices). It
// stops when ctx ends.
func seedTenants(ctx context.Context, st *subscribers.Store, n int, sub func(x int) seedSub, devices bool, progress func(what string, done int)) error {
	what := "customers"
	if devices {
		what = "devices"
	}
	const batch = 5000
	for lo := 0; lo < n; lo += batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		var w subscribers.TenantWrite
		for x := lo; x < min(n, lo+batch); x++ {
			s := sub(x)
			w.PutCustomers = append(w.PutCustomers, subscribers.Customer{ISP: s.ISP, ID: s.Customer, Status: "active", DeviceLimit: 4, Source: "api"})
			if devices {
				w.PutRegistrations = append(w.PutRegistrations, subscribers.Registration{MAC: s.MAC, CustomerID: s.Customer, ISP: s.ISP, Source: "api"})
			}
		}
		if _, err := st.ApplyTenant(w); err != nil {
			return fmt.Errorf("seed %s: %w", what, err)
		}
		progress(what, min(n, lo+batch))
	}
	return nil
}

// seedStore writes n subscribers into the store at path: sub(x) is the
// x-th to write (give them in MAC order, the store's key order, so that
// each transaction appends to the B-trees instead of splitting pages all
// over them). A customer (source "api", DeviceLimit 4) and its device per
// subscriber, with ApplyTenant in batches of 5000; then, if bound, a DHCP
// binding on access (24 h lease, with the client identifier, Option 82
// and ACK options a real lease carries) from 256 concurrent writers
// (group commits). The store is opened with NoSync (a seed, not a
// service), closed, and its directory's files written out (syncState);
// seeding stops when ctx ends. With lapsed, each
// lease ran out an hour ago (a store left by an outage). progress is called
// with what was written so far ("devices" or "bindings"), at least every
// 2 s while bindings are written.
func seedStore(ctx context.Context, path string, n int, sub func(x int) seedSub, access string, bound, lapsed bool, progress func(what string, done int)) (err error) {
	st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = syncState(filepath.Dir(path))
		}
	}()
	if err := seedTenants(ctx, st, n, sub, true, progress); err != nil {
		return err
	}
	if !bound {
		return nil
	}
	expires := time.Now().Add(24 * time.Hour)
	if lapsed {
		expires = time.Now().Add(-time.Hour)
	}
	srv := netip.AddrFrom4([4]byte{192, 0, 2, 1})
	var next, done atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				progress("bindings", int(done.Load()))
			}
		}
	}()
	for range 256 {
		wg.Go(func() {
			for {
				x := int(next.Add(1) - 1)
				if x >= n || ctx.Err() != nil {
					return
				}
				s := sub(x)
				m := s.MAC
				b := subscribers.Binding{
					MAC: m, Access: access, ISP: s.ISP, IP: s.IP,
					Circuit: access, ServerID: srv, Relay: srv,
					Expires: expires, Updated: expires.Add(-24 * time.Hour), LeaseTime: 24 * time.Hour, Customer: s.Customer,
					ClientID: append([]byte{1}, m[:]...),
					Option82: append([]byte{1, byte(len(access))}, append([]byte(access), 2, 6, m[0], m[1], m[2], m[3], m[4], m[5])...),
					// subnet mask, router, DNS, lease time: a typical ACK.
					Options: []byte{1, 4, 255, 0, 0, 0, 3, 4, 10, 0, 0, 1, 6, 8, 10, 0, 0, 1, 10, 0, 0, 2, 51, 4, 0, 1, 81, 128},
				}
				if err := st.CommitBinding(b); err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	close(stop)
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case err := <-errc:
		return fmt.Errorf("seed bindings: %w", err)
	default:
	}
	progress("bindings", n)
	return nil
}

// syncState writes out every regular file in the state directory dir and
// the directory itself (fsync), as a seed's last step. The seed writes
// with NoSync, which could leave its store (~700 MB at 1M subscribers)
// dirty in the page cache: the first start's first commit, whose
// fdatasync waits for all of the store file's dirty pages, then paid
// whatever of the seed's writeback the kernel had not done yet inside
// bench scale's first_start_s (700 MB of dirty pages took 0.76 s to
// fdatasync on the lab VM's disk). A store an operator starts on was
// written by ispmux, each commit synced, or restored and synced. (It was
// not the first start's gap over a restart at 1M: with the sync, that
// stayed ~0.5 s, its CPU 0.74 s more: docs/PERFORMANCE.md.)
func syncState(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		if err := syncPath(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return syncPath(dir)
}

// syncPath fsyncs the file or directory at path.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("seed: sync %s: %w", path, err)
	}
	return nil
}
