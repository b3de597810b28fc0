package dhcpproxy

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/registry"
)

type pendKey struct {
	xid [4]byte
	mac uint64
	isp uint8
}

// txn is a transaction waiting for the ISP. Its mutable fields (serverID,
// deadline and what relay sets) are guarded by txns.mu.
type txn struct {
	sub      subKey
	circuit  *Circuit
	isp      *ISP
	reg      registry.Entry
	op82     []byte // exactly what we sent
	msgType  dhcpv4.MessageType
	deadline time.Time
	serverID netip.Addr // the ISP server's identifier, from its OFFER
	// offerFrom is the address the OFFER taken came from: the server
	// chosen (with server-id override every server names ours).
	offerFrom netip.Addr
	// offersOwed counts the copies of a DISCOVER relayed that no OFFER
	// delivered has answered yet (at most maxOffersOwed): the chosen
	// server's OFFER beyond them is a repeat, not delivered (offer).
	offersOwed uint8
	// requested is the address the client asked for (option 50, or
	// ciaddr when renewing), for the event of a NAK.
	requested netip.Addr
	// ciaddr is the client message's ciaddr (invalid: 0): where the
	// ISP's NAK goes (nakFromISP), and ispmux's NAK of an ACK it refuses
	// (nakAck).
	ciaddr netip.Addr
	// clientID is the client's identifier (option 61), if it sent one.
	clientID []byte
	// names are the names the client gave itself (renamed.go): an ACK
	// that does not echo them marks the lease leaseOwnNames.
	names nameKeys
	// flags are the client's BOOTP flags, which its replies carry.
	flags [2]byte
	// replyMax is the longest reply the client takes (maxReply) and prl
	// its parameter request list (requestList): what fitReply makes the
	// ISP's answer fit, and which options it keeps.
	replyMax int
	prl      []byte
	// informFrom is, for an INFORM, the client's address its ACK goes to
	// (informAddr; invalid: unknown).
	informFrom netip.Addr
	// gen is the subscriber's generation when the message was relayed
	// (leaseTable.gen).
	gen uint64
	// relayed is when msgType was first relayed (for the ISP's answer
	// time; a client's retransmissions do not move it).
	relayed time.Time
	// resent is when the client's latest retransmission of msgType was
	// relayed (zero: none): its answer is still awaited when the first
	// copy's time runs out (expire).
	resent time.Time
	// renew is set for a renewal relayed past the ISP's T1: answered
	// from the binding if the ISP stays silent (answerAfterSilence).
	renew *renewNote
	// refused is set when an ISP server answered msgType with a reply
	// ispmux refused (an OFFER without a lease time, its own event): its
	// end is no silence of the ISP.
	refused bool
	// putBack is set for a transaction put back after a park (an end of
	// its subscriber's binding the store refused, unpark): an answer that
	// came while it was parked found no transaction and went unheard, so
	// its timeout says so.
	putBack bool
	// retyped is set once the client moved on under the xid to another
	// message (a REQUEST after its DISCOVER, a DISCOVER after its
	// REQUEST: begin): the transaction is no longer its first message's
	// exchange. One begun while another of the subscriber's was parked is
	// then no retransmission of that one's message, and keeps nothing of
	// its exchange (carryParked).
	retyped bool
	// nakBy is the ISP server that answered the DISCOVER with a NAK (no
	// event of its own): if no OFFER follows, its end says so.
	nakBy netip.Addr
	// early is set for a renewal sent to every server before the ISP's
	// T2 (relayedTo): until T2 only the NAK of the server that granted
	// the lease ends the binding; otherNak is another's, not acted on
	// (its timeout names it).
	early    bool
	otherNak netip.Addr
	// sentTo is the ISP server msgType was last relayed to (invalid:
	// every server of the ISP); an ICMP unreachable from another is not
	// about it.
	sentTo netip.Addr
	// unreach is the ICMP unreachable heard about msgType as relayed
	// (zero: none): its timeout names the server and the cause.
	unreach unreachableNote
	// unlisted is the address, not one of the ISP's dhcp_servers, that
	// a reply to t came from (dropped: unknown_server); its timeout
	// names it.
	unlisted netip.Addr
	// malformed is the ISP server that answered t with a message ispmux
	// could not parse (dropped: server_malformed); its timeout names it.
	malformed netip.Addr
	// selecting is set for a SELECTING REQUEST (it names a server
	// identifier, ours, RFC 2131 §4.3.2): only the server selected may
	// ACK it (selected).
	selecting bool
	// rapid is set for a DISCOVER with option 80: the client asked for
	// rapid commit (RFC 4039), so a server may ACK it.
	rapid bool
	// intentsBefore is the highest ID of the subscriber's intents to the
	// ISP that were queued before msgType was relayed (flushIntentsOf;
	// 0: none): the ISP's answer proves them on the wire.
	intentsBefore uint64
	// released lists the servers sent the RELEASE of a rapid-commit
	// lease they ACKed while t was pending (releaseOnce); takeAck hands
	// it on to the rapid win.
	released []netip.Addr
	// overtook is the REQUEST whose transaction this DISCOVER took over
	// (nil: none; see overtaken).
	overtook *overtaken
	// pk is the key t is pending under (put), and qSeq and qAt its
	// valid entry in txns.dues and that entry's time (noDue: none;
	// txndue.go).
	pk   pendKey
	qSeq uint64
	qAt  int64
}

