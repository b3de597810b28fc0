package dhcpproxy

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// Restoring the stored bindings at the start: LoadBindings reads them in
// a goroutine of its own, RestoreLoaded installs the ones still valid and
// ends the others (lapsed while ispmux was stopped, of an access or ISP no
// longer configured, stale), in chunks and side by side.

// Loaded is the stored bindings read by LoadBindings, waiting for
// Restore to install them.
type Loaded struct {
	done chan struct{}
	now  time.Time
	// ks, ls: the bindings to install, in chunks of loadChunk (appending
	// to one slice of a million copied it over and over: ~1 s of CPU).
	ks   [][]subKey
	ls   [][]lease
	n    int
	ends []toEnd
	// lapsed: the bindings of configured circuits to end at the start
	// without telling their ISP (lapsed, or of an ISP no longer
	// configured), compact and in chunks of loadChunk: a restart after a
	// long outage may find a million, and cloning each whole binding
	// before the box forwarded took 5 s there (15 s of CPU, bench scale).
	lapsed [][]lapsedEnd
	err    error
}

// endLogged is how many of a restart's expired bindings the log names one
// by one; the rest are counted in one line (their events name each).
const endLogged = 100

// loadChunk is how many bindings a chunk of Loaded holds.
const loadChunk = 1 << 16

// startEndWhy is why a start ends a stored binding it does not install:
// its lease ran out while ispmux was stopped (lapsed), or its access or
// ISP is no longer configured.
func startEndWhy(lapsed bool) string {
	if lapsed {
		return "lease expired while ispmux was stopped"
	}
	return "its access or ISP is no longer configured"
}

// lapsedEnd is a stored binding of a configured circuit a start ends
// without telling its ISP (endLapsed): what the end and its event need.
type lapsedEnd struct {
	c        *Circuit
	isp      string // the ISP's name (a configured ISP's own string)
	customer string
	expires  int64 // as stored, Unix nanoseconds: the end is conditional on it
	ip       netip.Addr
	mac      [6]byte
	lapsed   bool // its lease ran out; else its ISP is no longer configured
}

// toEnd is a stored binding Restore ends instead of installing it.
type toEnd struct {
	sk     subKey
	b      subscribers.Binding
	why    string
	revoke bool // stale or not installable (else expired or unconfigured)
	// noCircuit: its access circuit is no longer configured. sk has no
	// circuit then: the binding is ended by its stored key, and nothing
	// in the lease or forwarding tables (which hold only configured
	// circuits' bindings) is touched.
	noCircuit bool
	// lapsed: its lease ran out while ispmux was stopped (nothing left at
	// the ISP to release).
	lapsed bool
}

// LoadBindings starts reading the store's bindings as of now, in a
// goroutine of its own: decoding a million bindings overlaps the rest of
// the start-up (the registry's load, which the restore's checks need).
// Nothing is installed until RestoreLoaded.
func (p *Proxy) LoadBindings(now time.Time) *Loaded {
	ld := &Loaded{done: make(chan struct{}), now: now}
	// A binding last written by an older ispmux has the ISP's first
	// server in Relay, not the one that granted it: unknown (a renewal
	// under server-id override then goes to every server).
	var relaySince int64
	if rs, ok := p.store.(interface{ RelayIsSourceSince() time.Time }); ok {
		relaySince = rs.RelayIsSourceSince().UnixNano()
	}
	go func() {
		defer close(ld.done)
		// Borrowed: nothing of b is kept but the compact lease, or a
		// clone of the few bindings to end.
		ld.err = p.store.ForEachBindingBorrowed(func(b *subscribers.Binding) error {
			c := p.circuitByName(b.Access, b.VLAN)
			isp := p.isps[b.ISP]
			sk := subKey{circuitKey{}, binding.MAC48(b.MAC)}
			if c != nil {
				sk.circuit = circuitKey{c.Port, c.VLAN}
			}
			if c == nil || isp == nil || !b.Expires.After(now) {
				lapsed := !b.Expires.After(now)
				if c == nil {
					ld.ends = append(ld.ends, toEnd{sk: sk, b: b.Clone(), why: startEndWhy(lapsed), noCircuit: true, lapsed: lapsed})
					return nil
				}
				le := lapsedEnd{c: c, customer: strings.Clone(b.Customer), expires: b.Expires.UnixNano(),
					mac: b.MAC, ip: b.IP, lapsed: lapsed}
				if isp != nil {
					le.isp = isp.Name
				} else {
					le.isp = strings.Clone(b.ISP)
				}
				if len(ld.lapsed) == 0 || len(ld.lapsed[len(ld.lapsed)-1]) == cap(ld.lapsed[len(ld.lapsed)-1]) {
					// The first chunk small (most stores have few), the
					// others loadChunk: none grows by copying.
					size := loadChunk
					if len(ld.lapsed) == 0 {
						size = 1024
					}
					ld.lapsed = append(ld.lapsed, make([]lapsedEnd, 0, size))
				}
				last := len(ld.lapsed) - 1
				ld.lapsed[last] = append(ld.lapsed[last], le)
				return nil
			}
			if ld.n%loadChunk == 0 {
				// A new chunk (the first small: most stores are; it
				// grows by append up to loadChunk).
				size := loadChunk
				if ld.n == 0 {
					size = 1024
				}
				ld.ks, ld.ls = append(ld.ks, make([]subKey, 0, size)), append(ld.ls, make([]lease, 0, size))
			}
			last := len(ld.ks) - 1
			l := leaseOf(b, isp)
			if l.updated < relaySince {
				l.relay = [4]byte{}
			}
			ld.ks[last], ld.ls[last] = append(ld.ks[last], sk), append(ld.ls[last], l)
			ld.n++
			return nil
		})
	}()
	return ld
}

