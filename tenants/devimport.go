package tenants

import (
	"context"
	"fmt"

	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

// DeviceImportResult is one line's outcome of a bulk device import.
type DeviceImportResult struct {
	Line       int    `json:"line"`
	MAC        string `json:"mac,omitempty"`
	CustomerID string `json:"customer_id,omitempty"`
	// Result: attached, moved (from another customer of this ISP),
	// unchanged (already that customer's), error.
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
	// RequestID is the import request's id, on an error line (the API
	// sets it: an error may ask to quote it).
	RequestID string `json:"request_id,omitempty"`
}

// ImportDevices attaches a batch of devices to customers of isp, each line
// as AttachDevice takes it (the same checks, refusals and events), in one
// store transaction: an ISP's devices known in advance (its customers'
// modems) go in at thousands a second, where one attach a transaction
// took about a millisecond each (100k in 114 s: a trial). first is the
// line number of ins[0]; one result per line, in order. A MAC twice in
// one batch is refused on its second line, the error naming both lines
// (the API sends it in the next batch). A line refused leaves the others; a store error fails every
// line the batch would have written.
func (t *Tenants) ImportDevices(ctx context.Context, a Actor, isp string, first int, ins []DeviceInput) []DeviceImportResult {
	failpoint.Hit(failpoint.TenantImportBeforeBatch)
	res := make([]DeviceImportResult, len(ins))
	for i, in := range ins {
		res[i] = DeviceImportResult{Line: first + i, MAC: in.MAC, CustomerID: in.CustomerID}
	}
	fail := func(i int, err error) { res[i].Result, res[i].Error = "error", err.Error() }
	if err := t.checkISP(isp); err != nil {
		for i := range ins {
			fail(i, err)
		}
		return res
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var w subscribers.TenantWrite
	pend := newAttachPending()
	type planned struct {
		i  int
		pl attachPlan
	}
	var plans []planned
	seen := make(map[subscribers.MAC]int, len(ins))
	for i, in := range ins {
		mac, err := parseMAC(in.MAC)
		if err != nil {
			fail(i, err)
			continue
		}
		res[i].MAC = macString(mac)
		if j, dup := seen[mac]; dup {
			fail(i, fmt.Errorf("%w: device %s at line %d repeats line %d of this batch", ErrInvalid, res[i].MAC, first+i, first+j))
			continue
		}
		seen[mac] = i
		if err := validCustomerID(in.CustomerID); err != nil {
			fail(i, err)
			continue
		}
		c, err := t.store.Customer(isp, in.CustomerID)
		if err != nil {
			fail(i, notFound("customer "+in.CustomerID, err))
			continue
		}
		pl, err := t.planAttach(&w, a, c, mac, in.Access, "", SourceAPI, false, pend)
		switch {
		case err != nil:
			fail(i, err)
			continue
		case pl.unchanged:
			res[i].Result = "unchanged"
			continue
		}
		pend.add(pl)
		plans = append(plans, planned{i, pl})
	}
	if len(plans) == 0 {
		return res
	}
	if _, err := t.apply(w); err != nil {
		for _, p := range plans {
			fail(p.i, err)
		}
		t.logImportFailed("devices", isp, first, len(ins), len(plans), a, err)
		return res
	}
	failpoint.Hit(failpoint.TenantAfterCommit)
	var gone []uint64
	for _, p := range plans {
		gone = append(gone, t.finishAttach(p.pl)...)
		res[p.i].Result = "attached"
		if p.pl.had && p.pl.old.ISP == isp {
			res[p.i].Result = "moved"
		}
	}
	t.revalidate(gone...) // the batch's at once: one call, not one a device
	return res
}
