package subscribers

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// EndBindingOp ends a binding within an ApplyTenant write, as EndBinding
// does (the binding of (Access, VLAN, MAC) removed if there is one, the
// Intent stored if not nil) but without an event of its own: the write's
// Events record it.
type EndBindingOp struct {
	Access string
	VLAN   uint16
	MAC    MAC
	Intent *Intent
}

// TenantWrite is one atomic change of the tenant model (see ApplyTenant).
type TenantWrite struct {
	PutCustomers        []Customer
	DeleteCustomers     []CustomerKey
	PutRegistrations    []Registration
	DeleteRegistrations []MAC
	EndBindings         []EndBindingOp
	Events              []Event
	// ClearSyncLeft, if set, clears that source's record of the
	// customers its sync's devices left (SyncOptions.RecordLeft): the
	// caller has dealt with them in this write.
	ClearSyncLeft string
}

// TenantResult is what ApplyTenant assigned.
type TenantResult struct {
	// Intents has one entry per EndBindings entry, in the same order:
	// the stored intent with its ID and Created, or the zero Intent
	// where the op had none.
	Intents []Intent
	// Ended has one entry per EndBindings entry: whether a binding was
	// there to end (the intent is stored either way).
	Ended []bool
	// Events are the write's events with Seq (and Time, if it was zero)
	// assigned, in the order given.
	Events []Event
}

// ApplyTenant makes w in one durable transaction (grouped with the
// concurrent writes, one fsync): after a crash either all of it happened
// or none. The tenant model's single writer (tenants.Service) calls it
// after its own checks, under its own lock, so the store checks only that
// each record can be stored; a bad one fails the whole write with
// ErrInvalid and nothing is written.
//
// Within the transaction the parts are applied in this order: the
// EndBindings (as EndBinding, each with its intent), the
// DeleteRegistrations, the DeleteCustomers, the PutCustomers, the
// PutRegistrations, the Events (appended in order, as AddEvent, with the
// trimming of the log). So a key both deleted and put ends up put, and of
// two puts of one key the later one counts. Deleting what is not there is
// not an error. A customer's devices are not touched by deleting it: the
// caller deletes or moves them in the same write.
//
// Puts follow PutRegistration and the customers' rules for zero times:
// Updated becomes now, Created is kept from the stored record (now for a
// new one, and for a registration moved to another customer:
// Registration.Created). Every put and delete of a customer or registration maintains
// the indexes and is appended to the change feed (Watch); the writes are
// made in key order, so a large write (a bulk import batch) stays linear.
func (s *Store) ApplyTenant(w TenantWrite) (TenantResult, error) {
	now := time.Now()
	custs := slices.Clone(w.PutCustomers)
	for i := range custs {
		if err := validateCustomer(&custs[i]); err != nil {
			return TenantResult{}, fmt.Errorf("apply tenant write: customer %s: %w", customerName(custs[i].ISP, custs[i].ID), err)
		}
	}
	for _, k := range w.DeleteCustomers {
		if err := validateCustomerKey(k.ISP, k.ID); err != nil {
			return TenantResult{}, fmt.Errorf("apply tenant write: delete customer %s: %w", customerName(k.ISP, k.ID), err)
		}
	}
	regs := slices.Clone(w.PutRegistrations)
	for i := range regs {
		r := &regs[i]
		if err := validateRegistration(r); err != nil {
			return TenantResult{}, fmt.Errorf("apply tenant write: registration %s: %w", macString(r.MAC), err)
		}
		if r.Updated.IsZero() {
			r.Updated = now
		}
	}
	ends := slices.Clone(w.EndBindings)
	intents := make([]Intent, len(ends))
	for i, op := range ends {
		name := func() string { return bindingName(op.Access, op.VLAN, op.MAC) } // for errors only
		if err := validAccess(op.Access); err != nil {
			return TenantResult{}, fmt.Errorf("apply tenant write: end binding %s: %w", name(), err)
		}
		if op.Intent != nil {
			it, err := prepareIntent(*op.Intent, now)
			if err != nil {
				return TenantResult{}, fmt.Errorf("apply tenant write: end binding %s: intent: %w", name(), err)
			}
			intents[i] = it
		}
	}
	evs := slices.Clone(w.Events)
	putE := make([]func(*bolt.Tx) error, len(evs))
	for i := range evs {
		if err := prepareEvent(&evs[i]); err != nil {
			return TenantResult{}, fmt.Errorf("apply tenant write: %w", err)
		}
		putE[i] = s.eventPut(&evs[i])
	}
	// Key order (stable: the later of two puts of a key still counts).
	slices.SortStableFunc(custs, func(a, b Customer) int {
		return cmp.Or(cmp.Compare(a.ISP, b.ISP), cmp.Compare(a.ID, b.ID))
	})
	slices.SortStableFunc(regs, func(a, b Registration) int { return bytes.Compare(a.MAC[:], b.MAC[:]) })
	delRegs := slices.Clone(w.DeleteRegistrations)
	slices.SortFunc(delRegs, func(a, b MAC) int { return bytes.Compare(a[:], b[:]) })
	delCusts := slices.Clone(w.DeleteCustomers)
	slices.SortFunc(delCusts, func(a, b CustomerKey) int { return cmp.Or(cmp.Compare(a.ISP, b.ISP), cmp.Compare(a.ID, b.ID)) })

	wakes := wakeChanges
	if len(evs) > 0 {
		wakes |= wakeEvents
	}
	ended := make([]bool, len(ends))
	stored := make([]Intent, len(ends))
	err := s.updateWaking(func(tx *bolt.Tx) error {
		for i, op := range ends {
			var err error
			if ended[i], err = bindingDelete(op.Access, op.VLAN, op.MAC)(tx); err != nil {
				return err
			}
			stored[i] = Intent{}
			if op.Intent != nil {
				stored[i] = intents[i]
				if err := intentPut(&stored[i])(tx); err != nil {
					return err
				}
			}
		}
		var ix indexOps
		for _, m := range delRegs {
			if _, err := s.regDelete(tx, m, now, &ix); err != nil {
				return err
			}
		}
		for _, k := range delCusts {
			if _, err := s.customerDelete(tx, k.ISP, k.ID, now); err != nil {
				return err
			}
		}
		for _, c := range custs {
			if err := s.customerPut(tx, c, now); err != nil {
				return err
			}
		}
		for _, r := range regs {
			if _, err := s.regPut(tx, r, now, &ix); err != nil {
				return err
			}
		}
		if err := ix.apply(tx); err != nil {
			return err
		}
		for _, put := range putE {
			if err := put(tx); err != nil {
				return err
			}
		}
		if w.ClearSyncLeft != "" {
			return tx.Bucket(bucketMeta).Delete(keySyncLeft(w.ClearSyncLeft))
		}
		return nil
	}, wakes)
	if err != nil {
		return TenantResult{}, fmt.Errorf("apply tenant write: %w", err)
	}
	return TenantResult{Intents: stored, Ended: ended, Events: evs}, nil
}
