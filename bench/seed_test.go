package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ispmux/ispmux/subscribers"
)

// seedStore writes each subscriber's customer and device; seedScaleCustomers
// the customers alone (an import point's), and each ISP's device import
// file, one line per subscriber of that ISP.
func TestSeedTenants(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	isps := []string{"alpha", "beta"}
	count := func(path string) (customers, devices int) {
		t.Helper()
		st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		for _, isp := range isps {
			cs, _, err := st.Customers(isp, "", 1000)
			if err != nil {
				t.Fatal(err)
			}
			customers += len(cs)
		}
		regs, err := st.Registrations()
		if err != nil {
			t.Fatal(err)
		}
		return customers, len(regs)
	}
	full := filepath.Join(dir, "full.db")
	if err := seedStore(ctx, full, 7, func(x int) seedSub {
		return seedSub{MAC: scaleMAC(x), ISP: isps[x%2], Customer: "c" + string(rune('0'+x))}
	}, "acc0", false, false, func(string, int) {}); err != nil {
		t.Fatal(err)
	}
	if c, d := count(full); c != 7 || d != 7 {
		t.Errorf("seedStore: %d customers, %d devices; want 7 and 7", c, d)
	}
	var last string
	cust := filepath.Join(dir, "cust.db")
	if err := seedScaleCustomers(ctx, cust, dir, 7, isps, func(what string, _ int) { last = what }); err != nil {
		t.Fatal(err)
	}
	if c, d := count(cust); c != 7 || d != 0 || last != "customers" {
		t.Errorf("seedScaleCustomers: %d customers, %d devices, progress %q; want 7, 0, customers", c, d, last)
	}
	for k, isp := range isps {
		b, err := os.ReadFile(importFile(dir, isp))
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "\n"); n != 4-k {
			t.Errorf("%s's import file: %d lines, want %d", isp, n, 4-k)
		}
	}
}
