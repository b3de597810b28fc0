package tenants

import (
	"strings"
	"testing"
)

// TestImportCustomerRepeatNamesBothLines: a customer on two lines of one
// batch is refused on the later line, whose error names both lines (its
// own and the one it repeats), so the message stands alone in a log or a
// table; the earlier line is taken. (The API never sends one twice in a
// batch: it takes a repeat in the next, in line order.)
func TestImportCustomerRepeatNamesBothLines(t *testing.T) {
	r := newRig(t)
	res := r.ten.ImportCustomers(ctx, beta, "beta", 1, []CustomerInput{{ID: "r-1"}, {ID: "r-2"}, {ID: "r-1", DeviceLimit: 4}})
	if res[0].Result != "created" || res[1].Result != "created" {
		t.Fatalf("first lines: %+v", res)
	}
	if got := res[2]; got.Line != 3 || got.Result != "error" || !strings.Contains(got.Error, `customer "r-1" at line 3 repeats line 1 of this batch`) {
		t.Errorf("the repeat: %+v, want an error naming lines 3 and 1", got)
	}
	if c, err := r.store.Customer("beta", "r-1"); err != nil || c.DeviceLimit != 1 {
		t.Errorf("r-1 after the batch: %+v %v; want line 1's device limit 1", c, err)
	}
}

// TestImportCustomerBadIDTwice: two lines without a customer ID are each
// told that the ID is missing; the second was told it repeats the first.
func TestImportCustomerBadIDTwice(t *testing.T) {
	r := newRig(t)
	res := r.ten.ImportCustomers(ctx, beta, "beta", 1, []CustomerInput{{ID: ""}, {ID: "r-1"}, {ID: ""}})
	if res[1].Result != "created" {
		t.Fatalf("line 2: %+v", res[1])
	}
	for _, i := range []int{0, 2} {
		if got := res[i]; got.Result != "error" || strings.Contains(got.Error, "repeats") {
			t.Errorf("line %d: %+v, want the ID's own error", i+1, got)
		}
	}
	if res[0].Error != res[2].Error {
		t.Errorf("lines 1 and 3 told apart: %q, %q", res[0].Error, res[2].Error)
	}
}