// Restore is LoadBindings and RestoreLoaded in one.
func (p *Proxy) Restore(now time.Time) (int, error) { return p.RestoreLoaded(p.LoadBindings(now)) }

// RestoreLoaded installs every unexpired binding ld read in the tables,
// ends the expired and stale ones (with their events, and a RELEASE to the
// ISP for a revoked one) but the old binding of a device moved to another
// ISP, kept until ClientLeaseMax from now as a move's is (moves.go), and
// queues the intents a previous run left pending; then the onboarding
// leases (restoreOnboarding). It returns the number of ISP bindings
// restored. Call it with the registry loaded and the static bindings
// installed, before the datapath starts forwarding.
func (p *Proxy) RestoreLoaded(ld *Loaded) (int, error) {
	now := ld.now
	if err := p.loadIntents(); err != nil {
		return 0, fmt.Errorf("dhcp restore: %w", err)
	}
	<-ld.done
	if ld.err != nil {
		return 0, fmt.Errorf("dhcp restore: %w", ld.err)
	}
	// The registration may have changed while ispmux was down (the
	// operator blocked or removed the subscriber, or it chose another
	// ISP): such a binding must not forward until its lease runs out.
	// The lease table is filled with every binding read while this
	// goroutine checks each against the registry and installs it in the
	// forwarding tables (two independent passes over a million entries
	// on two CPUs); the few found stale come out of the table after.
	if r, ok := p.tables.(reserver); ok {
		r.Reserve(ld.n)
	}
	tableDone := make(chan struct{})
	go func() {
		defer close(tableDone)
		p.leases.reserve(ld.n)
		p.leases.load(ld.ks, ld.ls)
	}()
	stale := len(ld.ends)
	var moved []subKey
	for c, ks := range ld.ks {
		ls := ld.ls[c]
		for i, k := range ks {
			h := held{k, ls[i]}
			why := p.staleHeld(h)
			// A moved device's old binding forwards until its
			// deadline, as before the restart (pinned to its access
			// or not: moves.go).
			move := why != "" && p.onlyMoved(h)
			if why == "" || move {
				if err := p.tables.Bind(binding.Binding{Port: k.circuit.port, VLAN: k.circuit.vlan, MAC: k.mac, ISP: h.l.isp, IP: h.l.addr()}); err != nil {
					// Its address is now a static subscriber's (the
					// configuration changed while ispmux was down).
					why = "its address is taken: " + err.Error()
				} else if move {
					why = ""
					moved = append(moved, k)
				}
			}
			if why != "" {
				// The whole binding (Option 82, client identifier) for
				// the RELEASE on the subscriber's behalf.
				ld.ends = append(ld.ends, toEnd{sk: k, b: p.full(h), why: why, revoke: true})
			}
		}
	}
	<-tableDone
	for _, e := range ld.ends[stale:] {
		p.leases.remove(e.sk)
	}
	for _, k := range moved {
		p.setMoveCut(k, now)
	}
	n := ld.n - (len(ld.ends) - stale)
	ld.ks, ld.ls = nil, nil
	// Batched (a restart after a long outage may end most of a million
	// bindings): the lapsed ones 4096 to a store transaction, in a
	// goroutine of their own while the box forwards (endLapsed); those
	// that tell the ISP, startEndBatch to one, with their intents, before
	// it forwards (endEach).
	ends, lapsed := ld.ends, ld.lapsed
	ld.ends, ld.lapsed = nil, nil
	p.endLapsed(lapsed)
	if err := p.endEach(ends); err != nil {
		return n, err
	}
	p.supersedeLegacy()
	// After the ISP bindings: an onboarding lease of a MAC bound to an
	// ISP since is ended (handover), not installed over its binding.
	ob, err := p.restoreOnboarding(now)
	if err != nil {
		return n, fmt.Errorf("dhcp restore: onboarding: %w", err)
	}
	if ob > 0 {
		p.log.Info("dhcp: onboarding leases restored", "leases", ob)
	}
	return n, nil
}

