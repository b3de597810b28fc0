package dhcpproxy

import (
	"cmp"
	"maps"
)

// Go maps never give back the room they grew into: a map that held a
// million entries once keeps a million entries' worth of memory. The
// proxy's maps that a burst fills (an outage's exchanges, its RELEASE
// backlog, a mass end) are remade at the size of what they hold once it
// has drained, as mapMem decides, where they drain, under their owner's
// lock.

// mapMem is what the remaking of a map to give back its memory knows of
// it: the transactions' table (shrink) and those parked (unparkKey),
// expire's OFFERs remembered and rapid-commit wins, the intent queue's
// maps (shrinkLocked), the per-MAC rate buckets and DECLINE counts
// (limiter.forget) and the generations (pruneGens), both at a sixteenth
// (their drain is paced: a smaller copy under their lock), the revoked
// addresses (revokedAddrs.prune) and the identifiers waiting for a
// holder's RELEASE (reclaimWaits.prune), and the moves' deadlines
// (cutsDue: a bulk move fills them). Not the other per-subscriber maps,
// which an outage's burst does not fill: the onboarding's (bounded by
// Config.MaxOnboarding), the claims (MACs heard on another circuit), the
// probes (probeSetBurst a circuit), the refusal events' folding (their
// budgets); nor those of one entry per circuit or ISP.
type mapMem struct {
	// peak is the most entries the map held since it was made (or last
	// remade), as its owner noted them: where an entry is added (note,
	// dropSub, wait, put, setCut) or, for a map only its tick deletes from, at
	// the tick before deleting (expire, forget, pruneGens).
	peak int
	// floor is the least peak worth remaking the map for (0:
	// shrinkFloor; tests lower it, or raise it to turn the remaking off).
	floor int
	// div: the map is remade once it holds a div-th of its peak (0: 4).
	div int
	// remade counts the times the map was remade (tests).
	remade int
}

// shrinkFloor is the least peak of a map after which it is remade: below,
// the most it keeps is a few hundred KiB.
const shrinkFloor = 4096

// note records that the map holds n entries.
func (m *mapMem) note(n int) { m.peak = max(m.peak, n) }

// due reports whether the map, holding n entries now, is to be remade for
// them: once n has fallen to a quarter (a div-th) of a peak of at least
// the floor. If so, its peak is n from now on.
func (m *mapMem) due(n int) bool {
	if m.peak < cmp.Or(m.floor, shrinkFloor) || n > m.peak/cmp.Or(m.div, 4) {
		return false
	}
	m.peak = n
	m.remade++
	return true
}

// remade returns a copy of m made for its entries.
func remade[M ~map[K]V, K comparable, V any](m M) M {
	c := make(M, len(m))
	maps.Copy(c, m)
	return c
}
