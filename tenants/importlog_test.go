package tenants

import (
	"bytes"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// Import batches the store refuses (a full disk fails every one) are
// logged once every importLogEvery, with the batches left out since: a
// field trial's 80k-line import on a full disk logged 122 lines in 1.3 s.
// Each line's result still says its failure. (The device import, which
// logged nothing, logs through the same limit; a closed store fails its
// lines before the write, so only the customers' batches reach it here.)
func TestImportFailuresLoggedSparingly(t *testing.T) {
	// The timer that says the batches left out is run by the test: one
	// going off by itself, past 10 s of a loaded CI run, raced with the
	// test's steps.
	defer func(every time.Duration) { importLogEvery = every }(importLogEvery)
	importLogEvery = time.Hour
	st, err := subscribers.Open(filepath.Join(t.TempDir(), "s.db"), subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	ten := New(Config{ISPs: []string{"alpha"}, MaxDevices: 100}, st, registry.New(), &fakeProxy{}, &fakeAdm{set: map[uint64]bool{}},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err := ten.Load(); err != nil {
		t.Fatal(err)
	}
	if _, err := ten.CreateCustomer(ctx, op, "alpha", CustomerInput{ID: "a-1", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil { // every write fails from now on
		t.Fatal(err)
	}
	failed := 0
	for b := range 5 {
		var cs []CustomerInput
		var ds []DeviceInput
		for i := range 3 {
			cs = append(cs, CustomerInput{ID: fmt.Sprintf("c-%d-%d", b, i), Password: "pw"})
			ds = append(ds, DeviceInput{MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", b, i), CustomerID: "a-1"})
		}
		for _, r := range ten.ImportCustomers(ctx, op, "alpha", 1+3*b, cs) {
			if r.Result == "error" {
				failed++
			}
		}
		for _, r := range ten.ImportDevices(ctx, op, "alpha", 1+3*b, ds) {
			if r.Result == "error" {
				failed++
			}
		}
	}
	if failed != 30 {
		t.Errorf("%d lines failed, want all 30", failed)
	}
	if n := strings.Count(logs.String(), "import lines not stored"); n != 1 {
		t.Errorf("%d log lines for 5 batches the store refused, want 1:\n%s", n, logs.String())
	}
	// The batches left out are said when the limit allows, with no
	// failure after them (the timer, run here at once).
	ten.importLog.mu.Lock()
	armed := ten.importLog.armed != nil
	ten.importLog.mu.Unlock()
	if !armed {
		t.Error("batches left out, and nothing armed to say so")
	}
	ten.logImportSkipped()
	if !strings.Contains(logs.String(), "batches_not_logged=4") {
		t.Errorf("the 4 batches left out not said:\n%s", logs.String())
	}
	ten.ImportCustomers(ctx, op, "alpha", 15, []CustomerInput{{ID: "c-skipped", Password: "pw"}}) // left out again
	ten.importLog.mu.Lock()
	ten.importLog.last = ten.importLog.last.Add(-importLogEvery) // the limit's period on
	ten.importLog.mu.Unlock()
	ten.ImportCustomers(ctx, op, "alpha", 16, []CustomerInput{{ID: "c-late", Password: "pw"}})
	if !strings.Contains(logs.String(), "lines=16..16") || !strings.Contains(logs.String(), "batches_not_logged_before=1") {
		t.Errorf("the next line, the limit's period on, says neither its lines nor the batch left out:\n%s", logs.String())
	}
}