// overtaken is a REQUEST whose transaction a DISCOVER under its xid took
// over (the client went back to INIT) before the ISP answered it. Its
// answer, late, is no answer to the DISCOVER: an ACK is not bound (the
// client, SELECTING, takes none), a NAK is recorded but not sent; its
// silence past due is still a timeout. A NAK is the same to a REQUEST and
// to a DISCOVER (RFC 2131 table 3: nothing of the client's message but
// xid, flags, giaddr and chaddr echoed), so it is the REQUEST's only if it
// is the first answer of a server that answers that REQUEST (a server
// answers in the order it was sent them, the REQUEST first; for a
// SELECTING REQUEST, the server selected); another server's NAK, or a
// second one, answers the DISCOVER (overtakenNak).
type overtaken struct {
	due       time.Time  // its deadline (zero: answered or reported)
	requested netip.Addr // the address it asked for (txn.requested)
	answered  bool       // an ACK or NAK to it came
	selecting bool       // a SELECTING REQUEST (txn.selecting)
	// putBack: due runs from a put-back of the REQUEST, or of the
	// DISCOVER that took it over (resume), its timeout says so. Its own:
	// the DISCOVER's txn.putBack is cleared by begin when the REQUEST is
	// taken over, and by expire when a copy of the DISCOVER relayed after
	// the put-back waits on.
	putBack bool
	// serverID, offerFrom and sentTo are the REQUEST's (txn): the server
	// that answers it.
	serverID, offerFrom, sentTo netip.Addr
}

// rapidWin is a rapid-commit DISCOVER (RFC 4039) to an ISP with several
// servers, once the first server's ACK took its transaction: each other
// server may have committed a lease the client will never use, which
// ispmux releases when its ACK comes (Proxy.releaseRapid).
type rapidWin struct {
	sub      subKey
	from     netip.Addr // the server whose ACK was taken
	ip       netip.Addr // the address that ACK bound
	op82     []byte
	clientID []byte
	until    time.Time
	released []netip.Addr // servers already sent a RELEASE
}

// offer is the ISP server that last offered a subscriber an address.
type offer struct {
	isp  *ISP
	sid  netip.Addr
	from netip.Addr // the server's address (server-id override: all name ours)
	at   time.Time
	// q is the time (monoNanos) of the entry in txns.offerQ that
	// stands for this OFFER: the subscriber's first remembered since it
	// was last forgotten, queued again at its latest OFFER's time when it
	// comes up (remember, expireOffers).
	q int64
}

