package tenants

import (
	"fmt"
	"testing"
	"time"

	"github.com/ispmux/ispmux/auth"
)

// One ISP's import of plaintext passwords hashes them at most
// auth.Slots() at a time, so another ISP's single new customer (its one
// hash) waits for a few of them, not for the batch. Before, a batch
// queued a hash per line at once and the other ISP's create waited for
// all of them (hashes are served in arrival order): a 500-line batch is
// seconds, several imports at once past the API's write timeout.
func TestImportLeavesHashesToOthers(t *testing.T) {
	r := newRig(t)
	alpha := Actor{Kind: ActorISP, Name: "alpha-token", ISP: "alpha", RequestID: "r3"}
	// One hash, for scale: the quickest of three.
	one := time.Hour
	for range 3 {
		start := time.Now()
		if _, err := auth.HashPassword("scale"); err != nil {
			t.Fatal(err)
		}
		one = min(one, time.Since(start))
	}
	const lines = 60
	ins := make([]CustomerInput, lines)
	for i := range ins {
		ins[i] = CustomerInput{ID: fmt.Sprintf("a-%d", i), Password: "imported-pw"}
	}
	done := make(chan []ImportResult)
	go func() { done <- r.ten.ImportCustomers(ctx, alpha, "alpha", 1, ins) }()
	time.Sleep(3 * one) // the import's hashes are under way
	start := time.Now()
	if _, err := r.ten.CreateCustomer(ctx, beta, "beta", CustomerInput{ID: "b-1", Password: "beta-pw"}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	res := <-done
	for _, x := range res {
		if x.Result != "created" {
			t.Fatalf("import line %d: %+v", x.Line, x)
		}
	}
	// The import's lines take lines/Slots hashes' time; the create, its
	// own hash after those queued before it: one per slot.
	if took > time.Duration(lines/(2*auth.Slots()))*one {
		t.Errorf("beta's create took %v (a hash: %v) during alpha's %d-line import: it waited for alpha's hashes", took, one, lines)
	}
	t.Logf("beta's create %v, a hash %v, slots %d", took, one, auth.Slots())
}
