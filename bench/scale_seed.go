package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"

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

// seedScaleStore writes bench scale's n subscribers into the store at
// path (seedStore): subscriber i is scaleMAC(i) with scaleIP(i), customer
// "c<i>" at isps[i mod len(isps)], written in MAC order; with bound, each
// with its DHCP binding on access (lapsed: run out an hour ago).
func seedScaleStore(ctx context.Context, path string, n int, isps []string, access string, bound, lapsed bool, progress func(string, int)) error {
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
	return seedStore(ctx, path, n, func(x int) seedSub {
		i := order[x]
		return seedSub{MAC: scaleMAC(i), IP: scaleIP(i), ISP: isps[i%len(isps)], Customer: "c" + strconv.Itoa(i)}
	}, access, bound, lapsed, progress)
}

// seedScaleCustomers writes the customers of bench scale's n subscribers
// (customer "c<i>" at isps[i mod len(isps)], as seedScaleStore) into the
// store at path, without their devices (an import point's), and the
// devices' NDJSON import file of each ISP into dir (importFile): one
// line per subscriber, scaleMAC(i) to customer "c<i>", in i's order (no
// particular MAC order, as an ISP's export).
func seedScaleCustomers(ctx context.Context, path, dir string, n int, isps []string, progress func(string, int)) (err error) {
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
	if err := seedTenants(ctx, st, n, func(i int) seedSub {
		return seedSub{ISP: isps[i%len(isps)], Customer: "c" + strconv.Itoa(i)}
	}, false, progress); err != nil {
		return err
	}
	for k, isp := range isps {
		var b bytes.Buffer
		for i := k; i < n; i += len(isps) {
			fmt.Fprintf(&b, "{\"mac\":%q,\"customer_id\":\"c%d\"}\n", macText(scaleMAC(i)), i)
		}
		if err := os.WriteFile(importFile(dir, isp), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// importFile is the device import file of isp in an import point's
// directory dir.
func importFile(dir, isp string) string {
	return filepath.Join(dir, "import-"+isp+".ndjson")
}