// offerMemory is how long an OFFER's server is remembered.
const offerMemory = 5 * time.Minute

// txns owns the transactions in flight with the ISPs (with the ICMP
// unreachables heard about them) and the OFFERs remembered for late
// REQUESTs. mu guards all of it, including the mutable fields of each
// txn; it is held only inside these methods.
type txns struct {
	mu      sync.Mutex
	pending map[pendKey]*txn
	// perISP counts pending's transactions by ISP index (begin's share
	// of the table per ISP); pending is changed through put and del only
	// (txnindex.go), which keep it and the index by subscriber (bySub,
	// bySubMore) true.
	perISP [256]int
	// bySub and bySubMore index pending by subscriber (txn.sub): the key
	// of one of its transactions, and the keys of the others. dropSub
	// takes a subscriber's transactions through it, where it scanned the
	// table: a bulk revocation of N subscribers with P transactions
	// pending cost N×P under mu. A subscriber has one transaction
	// pending, rarely more (another xid, another ISP): the common case is
	// one entry of bySub, no allocation of its own (about 100 bytes a
	// transaction with 1M pending, beside its txn's 624 and pending's
	// entry).
	bySub     map[subKey]pendKey
	bySubMore map[subKey][]pendKey
	mem       mapMem // their peak, to give back a burst's memory (txnindex.go)
	offered   map[subKey]offer
	offerMem  mapMem // offered's peak, for expire's remaking of it
	// offerQ holds an entry for each of offered's, in the order they
	// were queued (remember), from offerHead on: expire forgets the
	// OFFERs whose time is up from its front, where it walked all of
	// offered at every tick (expireOffers).
	offerQ    []offerAt
	offerHead int
	rapid     map[pendKey]*rapidWin
	rapidMem  mapMem // rapid's peak, for expire's remaking of it
	// rapidAt holds rapid's wins by their time, earliest first
	// (winRapid): expire forgets them from it, where it walked all of
	// rapid at every tick.
	rapidAt []rapidAt
	// dues holds pending's deadlines, earliest first, and dueSeq numbers
	// their entries (txndue.go): expire takes the transactions due from
	// it, where it walked all of pending at every tick.
	dues   []dueEntry
	dueSeq uint64
	// parked holds the transactions dropSub took from pending, of the
	// subscribers whose binding's end is being committed: put back if
	// the store refuses the end and the table has room (unpark),
	// forgotten once it is committed. An answer to one taken meanwhile
	// (take, takeAck, abandon) forgets it here too: it is not put back
	// (take forgets the parked exchange of its answer's subscriber only;
	// takeAck and abandon the very transaction answered). Its entries
	// are deleted through unparkKey, which gives back a burst's memory
	// (parkMem, txnindex.go).
	parked  map[pendKey]*txn
	parkMem mapMem
}

func (x *txns) init() {
	x.pending = map[pendKey]*txn{}
	x.bySub = map[subKey]pendKey{}
	x.bySubMore = map[subKey][]pendKey{}
	x.offered = map[subKey]offer{}
	x.rapid = map[pendKey]*rapidWin{}
	x.parked = map[pendKey]*txn{}
}

// get returns the transaction under pk, or nil.
func (x *txns) get(pk pendKey) *txn {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.pending[pk]
}

// take removes the transactions of t's subscriber (the owner of t, an
// exchange its answer ends) under pk, pending or parked, and returns the
// pending one, or nil. Those of another subscriber under pk (the same MAC
// and xid on another circuit: a device moved) are another exchange and
// stay: before, a NAK to one forgot the other's parked exchange, which its
// end, refused, then did not put back.
func (x *txns) take(pk pendKey, t *txn) *txn {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := x.pending[pk]
	if n != nil && n.sub == t.sub {
		x.del(pk)
	} else {
		n = nil
	}
	if q := x.parked[pk]; q != nil && q.sub == t.sub {
		x.unparkKey(pk)
	}
	return n
}