// unconfiguredEnd is the end of a stored binding of an access circuit that
// is no longer configured, by its stored key (access, VLAN, MAC): its
// intent (nil: none) and its event. The lease and forwarding tables never
// held it: the same MAC's bindings on configured circuits are not touched.
// While its ISP is configured, the ISP gets a RELEASE on the subscriber's
// behalf (an intent, with the binding's stored Option 82), as for a
// revocation, and the event is revoked: otherwise the ISP held the
// address, and counted its customer online, until the lease ran out. An
// ISP no longer configured cannot be told, and a lease that ran out while
// ispmux was stopped (lapsed) has nothing left to free: expired.
func (p *Proxy) unconfiguredEnd(b subscribers.Binding, why string, lapsed bool) (*subscribers.Intent, subscribers.Event) {
	kind := subscribers.EventExpired
	var in *subscribers.Intent
	if isp := p.isps[b.ISP]; isp != nil && !lapsed {
		if in = p.releaseIntent(b, isp, nil, "ended by the access operator: "+why); in != nil {
			kind = subscribers.EventRevoked
		}
	}
	return in, bindingSubject(b).event(kind, b.IP, why)
}

// revocationEnd is revokeLocked's intent (nil: its ISP is no longer
// configured, or the message could not be built) and event for b.
func (p *Proxy) revocationEnd(b subscribers.Binding, why string) (*subscribers.Intent, subscribers.Event) {
	e := bindingSubject(b).event(subscribers.EventRevoked, b.IP, why)
	var in *subscribers.Intent
	if isp := p.isps[b.ISP]; isp != nil {
		in = p.releaseIntent(b, isp, p.circuitByName(b.Access, b.VLAN), "revoked by the access operator: "+why)
	}
	return in, e
}

// endLapsed ends the bindings of chunks, of configured circuits, which
// lapsed while ispmux was stopped (or whose ISP is no longer configured)
// and were never installed, with their expired events, in batches
// (Store.EndBindings), in a goroutine of its own: the box forwards and
// answers DHCP meanwhile. Ended before the start instead, they held a
// restart after a long outage offline: one durable transaction each cost
// ~95 µs a binding (a trial: 9.5 s at 100k), batched ~6 s at a million.
// Each end is conditional on the binding stored being the one found
// lapsed: a subscriber that binds again meanwhile keeps its new binding
// (its lapsed lease still has its expired event). Nothing else refers to
// these bindings: not in the lease or forwarding tables, and no
// transaction of before the start exists. Close stops it between batches
// (the rest are ended at the next start) and waits for it.
func (p *Proxy) endLapsed(chunks [][]lapsedEnd) {
	total := 0
	for _, c := range chunks {
		total += len(c)
	}
	if total == 0 {
		return
	}
	p.lapsing.Go(func() {
		const batch = 4096
		plain := make([]subscribers.BindingEnd, 0, min(batch, total))
		ended, left := 0, total
		start := time.Now()
		flush := func() bool {
			evs, err := p.store.EndBindings(plain)
			for _, ev := range evs {
				p.count("expired")
				if ended < endLogged {
					p.logEvent(ev)
				}
				ended++
			}
			left -= len(evs)
			plain = plain[:0]
			if err != nil {
				p.count("store_error")
				p.log.Error("dhcp: ending the bindings that lapsed while ispmux was stopped failed (the next start ends the rest)", "not_ended", left, "err", err)
				return false
			}
			return true
		}
		for ci := range chunks {
			for i := range chunks[ci] {
				if p.closing.Load() {
					break
				}
				e := &chunks[ci][i]
				subj := subject{mac: binding.MAC48(e.mac), isp: e.isp, customer: e.customer, access: e.c.Name}
				plain = append(plain, subscribers.BindingEnd{Access: e.c.Name, VLAN: e.c.VLAN, MAC: e.mac, Expires: time.Unix(0, e.expires),
					Event: subj.event(subscribers.EventExpired, e.ip, startEndWhy(e.lapsed))})
				if len(plain) == batch && !flush() {
					return
				}
			}
			chunks[ci] = nil // its bindings no longer kept
		}
		if len(plain) > 0 && !p.closing.Load() && !flush() {
			return
		}
		if ended > endLogged || left > 0 {
			p.log.Info("dhcp: bindings that lapsed while ispmux was stopped, or of an ISP no longer configured, ended (each has its expired event)",
				"ended", ended, "left_to_next_start", left, "took", time.Since(start).Round(time.Millisecond))
		}
	})
}

