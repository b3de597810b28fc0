package bench

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ispmux/ispmux/subscribers"
)

// Bindings of the benchmark's sources in ispmux: static [[subscriber]]
// entries up to staticMax sources (README: the supported maximum of a
// configuration file), beyond that what a deployment of that size has —
// devices registered through the API with a DHCP binding each, restored
// from the store at start. Either way every source is a bound (MAC,
// address) in the datapath's tables, with anti-spoofing.
const (
	BindingsStatic = "static"
	BindingsStore  = "store"
	staticMax      = 100_000
)

// bindingsFor is how sweep point n's sources are bound for mode (auto,
// static or store).
func bindingsFor(mode string, n int) string {
	switch mode {
	case BindingsStatic, BindingsStore:
		return mode
	}
	if n <= staticMax {
		return BindingsStatic
	}
	return BindingsStore
}

// seedForwardStore writes the n benchmark sources into the store at path
// through package subscribers: a customer and a device (source "api") per
// source at its ISP, and a 24-hour DHCP binding on access with its address,
// as bench scale seeds its "dhcp" points. Sources are written in MAC order
// (the stores' key order), the bindings from 256 concurrent writers (group
// commits), with NoSync (a seed, not a service). progress is called with
// what was written so far.
func seedForwardStore(ctx context.Context, path string, n int, isps []string, access string, progress func(string, int)) (err error) {
	st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); err == nil {
			err = cerr
		}
	}()
	const batch = 5000
	for lo := 0; lo < n; lo += batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		var w subscribers.TenantWrite
		for k := lo; k < min(n, lo+batch); k++ {
			mac, _ := forwardSource(k)
			isp := isps[k%len(isps)]
			id := "f" + strconv.Itoa(k)
			w.PutCustomers = append(w.PutCustomers, subscribers.Customer{ISP: isp, ID: id, Status: "active", DeviceLimit: 4, Source: "api"})
			w.PutRegistrations = append(w.PutRegistrations, subscribers.Registration{MAC: subscribers.MAC(mac), CustomerID: id, ISP: isp, Source: "api"})
		}
		if _, err := st.ApplyTenant(w); err != nil {
			return fmt.Errorf("seed devices: %w", err)
		}
		progress("devices", min(n, lo+batch))
	}
	now := time.Now()
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1) - 1)
				if k >= n || ctx.Err() != nil {
					return
				}
				mac, ip := forwardSource(k)
				m := subscribers.MAC(mac)
				b := subscribers.Binding{
					MAC: m, Access: access, ISP: isps[k%len(isps)], IP: netip.AddrFrom4(ip),
					Circuit: access, ServerID: srv, Relay: srv,
					Expires: now.Add(24 * time.Hour), Updated: now, LeaseTime: 24 * time.Hour, Customer: "f" + strconv.Itoa(k),
					ClientID: append([]byte{1}, m[:]...),
					Option82: append([]byte{1, byte(len(access))}, append([]byte(access), 2, 6, m[0], m[1], m[2], m[3], m[4], m[5])...),
					Options:  []byte{1, 4, 255, 240, 0, 0, 3, 4, 100, 80, 0, 1, 51, 4, 0, 1, 81, 128},
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
		}()
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