// takeAck removes the transaction t under pk, answered by the ACK of
// server from for ip. A DISCOVER's ACK (rapid commit) at an ISP with
// several servers is remembered until until: the other servers' ACKs to it
// follow (rapidWon).
func (x *txns) takeAck(pk pendKey, t *txn, from, ip netip.Addr, until time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.pending[pk] == t {
		x.del(pk)
	}
	if x.parked[pk] == t {
		x.unparkKey(pk)
	}
	if t.msgType == dhcpv4.MessageTypeDiscover && len(t.isp.Servers) > 1 {
		x.winRapid(pk, &rapidWin{sub: t.sub, from: from, ip: ip, op82: t.op82, clientID: t.clientID, until: until,
			released: t.released})
	}
}

// rapidWon returns a copy of the rapid-commit win under pk (takeAck).
func (x *txns) rapidWon(pk pendKey) (rapidWin, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	w := x.rapid[pk]
	if w == nil {
		return rapidWin{}, false
	}
	return *w, true
}

// releaseOnce reports whether server from is yet to be sent the RELEASE
// of its rapid-commit lease: under pk once another server's ACK took the
// transaction (t nil), or of the transaction t still pending. It notes
// that it is sent.
func (x *txns) releaseOnce(pk pendKey, t *txn, from netip.Addr) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	var list *[]netip.Addr
	if t != nil {
		list = &t.released
	} else if w := x.rapid[pk]; w != nil {
		list = &w.released
	} else {
		return false
	}
	if slices.Contains(*list, from) {
		return false
	}
	*list = append(*list, from)
	return true
}

// selected reports whether the ACK of server address from, naming server
// identifier sid (invalid: none), may answer t: for a SELECTING REQUEST,
// only the server the client selected ACKs (RFC 2131 §3.1 step 3, §4.3.2;
// the others take the REQUEST as the decline of their OFFER). That server
// is the one whose OFFER t took: its identifier, which the relayed REQUEST
// named (servers sharing one identifier are one server to the client), or,
// with server-id override (every identifier ours) or an ACK naming none,
// its address.
func (x *txns) selected(t *txn, from, sid netip.Addr, override bool) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if t.msgType != dhcpv4.MessageTypeRequest || !t.selecting {
		return true
	}
	return isSelected(t.serverID, t.offerFrom, from, sid, override)
}

// isSelected reports whether server from, naming server identifier sid,
// is the one a SELECTING REQUEST selected: the server whose OFFER it took
// (identifier serverID, from address offerFrom; see selected). Any, when
// that is unknown (serverID invalid).
func isSelected(serverID, offerFrom, from, sid netip.Addr, override bool) bool {
	if !serverID.IsValid() {
		return true
	}
	if override || !sid.IsValid() {
		return !offerFrom.IsValid() || from == offerFrom
	}
	return sid == serverID
}

// abandon forgets transaction t (if it is still pending under pk): it was
// refused before reaching the ISP, so it must not time out later.
func (x *txns) abandon(pk pendKey, t *txn) {
	if t == nil {
		return
	}
	x.mu.Lock()
	if x.pending[pk] == t {
		x.del(pk)
	}
	if x.parked[pk] == t {
		x.unparkKey(pk)
	}
	x.mu.Unlock()
}