// startEndBatch is how many of a start's ends (endEach) one store
// transaction holds, with their intents: ~1.5 MB of RELEASEs at most.
const startEndBatch = 1024

// endEach ends the bindings of ends (a start's that tell the ISP, or have
// no circuit: the others are endLapsed's), startEndBatch to a durable
// transaction (Store.EndBindings), each with its intent and event, before
// the box forwards. One transaction each (side by side, 64 at a
// time, the group commit putting ~35 in an fsync) held the start of a box
// whose circuit of 100k bindings was removed ~39 s (a trial: 2736
// transactions); batched, 98 transactions and ~4 s. Each batch's state
// in memory (the intents queued and sent, the revoked addresses noted)
// changes after its commit, as for one end (endBindingTx, revokeLocked):
// a crash between two batches leaves the first's bindings ended with
// their intents stored, sent at the next start, and the second's stored,
// ended then.
func (p *Proxy) endEach(ends []toEnd) error {
	for len(ends) > 0 {
		n := min(startEndBatch, len(ends))
		if err := p.endStartBatch(ends[:n]); err != nil {
			return err
		}
		ends = ends[n:]
	}
	return nil
}

// endStartBatch is endEach of one batch.
func (p *Proxy) endStartBatch(ends []toEnd) error {
	bes := make([]subscribers.BindingEnd, len(ends))
	ins := make([]subscribers.Intent, len(ends))
	marks := make([]endMark, len(ends))
	for i := range ends {
		e := &ends[i]
		var in *subscribers.Intent
		var ev subscribers.Event
		if e.noCircuit {
			in, ev = p.unconfiguredEnd(e.b, e.why, e.lapsed)
		} else {
			// LoadBindings and RestoreLoaded make only these two kinds.
			// No transaction is in flight before the box forwards, nor
			// a lease installed (RestoreLoaded removed them): the steps
			// before the commit (endBeforeCommit), all the same.
			in, ev = p.revocationEnd(e.b, e.why)
			mu := p.lockSub(e.sk.mac)
			marks[i] = p.endBeforeCommit(e.sk, in != nil)
			mu.Unlock()
		}
		if in != nil {
			ins[i] = *in
			in = &ins[i]
		}
		bes[i] = subscribers.BindingEnd{Access: e.b.Access, VLAN: e.b.VLAN, MAC: e.b.MAC, Event: ev, Intent: in}
	}
	evs, err := p.store.EndBindings(bes)
	// EndBindings' unconditional ends store every event: evs[i] is
	// ends[i]'s, for those committed (all, or the batches before err).
	for i, ev := range evs {
		e, in := &ends[i], bes[i].Intent
		if e.noCircuit {
			// Never leased nor forwarded (unconfiguredEnd).
			p.endedAfterCommit(e.sk, in, ev, false)
			if in == nil {
				p.count("expired")
			} else {
				p.count("binding_revoked")
			}
			continue
		}
		mu := p.lockSub(e.sk.mac)
		p.endCommitted(e.sk, marks[i])
		p.revokedAfterCommit(e.sk, e.b.IP, in, ev, marks[i].had)
		mu.Unlock()
	}
	for i := len(evs); i < len(ends); i++ {
		if e := &ends[i]; !e.noCircuit {
			mu := p.lockSub(e.sk.mac)
			p.endRefused(e.sk, marks[i])
			mu.Unlock()
		}
	}
	if err != nil {
		e := &ends[len(evs)]
		p.count("store_error")
		return fmt.Errorf("dhcp restore: binding of %s on %s not ended (nor the %d after it): %w", binding.MACString(binding.MAC48(e.b.MAC)), e.b.Access, len(ends)-len(evs)-1, err)
	}
	return nil
}
