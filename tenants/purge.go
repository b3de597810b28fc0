package tenants

import (
	"context"
	"fmt"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

// PurgeResult is what PurgeISP removed.
type PurgeResult struct {
	ISP       string `json:"isp"`
	Customers int    `json:"customers"`
	Devices   int    `json:"devices"`
}

// purgeBatchSize is how many customers (or devices left without one) one
// purge transaction removes: a million customers are a few hundred
// transactions, each small.
const purgeBatchSize = 512

// PurgeISP removes every customer and device the store holds of isp, an
// ISP the configuration no longer has (removed, or renamed): the operator
// only. Until then they get no service, no API route reaches them, and
// their devices' MACs stay taken (an attach at another ISP is refused);
// the start's log names such an ISP and its counts. A configured ISP is
// refused (ErrConflict: its customers are deleted one by one, or the ISP
// removed from the configuration first); an ISP the store holds nothing of
// is ErrNotFound.
//
// Each customer goes as DeleteCustomer takes it (a device the operator
// blocked stays blocked, ownerless), purgeBatchSize customers a
// transaction, each with one customer-deleted event counting what it
// removed (purgeWrite), so a crash or a cancelled request leaves some
// purged and the rest as they were: a second call finishes. The devices
// left after the customers (a registration whose customer record is gone)
// go the same way.
func (t *Tenants) PurgeISP(ctx context.Context, a Actor, isp string) (PurgeResult, error) {
	res := PurgeResult{ISP: isp}
	if a.Kind != ActorOperator {
		return res, fmt.Errorf("%w: purging an ISP is the operator's", ErrForbidden)
	}
	if isp == "" {
		return res, fmt.Errorf("%w: no ISP named", ErrInvalid)
	}
	if t.isps[isp] {
		return res, fmt.Errorf("%w: ISP %q is configured: delete its customers one by one, or remove its [[isp]] from the configuration and restart first", ErrConflict, isp)
	}
	why := fmt.Sprintf("ISP %q is not configured: purged by the operator", isp)
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		customers, devices, err := t.purgeBatch(a, isp, why)
		if err != nil {
			return res, err
		}
		if customers == 0 && devices == 0 {
			break
		}
		res.Customers += customers
		res.Devices += devices
	}
	if res.Customers == 0 && res.Devices == 0 {
		return res, fmt.Errorf("%w: the store holds no customer or device of ISP %q", ErrNotFound, isp)
	}
	t.log.Info("tenants: ISP purged", "isp", isp, "customers", res.Customers, "devices", res.Devices, "actor", a.String())
	return res, nil
}

// purgeBatch removes up to purgeBatchSize customers of isp with their
// devices, or, once none is left, up to purgeBatchSize devices of isp, in one
// transaction under t.mu (held for one batch only: claims and the API go
// on between batches); it returns how many of each it removed.
func (t *Tenants) purgeBatch(a Actor, isp, why string) (customers, devices int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cs, _, err := t.store.Customers(isp, "", purgeBatchSize)
	if err != nil {
		return 0, 0, err
	}
	var regs []subscribers.Registration
	w := subscribers.TenantWrite{}
	for _, c := range cs {
		devs, err := t.store.DevicesOf(isp, c.ID)
		if err != nil {
			return 0, 0, err
		}
		w.DeleteCustomers = append(w.DeleteCustomers, subscribers.CustomerKey{ISP: isp, ID: c.ID})
		regs = append(regs, devs...)
	}
	if len(cs) == 0 {
		// The devices without a customer record, if any.
		if regs, _, err = t.store.Devices(isp, "", "", purgeBatchSize); err != nil {
			return 0, 0, err
		}
	}
	if len(cs) == 0 && len(regs) == 0 {
		return 0, 0, nil
	}
	n, err := t.purgeWrite(a, isp, w, regs, why)
	return len(cs), n, err
}

// purgeWrite commits w (customers of isp deleted) with the devices regs
// detached and one event for the batch (t.mu held), publishes the detaches and ends
// the devices' bindings; it returns the devices detached.
//
// One event a batch, not one per customer and device as DeleteCustomer
// writes: the log is trimmed by count over every ISP, and a purge of 100k
// customers wrote 200k events, pushing every other ISP's events out of a
// log of the default retention, their webhooks' undelivered ones too (a
// trial). The purged ISP has no route and no webhook to read them. Only an
// operator's block kept (device-blocked, rare) has its own.
func (t *Tenants) purgeWrite(a Actor, isp string, w subscribers.TenantWrite, regs []subscribers.Registration, why string) (int, error) {
	kept := make([]bool, len(regs))
	for i, r := range regs {
		kept[i] = unregisterWrite(&w, a, r, why)
	}
	w.Events = append(w.Events, event(a, subscribers.EventCustomerDeleted, isp, "", subscribers.MAC{},
		fmt.Sprintf("%s: this batch, customers deleted: %d, devices detached: %d", why, len(w.DeleteCustomers), len(regs))))
	if _, err := t.apply(w); err != nil {
		return 0, err
	}
	failpoint.Hit(failpoint.TenantAfterCommit)
	macs := make([]uint64, 0, len(regs))
	for i, r := range regs {
		t.afterDetach(r, kept[i])
		macs = append(macs, binding.MAC48(r.MAC))
	}
	for _, k := range w.DeleteCustomers {
		t.reg.SetSuspended(k.ISP, k.ID, false)
	}
	t.revalidate(macs...)
	return len(regs), nil
}
