package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/subscribers"
)

// ispmux compact -c FILE: the configuration's store rewritten smaller
// after its customers were deleted, what it kept intact; refused while
// the store is open (ispmux running).
func TestCompactCommand(t *testing.T) {
	cfg, state := testConfig(t)
	path := filepath.Join(state, appliance.StoreName)
	st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var w, del subscribers.TenantWrite
	for i := range 5000 {
		c := subscribers.Customer{ISP: "alpha", ID: fmt.Sprintf("c-%05d", i), Status: "active", DeviceLimit: 1, Source: "api"}
		w.PutCustomers = append(w.PutCustomers, c)
		if i > 0 {
			del.DeleteCustomers = append(del.DeleteCustomers, subscribers.CustomerKey{ISP: "alpha", ID: c.ID})
		}
	}
	if _, err := st.ApplyTenant(w); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ApplyTenant(del); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd(t, "", "compact", "-c", cfg); err == nil || !strings.Contains(err.Error(), "ispmux running") {
		t.Errorf("compact of an open store: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCmd(t, "", "compact", "-c", cfg)
	if err != nil || !strings.Contains(out, "compacted "+path) || !strings.Contains(out, "MiB →") {
		t.Fatalf("compact: %v %q", err, out)
	}
	st, err = subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Customer("alpha", "c-00000"); err != nil {
		t.Errorf("the customer kept: %v", err)
	}
}