// oneShare is how much of a cap of max one of n sharers may hold: with
// more than one, three quarters, so that one sharer's excess leaves a
// quarter to the others.
//
// For the pending transactions, the sharers are the ISPs: one ISP's
// silence (its subscribers' transactions each waiting out dhcp.timeout,
// their clients retrying) leaves a quarter of the table to the others,
// whose answers free their slots in milliseconds. A review found one
// silent ISP refusing every other ISP's subscribers (pending_full).
//
// For the onboarding leases and offers (Config.MaxOnboarding), the
// sharers are the onboarding circuits: one circuit's made-up MACs, each
// DISCOVER an offer held onboardingOfferTTL and each completed DORA a
// lease it renews, leave a quarter of the cap to the other circuits' new
// devices. Before, an attacker on one circuit whose pool (or MaxLeases)
// was larger than the cap took all of it, and every other circuit's new
// device was refused (onboarding_full) while it lasted.
func oneShare(max, n int) int {
	if n <= 1 {
		return max
	}
	return max - max/4
}

// errPendingFull: no room for another transaction.
var errPendingFull = fmt.Errorf("pending_full")

// overtakenOf is what a DISCOVER that takes over REQUEST t (the same
// client's, its xid kept) keeps of it (txn.overtook): the REQUEST's
// deadline still runs, unless a reply to it was refused already (not
// silence).
func overtakenOf(t *txn) *overtaken {
	o := &overtaken{requested: t.requested, selecting: t.selecting, putBack: t.putBack,
		serverID: t.serverID, offerFrom: t.offerFrom, sentTo: t.sentTo}
	if !t.refused {
		o.due = t.deadline
	}
	return o
}

