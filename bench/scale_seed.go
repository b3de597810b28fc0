package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ispmux/ispmux/lab"
	"github.com/ispmux/ispmux/subscribers"
)

// scaleMAC is subscriber i's MAC: locally administered 02:5c and i's 32
// bits scrambled (multiplied by an odd constant, a bijection), so the
// store and the file see them in no particular order, as real MACs are.
func scaleMAC(i int) subscribers.MAC {
	var m subscribers.MAC
	m[0], m[1] = 0x02, 0x5c
	binary.BigEndian.PutUint32(m[2:], uint32(i)*0x9e3779b1)
	return m
}

// scaleIP is subscriber i's address at its ISP: 10.0.0.0/8, last octet
// 1..250 (unique for i < 250 × 65536).
func scaleIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i / 250 >> 8), byte(i / 250), byte(i%250 + 1)})
}

func macText(m subscribers.MAC) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 17)
	for i, x := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hex[x>>4], hex[x&15])
	}
	return string(b)
}

// scaleConfig is the configuration of a scale run in lab t: the lab's
// access port and ISPs, no API listener, MAC table macTable, and static
// [[subscriber]] entries 0..static-1 (an address each) plus extra DHCP
// entries (the reload's one change: extra[i] is subscriber index i).
func scaleConfig(t *lab.Topology, stateDir string, macTable, static int, extra []int) []byte {
	var b bytes.Buffer
	q := strconv.Quote
	fmt.Fprintf(&b, "# bench scale (generated)\nversion = 1\n\n[appliance]\nstate_dir = %s\n\n", q(stateDir))
	fmt.Fprintf(&b, "[datapath]\nattach_mode = \"native\"\nbind_mode = \"copy\"\nframes = %d\nrx_ring = %[2]d\ntx_ring = %[2]d\nfill_ring = %[2]d\ncompletion_ring = %[2]d\nmac_table_size = %d\n",
		lab.ConfigFrames, lab.ConfigRings, macTable)
	// One access port: every seeded subscriber is on it.
	fmt.Fprintf(&b, "\n[[access]]\ninterface = %s\naddress = %s\n", q(t.Appliance.Access[0].Name), q(lab.Gateway))
	for _, isp := range t.ISPs {
		fmt.Fprintf(&b, "\n[[isp]]\nname = %s\nuplink = %s\naddress = %s\nnext_hop = %s\ndhcp_servers = [%s]\n",
			q(isp.Name), q(isp.Uplink), q(isp.OurAddr), q(isp.RouterAddr), q(isp.RouterAddr))
	}
	b.Grow(static * 90)
	for i := range static {
		fmt.Fprintf(&b, "\n[[subscriber]]\nmac = %q\nisp = %s\nip = %q\n", macText(scaleMAC(i)), q(t.ISPs[i%len(t.ISPs)].Name), scaleIP(i).String())
	}
	for _, i := range extra {
		fmt.Fprintf(&b, "\n[[subscriber]]\nmac = %q\nisp = %s\ncustomer_id = \"cfg-%d\"\n", macText(scaleMAC(i)), q(t.ISPs[i%len(t.ISPs)].Name), i)
	}
	return b.Bytes()
}

// seedStore writes n subscribers straight into the store at path through
// package subscribers (not the API): one customer per device (source
// "api", round-robin over isps), written with ApplyTenant in batches of
// 5000 in MAC order, and, with bound, a DHCP binding per device on access (24 h lease,
// the client identifier, Option 82 and ACK options a real lease carries),
// written with CommitBinding from 256 concurrent writers (group commits).
// The store is opened with NoSync (a seed, not a service) and closed;
// seeding stops when ctx ends.
// progress is called with the subscribers written so far.
func seedStore(ctx context.Context, path string, n int, isps []string, access string, bound bool, progress func(string, int)) (err error) {
	st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); err == nil {
			err = cerr
		}
	}()
	// Written in MAC order (the registrations' and bindings' key order):
	// each transaction then appends to the B-trees instead of splitting
	// pages all over them. The subscribers themselves are the same.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		ma, mb := scaleMAC(a), scaleMAC(b)
		return bytes.Compare(ma[:], mb[:])
	})
	const batch = 5000
	for lo := 0; lo < n; lo += batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		var w subscribers.TenantWrite
		for _, i := range order[lo:min(n, lo+batch)] {
			isp := isps[i%len(isps)]
			id := "c" + strconv.Itoa(i)
			w.PutCustomers = append(w.PutCustomers, subscribers.Customer{ISP: isp, ID: id, Status: "active", DeviceLimit: 4, Source: "api"})
			w.PutRegistrations = append(w.PutRegistrations, subscribers.Registration{MAC: scaleMAC(i), CustomerID: id, ISP: isp, Source: "api"})
		}
		if _, err := st.ApplyTenant(w); err != nil {
			return fmt.Errorf("seed devices: %w", err)
		}
		progress("devices", min(n, lo+batch))
	}
	if !bound {
		return nil
	}
	now := time.Now()
	var next, done atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 256)
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
				x := int(next.Add(1) - 1)
				if x >= n || ctx.Err() != nil {
					return
				}
				i := order[x]
				m := scaleMAC(i)
				isp := isps[i%len(isps)]
				b := subscribers.Binding{
					MAC: m, Access: access, ISP: isp, IP: scaleIP(i),
					Circuit: access, ServerID: netip.AddrFrom4([4]byte{192, 0, 2, 1}), Relay: netip.AddrFrom4([4]byte{192, 0, 2, 1}),
					Expires: now.Add(24 * time.Hour), Updated: now, LeaseTime: 24 * time.Hour, Customer: "c" + strconv.Itoa(i),
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
