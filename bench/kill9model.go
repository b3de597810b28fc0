package bench

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/ispmux/ispmux/subscribers"
)

// bench kill9's model: what the clients and the API were told about each
// MAC the trial touched (the seeded subscribers it did not touch are
// expected as seeded), and the check of a restarted ispmux's bindings
// against it.

// k9State is what a MAC's binding must be after a crash.
type k9State uint8

const (
	k9Bound    k9State = iota // an ACK was received: bound, with its address
	k9Gone                    // a revocation the API acknowledged: no binding
	k9Released                // a RELEASE was sent at .at: no binding once ispmux had it (see check)
	k9Pending                 // an exchange or an API call in flight
	k9Unsure                  // its outcome is unknown: whatever the store has is taken
)

var k9StateNames = [...]string{"bound", "gone", "released", "pending", "unsure"}

func (s k9State) String() string { return k9StateNames[s] }

// k9Entry is one touched MAC.
type k9Entry struct {
	state k9State
	ip    netip.Addr
	at    time.Time
	why   string
	final bool // revoked: no more operations on it
}

// k9Model is the trial's expectations.
type k9Model struct {
	mu     sync.Mutex
	n      int // seeded subscribers (scaleMAC(i), scaleIP(i))
	seeded map[subscribers.MAC]int
	e      map[subscribers.MAC]*k9Entry
	counts map[string]int
}

func newK9Model(n int) *k9Model {
	return &k9Model{n: n, seeded: make(map[subscribers.MAC]int, n), e: map[subscribers.MAC]*k9Entry{}, counts: map[string]int{}}
}

// entry returns mac's entry, made from its seeded state when untouched.
func (m *k9Model) entry(mac subscribers.MAC) *k9Entry {
	e := m.e[mac]
	if e == nil {
		e = &k9Entry{state: k9Gone, why: "never bound"}
		if i, ok := m.seeded[mac]; ok {
			e = &k9Entry{state: k9Bound, ip: scaleIP(i), why: "seeded"}
		}
		m.e[mac] = e
	}
	return e
}

// note records what mac was told (state k9Bound with ip; k9Released
// with the address released).
func (m *k9Model) note(mac subscribers.MAC, s k9State, ip netip.Addr, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entry(mac)
	e.state, e.ip, e.at, e.why = s, ip, time.Now(), why
	m.counts[why]++
}

func (m *k9Model) count(what string) {
	m.mu.Lock()
	m.counts[what]++
	m.mu.Unlock()
}

// bound returns mac's address if it is bound and may be operated on.
func (m *k9Model) bound(mac subscribers.MAC) (netip.Addr, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entry(mac)
	return e.ip, e.state == k9Bound && !e.final
}

// idle reports whether mac holds nothing and may start a DORA.
func (m *k9Model) idle(mac subscribers.MAC) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entry(mac)
	return (e.state == k9Gone || e.state == k9Released) && !e.final
}

// revoking marks mac's revocation in flight (false: not bound or busy).
func (m *k9Model) revoking(mac subscribers.MAC) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entry(mac)
	if e.state != k9Bound || e.final {
		return false
	}
	e.state, e.at, e.why, e.final = k9Pending, time.Now(), "revoke", true
	return true
}

// revoked records the API's answer to mac's revocation.
func (m *k9Model) revoked(mac subscribers.MAC, ok bool, why string) {
	s := k9Gone
	if !ok {
		s = k9Unsure
	}
	m.note(mac, s, netip.Addr{}, why)
}

// K9Check is one check of a restarted ispmux's bindings.
type K9Check struct {
	Bindings         int `json:"bindings"`           // bindings listed
	Expected         int `json:"expected"`           // bindings the model requires (bound)
	Lost             int `json:"lost"`               // acknowledged bindings missing
	WrongIP          int `json:"wrong_ip"`           // acknowledged bindings with another address
	Resurrected      int `json:"resurrected"`        // revoked or released (≥ grace before the kill, or logged or stored as released) bindings present
	Unexpected       int `json:"unexpected"`         // bindings of MACs the trial never bound
	Adopted          int `json:"adopted"`            // unknown outcomes taken as found
	ReleasedNew      int `json:"released_new"`       // releases within the grace of the kill, taken as found
	ReleasedNewFound int `json:"released_new_found"` // of those, still bound after the restart
	// ReleasedNewLogged is how many of ReleasedNewFound the killed
	// ispmux had logged as released (logged once the end is stored):
	// resurrected, counted in Resurrected too (kill9.go).
	ReleasedNewLogged int `json:"released_new_logged"`
	// ReleasedNewStored is how many of ReleasedNewFound the restarted
	// ispmux's store holds the end of: a "released" event of the MAC
	// and address, stamped after the RELEASE was sent, which is
	// committed with the end in one transaction (no log limit holds it
	// back): resurrected, counted in Resurrected too (kill9.go), once
	// with ReleasedNewLogged.
	ReleasedNewStored int `json:"released_new_stored"`
	// ProbesFound and ProbesMissed check the check of the store:
	// releases sent at least the grace before the kill (within
	// probeWindow of it, at most maxProbes) and not found bound after
	// the restart, whose end is committed, looked up the same way. A
	// probe missed means that way cannot see an end: the run fails
	// (kill9.go).
	ProbesFound  int         `json:"probes_found"`
	ProbesMissed int         `json:"probes_missed"`
	FoundInGrace []string    `json:"found_in_grace,omitempty"`
	Examples     []string    `json:"examples,omitempty"`
	ListS        float64     `json:"list_s"`
	foundInGrace []k9Release // the releases within the grace found bound
	probes       []k9Release // ended releases for the store's check (ProbesFound)
}