// begin records that m (raw, parsed) is about to be relayed for sk: for
// DISCOVER, REQUEST and INFORM it creates or updates the transaction under
// pk (nil for other types). It returns the transaction and the ISP
// server-id to put in the relayed message: the transaction's, else
// leaseSID (the subscriber's binding at this ISP), else the remembered
// OFFER's, else the ISP's only server. A DISCOVER retransmitted (the
// same xid) is the same selection: the server whose OFFER was taken stays
// chosen; one that follows another message under its xid (a REQUEST: the
// client went back to INIT) starts the selection afresh. At most max
// transactions are pending, at most share of them the ISP's (oneShare).
func (x *txns) begin(pk pendKey, sk subKey, c *Circuit, isp *ISP, reg registry.Entry, op82 []byte,
	raw []byte, m *dhcpv4.DHCPv4, leaseSID netip.Addr, gen uint64, now time.Time, timeout time.Duration, max, share int) (*txn, netip.Addr, error) {
	mt := m.MessageType()
	x.mu.Lock()
	defer x.mu.Unlock()
	t := x.pending[pk]
	if t != nil && t.sub != sk {
		// The same MAC and xid on another circuit (the device moved):
		// the transaction is the new circuit's, its answer goes there.
		t = nil
	}
	if t != nil && mt == dhcpv4.MessageTypeDiscover && t.msgType != dhcpv4.MessageTypeDiscover {
		// The client went back to INIT (its REQUEST NAKed or
		// unanswered) and kept its xid, as RFC 2131 lets it: a new
		// selection among every server. The server chosen before may
		// be the one failing; its OFFER must not be the only one taken.
		if t.msgType == dhcpv4.MessageTypeRequest {
			t.overtook = overtakenOf(t)
		}
		t.serverID, t.offerFrom, t.released = netip.Addr{}, netip.Addr{}, nil
	} else if t != nil && mt != dhcpv4.MessageTypeDiscover {
		t.overtook = nil
	}
	sid := leaseSID
	if t != nil {
		sid = t.serverID
	}
	var from netip.Addr
	if !sid.IsValid() {
		// A REQUEST after its DISCOVER's transaction ended (a client
		// slow to choose, or ispmux restarted in between) names our
		// server-id: the ISP's comes from the OFFER we remember, or is
		// the ISP's only server.
		if o, ok := x.offered[sk]; ok && o.isp == isp && now.Sub(o.at) < offerMemory {
			sid, from = o.sid, o.from
		} else if len(isp.Servers) == 1 {
			sid = isp.Servers[0]
		}
	}
	switch mt {
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
	default:
		return t, sid, nil
	}
	if t == nil {
		// Replacing another circuit's transaction under pk takes no
		// more room (a review: counted as new, it leaked a slot).
		if _, had := x.pending[pk]; !had && x.noRoom(pk, max, share) {
			return nil, sid, errPendingFull
		}
		t = &txn{sub: sk, circuit: c, isp: isp}
		x.put(pk, t)
	}
	// The ISP's time runs from the first relay of this message: a
	// client's retransmissions do not extend it.
	if t.msgType != mt || t.deadline.IsZero() {
		t.offersOwed = 0
		t.retyped = t.retyped || t.msgType != 0 && t.msgType != mt
		t.deadline = now.Add(timeout)
		t.relayed = now
		t.resent = time.Time{}
		t.refused, t.putBack = false, false
		t.nakBy = netip.Addr{}
		t.unreach = unreachableNote{}
		t.unlisted = netip.Addr{}
		t.malformed = netip.Addr{}
		t.otherNak = netip.Addr{}
	} else {
		t.resent = now
	}
	x.dueEarlier(t) // a deadline set, or a REQUEST taken over
	// Each copy of a DISCOVER relayed may be answered by one OFFER of
	// the server chosen (a server answers a client's retransmission
	// again); more are repeats (offer).
	if mt == dhcpv4.MessageTypeDiscover && t.offersOwed < maxOffersOwed {
		t.offersOwed++
	}
	t.reg, t.op82, t.msgType, t.gen = reg, op82, mt, gen
	t.selecting = mt == dhcpv4.MessageTypeRequest && m.Options.Has(dhcpv4.OptionServerIdentifier)
	t.rapid = mt == dhcpv4.MessageTypeDiscover && m.Options.Has(dhcpv4.OptionRapidCommit)
	t.clientID = m.Options.Get(dhcpv4.OptionClientIdentifier)
	t.names = clientNames(m)
	if len(raw) >= 12 {
		t.flags = [2]byte(raw[10:12])
	}
	t.replyMax, t.prl = maxReply(raw), requestList(raw)
	t.requested, t.ciaddr = netip.Addr{}, netip.Addr{}
	if a, ok := netip.AddrFromSlice(m.ClientIPAddr.To4()); ok && !a.IsUnspecified() {
		t.ciaddr = a
	}
	if a, ok := netip.AddrFromSlice(m.RequestedIPAddress().To4()); ok && !a.IsUnspecified() {
		t.requested = a
	} else if a, ok := netip.AddrFromSlice(m.ClientIPAddr.To4()); ok && !a.IsUnspecified() {
		t.requested = a
	}
	if t.serverID.IsValid() {
		sid = t.serverID
	} else if from.IsValid() && mt == dhcpv4.MessageTypeRequest {
		// The remembered OFFER's server is the one chosen (chosen).
		t.serverID, t.offerFrom = sid, from
	}
	return t, sid, nil
}

// overtakenAnswer reports whether an ACK or NAK to t is the answer to the
// REQUEST t's DISCOVER took over (overtaken), and if so returns the address
// that REQUEST asked for and notes it answered (no timeout).
func (x *txns) overtakenAnswer(t *txn) (netip.Addr, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if t.msgType != dhcpv4.MessageTypeDiscover || t.overtook == nil {
		return netip.Addr{}, false
	}
	t.overtook.due, t.overtook.answered = time.Time{}, true
	return t.overtook.requested, true
}

// overtakenNak reports whether the NAK of server from (naming server
// identifier sid) to t is the answer to the REQUEST t's DISCOVER took
// over, and if so returns that REQUEST (a copy) and notes it answered (no
// timeout): the first answer to it, from a server it went to (txn.sentTo)
// and, if SELECTING, the server selected (isSelected). Otherwise the NAK
// answers the DISCOVER.
func (x *txns) overtakenNak(t *txn, from, sid netip.Addr, override bool) (overtaken, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	o := t.overtook
	if t.msgType != dhcpv4.MessageTypeDiscover || o == nil || o.answered ||
		o.sentTo.IsValid() && from != o.sentTo ||
		o.selecting && !isSelected(o.serverID, o.offerFrom, from, sid, override) {
		return overtaken{}, false
	}
	o.due, o.answered = time.Time{}, true
	return *o, true
}

