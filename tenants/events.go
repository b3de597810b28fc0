package tenants

import (
	"context"
	"errors"
	"net"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// EventView is the event as the API shows it to the operator, numbered
// by the event log's Seq, with its ISP's number for it, e.ISPSeq (where
// the read set it: subscribers.Store.EventsPage does) (ISPEventView: as
// an ISP sees it).
func EventView(e subscribers.Event) Event {
	v := Event{Seq: e.Seq, ISPSeq: e.ISPSeq, Time: e.Time, Kind: string(e.Kind), ISP: e.ISP, CustomerID: e.Customer, Access: e.Access,
		Reason: e.Reason, Actor: e.Actor, RequestID: e.RequestID}
	if e.MAC != (subscribers.MAC{}) {
		v.MAC = net.HardwareAddr(e.MAC[:]).String()
	}
	if e.IP.IsValid() {
		v.IP = e.IP.String()
	}
	if !e.LeaseEnd.IsZero() {
		end := e.LeaseEnd
		v.LeaseEnd = &end
	}
	return v
}

// ISPEventView is the event as its ISP's API reads and webhooks show it:
// numbered in the ISP's own sequence (e.ISPSeq, which the reads of one
// ISP's events set), never by the box's.
func ISPEventView(e subscribers.Event) Event {
	v := EventView(e)
	v.Seq, v.ISPSeq = e.ISPSeq, 0
	return v
}

// Events returns up to limit events of isp ("" = all) after seq: for an
// ISP, in its own sequence (ISPEventView).
func (t *Tenants) Events(ctx context.Context, isp string, after uint64, limit int) (EventPage, error) {
	if isp != "" {
		if err := t.checkISP(isp); err != nil {
			return EventPage{}, err
		}
	}
	limit = pageLimit(limit)
	// The events and the bounds in one read: a page trimmed in front of
	// its reader is told (missed), not skipped silently.
	evs, oldest, newest, err := t.store.EventsPage(isp, after, limit)
	if err != nil && len(evs) == 0 {
		return EventPage{}, err
	}
	p := EventPage{Events: make([]Event, 0, len(evs)), Oldest: oldest, Newest: newest}
	for _, e := range evs {
		if isp != "" && e.ISP != isp {
			continue // never another ISP's
		}
		if isp != "" {
			p.Events = append(p.Events, ISPEventView(e))
		} else {
			p.Events = append(p.Events, EventView(e))
		}
	}
	return p, nil
}

// EventsOfMAC returns up to limit events of the device mac (isp's only,
// in its own sequence, unless isp is ""): after sequence *after, or (nil)
// the newest, read from the store's events-by-mac index (no walk of the
// log: a device's events of an hour ago on a busy box are thousands of
// pages back).
func (t *Tenants) EventsOfMAC(ctx context.Context, isp, mac string, after *uint64, limit int) (EventPage, error) {
	if isp != "" {
		if err := t.checkISP(isp); err != nil {
			return EventPage{}, err
		}
	}
	m, err := parseAnyMAC(mac)
	if err != nil {
		return EventPage{}, err
	}
	limit = pageLimit(limit)
	var evs []subscribers.Event
	var oldest, newest uint64
	if after == nil {
		evs, oldest, newest, err = t.store.NewestEventsOfMAC(m, isp, limit)
	} else {
		evs, oldest, newest, err = t.store.EventsOfMAC(m, isp, *after, limit)
	}
	if err != nil && len(evs) == 0 {
		return EventPage{}, err
	}
	p := EventPage{Events: make([]Event, 0, len(evs)), Oldest: oldest, Newest: newest}
	for _, e := range evs {
		switch {
		case isp == "":
			p.Events = append(p.Events, EventView(e))
		case e.ISP == isp: // never another ISP's
			p.Events = append(p.Events, ISPEventView(e))
		}
	}
	return p, nil
}

// WaitEvents returns when an event of isp ("" = any) newer than after
// (in isp's own sequence, for an ISP) may exist, or ctx is done (the
// store wakes it on every commit that appends events, whoever wrote them:
// the DHCP proxy included).
func (t *Tenants) WaitEvents(ctx context.Context, isp string, after uint64) error {
	if isp != "" {
		return t.store.WaitEventsOf(ctx, isp, after)
	}
	return t.store.WaitEvents(ctx, after)
}

// Bindings lists DHCP bindings of isp ("" = all).
func (t *Tenants) Bindings(ctx context.Context, isp string, o ListOptions) (Page[Binding], error) {
	if isp != "" {
		if err := t.checkISP(isp); err != nil {
			return Page[Binding]{}, err
		}
	}
	bs, next, err := t.store.BindingsPage(isp, o.After, pageLimit(o.Limit))
	if err != nil {
		return Page[Binding]{}, listErr(err)
	}
	p := Page[Binding]{Items: make([]Binding, 0, len(bs)), Next: next}
	for _, b := range bs {
		if isp != "" && b.ISP != isp {
			continue
		}
		p.Items = append(p.Items, t.bindingView(b))
	}
	return p, nil
}

// bindingView is the binding as the API shows it (Bindings, BindingsOf),
// with the client lease end the proxy knows of it.
func (t *Tenants) bindingView(b subscribers.Binding) Binding {
	v := Binding{MAC: macString(b.MAC), ISP: b.ISP, CustomerID: b.Customer, Access: b.Access,
		VLAN: b.VLAN, IP: b.IP, Expires: b.Expires}
	if !b.Since.IsZero() {
		v.Since = b.Since.UTC()
	}
	if c, ok := t.proxy.(ClientLeases); ok {
		if end, ok := c.ClientLeaseEnd(b.Access, b.VLAN, binding.MAC48(b.MAC), b.ISP, b.IP); ok {
			v.ClientLeaseEnd = end.UTC()
		}
	}
	return v
}

// BindingsOf returns mac's DHCP bindings (at most one per access circuit),
// isp's only unless isp is "": one lookup per configured circuit, no scan
// of the others' (a binding of a circuit no longer configured is ended at
// start).
func (t *Tenants) BindingsOf(ctx context.Context, isp, mac string) ([]Binding, error) {
	if isp != "" {
		if err := t.checkISP(isp); err != nil {
			return nil, err
		}
	}
	m, err := parseAnyMAC(mac)
	if err != nil {
		return nil, err
	}
	out := []Binding{}
	for _, c := range t.cfg.Circuits {
		b, err := t.store.Binding(c.Access, c.VLAN, m)
		switch {
		case errors.Is(err, subscribers.ErrNotFound):
			continue
		case err != nil:
			return nil, err
		case isp != "" && b.ISP != isp:
			continue
		}
		out = append(out, t.bindingView(b))
	}
	return out, nil
}
