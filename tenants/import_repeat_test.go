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