// offer records the OFFER from server address from, naming server-id
// sid, for t. Of several ISP servers answering one DISCOVER only the first
// is taken: offerOtherServer for the others' (told apart by address), and
// for any OFFER once t is no longer a DISCOVER (the client has chosen);
// and of the chosen server's, one for each copy of the DISCOVER relayed
// (txn.offersOwed): offerRepeated beyond.
func (x *txns) offer(t *txn, isp *ISP, from, sid netip.Addr, now time.Time, timeout time.Duration) offerTake {
	x.mu.Lock()
	defer x.mu.Unlock()
	if t.msgType != dhcpv4.MessageTypeDiscover || t.offerFrom.IsValid() && t.offerFrom != from {
		return offerOtherServer
	}
	if t.offersOwed == 0 {
		// Every copy of the DISCOVER relayed has had its OFFER: a
		// server repeating its answer (a hostile-ISP trial's sent one
		// 200,000 times, each delivered) is not the client's to hear,
		// nor does it hold the transaction open.
		return offerRepeated
	}
	t.offersOwed--
	t.serverID, t.offerFrom = sid, from
	t.deadline = now.Add(timeout)
	x.dueEarlier(t) // earlier than an extended deadline
	x.remember(t.sub, offer{isp: isp, sid: sid, from: from, at: now})
	return offerTaken
}

// offerTake is what becomes of a server's OFFER (txns.offer).
type offerTake uint8

const (
	// offerTaken: delivered, its server the client's choice.
	offerTaken offerTake = iota
	// offerOtherServer: another server's than the one chosen, or one
	// that comes once the client has sent its REQUEST.
	offerOtherServer
	// offerRepeated: the chosen server's again, every copy of the
	// DISCOVER relayed having had its OFFER.
	offerRepeated
)

// maxOffersOwed bounds txn.offersOwed: a client's retransmissions are
// rate-limited (mac_rate) and each relayed is owed one OFFER, but no more
// than this many at once are delivered to a server that answers late.
const maxOffersOwed = 8

// offerAt is an OFFER of sk remembered at at (monoNanos), in
// txns.offerQ.
type offerAt struct {
	sk subKey
	at int64
}

// monoEpoch is what monoNanos counts from.
var monoEpoch = time.Now()

// monoNanos is t in nanoseconds from monoEpoch, by the monotonic clock
// where t has its reading (time.Now's, the proxy's clock), as comparing
// time.Times is: the OFFERs' queue and the moves' deadlines order by it,
// so a step of the wall clock (an NTP step, a box without an RTC setting
// its clock) neither brings them due early nor holds them late. Unix
// nanoseconds did: an hour's step forward had every cut pending due at
// once, one back held the OFFERs remembered after it behind those before
// for the hour. A time without a reading (a test's) counts by the wall
// clock; one beyond 292 years of the epoch saturates.
func monoNanos(t time.Time) int64 { return int64(t.Sub(monoEpoch)) }

// remember remembers o as sk's OFFER (x.mu held). A subscriber already
// remembered keeps its one entry in offerQ, which expireOffers queues
// again at o's time when it comes up: queued at each OFFER, the queue grew
// by one an OFFER while offered held one a subscriber (a DISCOVER every
// quarter second, mac_rate's 4, answered for offerMemory: 1,200 entries;
// an ISP's server answering one DISCOVER over and over, one a datagram).
func (x *txns) remember(sk subKey, o offer) {
	if old, ok := x.offered[sk]; ok {
		o.q = old.q
	} else {
		o.q = monoNanos(o.at)
		x.offerQ = append(x.offerQ, offerAt{sk, o.q})
	}
	x.offered[sk] = o
}
