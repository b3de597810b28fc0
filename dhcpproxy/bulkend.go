package dhcpproxy

import (
	"net/netip"
	"slices"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// Ending many bindings at once (a start's revocations and removed
// circuits, endEach; a tenant change's or reload's revocations,
// revalidateMACs; moved devices' old bindings past their deadline,
// cutMoves): a batch of ends is one store transaction
// (Store.EndBindings), each end with its intent and event in it, and each
// batch's state in memory changes after its commit exactly as one end's
// does (endBindingTx, revokeLocked): the lease and the forwarding entry
// removed only once the end is durable, then the intent queued and sent.
// One transaction each, side by side through the group commit (~35 an
// fsync), revoked ~6k bindings a second (a trial: 20k in 3.5 s, 620
// transactions): minutes at a million.

// revokeBatch is how many revocations revalidateMACs (or cutMoves)
// commits in one store transaction. Its subscribers' stripes of subMu are
// held across the commit: the batch is kept small so that one commit, and
// the DHCP commits it holds up, stays short, and its revocations are
// taken stripe by stripe (byStripe), so that a batch of a large
// revocation holds a few stripes, not all 64, and a DHCP commit of a
// subscriber of another stripe does not wait for it.
const revokeBatch = 512

// byStripe orders hs by their subscribers' stripes of subMu (in index
// order), in place and in linear time (one pass to count, one to swap each
// into its stripe's place), and returns it: batches cut from it in turn
// hold consecutive stripes, each batch a few of them when hs has more than
// revokeBatch. Before, a batch of 512 had subscribers of all 64 stripes
// and held them all for its commit (~10-70 ms), and every DHCP commit
// waited for it.
func (p *Proxy) byStripe(hs []held) []held {
	var next, end [len(p.subMu)]int
	for _, h := range hs {
		end[p.subStripe(h.k.mac)]++
	}
	for i, at := 0, 0; i < len(end); i++ {
		next[i] = at
		at += end[i]
		end[i] = at
	}
	for i := range next {
		for next[i] < end[i] {
			s := p.subStripe(hs[next[i]].k.mac)
			if s != i {
				hs[next[i]], hs[next[s]] = hs[next[s]], hs[next[i]]
			}
			next[s]++
		}
	}
	return hs
}

// revokedAfterCommit is a revocation's steps after the commit of sk's
// end (of address ip, with intent in, nil if none, and the event ev as
// stored), sk's stripe held: endedAfterCommit's, then noteRevoked's.
func (p *Proxy) revokedAfterCommit(sk subKey, ip netip.Addr, in *subscribers.Intent, ev subscribers.Event, had bool) {
	p.endedAfterCommit(sk, in, ev, had)
	p.noteRevoked(sk, ip)
}

// lockStripes locks the stripes of subMu of hs's subscribers, in index
// order (no other path holds two stripes at once), and returns their
// indexes for unlockStripes.
func (p *Proxy) lockStripes(hs []held) []int {
	var idx []int
	var seen [len(p.subMu)]bool
	for _, h := range hs {
		if i := p.subStripe(h.k.mac); !seen[i] {
			seen[i] = true
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	for _, i := range idx {
		p.subMu[i].Lock()
	}
	return idx
}

// unlockStripes unlocks the stripes lockStripes locked.
func (p *Proxy) unlockStripes(idx []int) {
	for _, i := range idx {
		p.subMu[i].Unlock()
	}
}

// revalidateBatch is revalidate of each of hs, the revocations among them
// committed in one store transaction (revokeEach). It returns how many of
// hs no longer match.
func (p *Proxy) revalidateBatch(hs []held, immediate bool, now time.Time) int {
	moved := 0
	revoked := p.revokeEach(hs, func(h held) string {
		why := p.staleHeld(h)
		if why == "" {
			p.leases.clearCut(h.k) // moved back before it asked
			return ""
		}
		if !immediate && p.onlyMoved(h) {
			p.setMoveCut(h.k, now)
			moved++
			return ""
		}
		return why
	})
	return moved + revoked
}

// revokeEach revokes each of hs for which why, called with its
// subscriber's stripe held, gives a reason (none: left alone), if the
// subscriber still holds exactly h's lease (as revokeHeld: one ended or
// renewed meanwhile is not revoked), all in one store transaction. The
// stripes of hs's subscribers are taken in index order (no other path
// holds two stripes at once) and held from the checks to the state
// changed after the commit, as revokeHeld holds one: no ACK of the
// subscriber commits between the check and the end. It returns how many
// it revoked (0 of them if the store refused: logged).
func (p *Proxy) revokeEach(hs []held, why func(h held) string) int {
	return p.endBatch(hs, "revocations", func(h held) (subscribers.BindingEnd, bool) {
		w := why(h)
		if w == "" {
			return subscribers.BindingEnd{}, false
		}
		if l, ok := p.leases.get(h.k); !ok || !l.same(&h.l) {
			return subscribers.BindingEnd{}, false
		}
		b := p.full(h)
		in, ev := p.revocationEnd(b, w)
		return subscribers.BindingEnd{Access: b.Access, VLAN: b.VLAN, MAC: b.MAC, Event: ev, Intent: in}, true
	}, func(sk subKey, e subscribers.BindingEnd, ev subscribers.Event, had bool) {
		p.revokedAfterCommit(sk, e.Event.IP, e.Intent, ev, had) // the address revoked: its event's
	})
}

// endBatch ends each of hs that plan gives an end, all in one store
// transaction (Store.EndBindings): revokeEach's and expireEach's. The
// stripes of hs's subscribers are taken in index order (no other path
// holds two stripes at once) and held from plan's checks through the
// commit to after's steps, for each end committed (with its event as
// stored, and whether ispmux held a lease: endBeforeCommit): no ACK of a
// subscriber commits between its check and its end. Each end the store
// refused is undone (endRefused): its binding stands, and the ACK of a
// renewal relayed before the batch binds it. It returns how many it
// ended (0 of them if the store refused: logged, what not committed).
func (p *Proxy) endBatch(hs []held, what string, plan func(h held) (subscribers.BindingEnd, bool),
	after func(sk subKey, e subscribers.BindingEnd, ev subscribers.Event, had bool)) int {
	idx := p.lockStripes(hs)
	defer p.unlockStripes(idx)
	type planned struct {
		sk   subKey
		mark endMark
	}
	done := make([]planned, 0, len(hs))
	ends := make([]subscribers.BindingEnd, 0, len(hs))
	for _, h := range hs {
		e, ok := plan(h)
		if !ok {
			continue
		}
		done = append(done, planned{h.k, p.endBeforeCommit(h.k, e.Intent != nil)})
		ends = append(ends, e)
	}
	if len(ends) == 0 {
		return 0
	}
	evs, err := p.store.EndBindings(ends)
	// Unconditional ends: evs[i] is ends[i]'s, for those committed.
	for i, ev := range evs {
		p.endCommitted(done[i].sk, done[i].mark)
		after(done[i].sk, ends[i], ev, done[i].mark.had)
	}
	// The rest were refused: their bindings stand, and an ACK of a
	// renewal relayed before the batch binds (endRefused).
	for _, d := range done[len(evs):] {
		p.endRefused(d.sk, d.mark)
	}
	if err != nil {
		p.storeError("dhcp: "+what+" not committed; their bindings unchanged", "bindings", len(ends)-len(evs),
			"first_mac", binding.MACString(done[len(evs)].sk.mac), "err", err)
	}
	return len(evs)
}