// maxProbes and probeWindow bound the releases a check gives the store's
// check as probes: the few sent shortly (the grace to probeWindow) before
// the kill, whose events no retention has trimmed.
const (
	maxProbes   = 3
	probeWindow = time.Minute
)

// k9Release is a RELEASE of ip by mac sent at at.
type k9Release struct {
	mac subscribers.MAC
	ip  netip.Addr
	at  time.Time
}

// Bad is the number of violations.
func (c K9Check) Bad() int { return c.Lost + c.WrongIP + c.Resurrected + c.Unexpected }

// check compares got (MAC → address, every binding listed) with the
// model. A release sent less than grace before kill (zero: no kill) may
// not have reached ispmux: its outcome is taken as found, as unknown
// ones are. Afterwards the model holds what was found for those.
func (m *k9Model) check(got map[subscribers.MAC]netip.Addr, kill time.Time, grace time.Duration) K9Check {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := K9Check{Bindings: len(got)}
	bad := func(format string, a ...any) {
		if len(c.Examples) < 20 {
			c.Examples = append(c.Examples, fmt.Sprintf(format, a...))
		}
	}
	for mac, i := range m.seeded {
		if _, touched := m.e[mac]; touched {
			continue
		}
		c.Expected++
		ip, ok := got[mac]
		switch {
		case !ok:
			c.Lost++
			bad("%s (seeded, untouched): lost", macText(mac))
		case ip != scaleIP(i):
			c.WrongIP++
			bad("%s (seeded, untouched): %s, want %s", macText(mac), ip, scaleIP(i))
		}
	}
	for mac, e := range m.e {
		ip, ok := got[mac]
		switch e.state {
		case k9Bound:
			c.Expected++
			switch {
			case !ok:
				c.Lost++
				bad("%s: lost (%s %s at %s)", macText(mac), e.why, e.ip, e.at.Format("15:04:05.000"))
			case ip != e.ip:
				c.WrongIP++
				bad("%s: %s, want %s (%s at %s)", macText(mac), ip, e.ip, e.why, e.at.Format("15:04:05.000"))
			}
		case k9Gone:
			if ok {
				if e.why == "never bound" {
					c.Unexpected++
				} else {
					c.Resurrected++
				}
				bad("%s: bound to %s, want none (%s at %s)", macText(mac), ip, e.why, e.at.Format("15:04:05.000"))
			}
		case k9Released:
			if !kill.IsZero() && kill.Sub(e.at) < grace {
				c.ReleasedNew++
				// The released address, for the log check (kill9.go),
				// before the entry forgets it.
				r := k9Release{mac, e.ip, e.at}
				e.state, e.ip, e.why = k9Gone, netip.Addr{}, "release before the kill, not found"
				if ok {
					c.ReleasedNewFound++
					c.foundInGrace = append(c.foundInGrace, r)
					c.FoundInGrace = append(c.FoundInGrace, fmt.Sprintf("%s: released %s at %s, %d ms before the kill; bound to %s", macText(mac), r.ip, r.at.Format("15:04:05.000"), kill.Sub(r.at).Milliseconds(), ip))
					e.state, e.ip, e.why = k9Bound, ip, "release before the kill, found"
				}
				continue
			}
			if ok {
				c.Resurrected++
				bad("%s: bound to %s, released at %s", macText(mac), ip, e.at.Format("15:04:05.000"))
			} else if !kill.IsZero() && kill.Sub(e.at) < probeWindow && len(c.probes) < maxProbes {
				c.probes = append(c.probes, k9Release{mac, e.ip, e.at})
			}
			e.state, e.why = k9Gone, "released"
		case k9Pending, k9Unsure:
			c.Adopted++
			e.state, e.ip, e.why = k9Gone, netip.Addr{}, "unsure, not found"
			if ok {
				e.state, e.ip, e.why = k9Bound, ip, "unsure, found"
			}
		}
	}
	for mac, ip := range got {
		if _, ok := m.seeded[mac]; ok {
			continue
		}
		if _, ok := m.e[mac]; !ok {
			c.Unexpected++
			bad("%s: bound to %s, never bound by the trial", macText(mac), ip)
		}
	}
	sort.Strings(c.Examples)
	return c
}
