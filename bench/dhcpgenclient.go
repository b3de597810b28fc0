package bench

import (
	"encoding/binary"
	"net"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// The generator's clients: each client's DORA state machine (DISCOVER,
// OFFER, REQUEST, then ACK or NAK) and the generator that holds them,
// shared by the pacer (dhcpgenrun.go) and the reader of replies (handle).

// Client states.
const (
	stIdle = iota
	stDiscover
	stRequest
	stBound // persist: done
)

// genClient is one client's state.
type genClient struct {
	mac     net.HardwareAddr
	state   int
	xid     dhcpv4.TransactionID
	first   time.Time // first transmission of the current message
	due     time.Time // when the current message is retransmitted (or fails)
	start   time.Time // the exchange's start
	sent    int       // transmissions of the current message
	frame   []byte    // the current message, for retransmission
	ex      Exchange
	res     *ClientResult
	offered net.IP
}

// generator runs the clients. mu guards the clients and counters: the
// pacer (starts, retransmissions, timeouts) and the reader (replies) share
// them.
type generator struct {
	o    *genOptions
	send func([]byte) error
	t0   time.Time

	mu       sync.Mutex
	clients  []genClient
	busy     int
	next     int
	anyStart bool
	lastScan time.Time
	res      GenResult
	xidState uint32
	rnd      uint64 // the backoffs' jitter (xorshift)
	started  int    // exchanges started
	failed   int    // exchanges failed
}

func newGenerator(o *genOptions, send func([]byte) error) *generator {
	g := &generator{o: o, send: send, clients: make([]genClient, o.clients)}
	g.res = GenResult{Clients: o.clients, Rate: o.rate, TimeoutMs: o.timeout.Milliseconds(), Retries: o.retries,
		Persist: o.persist, Results: make([]ClientResult, o.clients)}
	for i := range g.clients {
		g.clients[i].mac = genMAC(i)
		g.res.Results[i].MAC = g.clients[i].mac.String()
		g.res.Results[i].Exchanges = []Exchange{}
		g.clients[i].res = &g.res.Results[i]
	}
	seed := uint64(time.Now().UnixNano())
	g.xidState = uint32(seed) | 1
	g.rnd = seed | 1
	return g
}

// newXID returns a fresh transaction ID (xorshift: distinct, cheap).
func (g *generator) newXID() dhcpv4.TransactionID {
	x := g.xidState
	x ^= x << 13
	x ^= x >> 17
	x ^= x << 5
	g.xidState = x
	var id dhcpv4.TransactionID
	binary.BigEndian.PutUint32(id[:], x)
	return id
}

// rand01 is uniform in [0, 1) (xorshift64*).
func (g *generator) rand01() float64 {
	x := g.rnd
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	g.rnd = x
	return float64((x*2685821657736338717)>>11) / (1 << 53)
}

func (g *generator) since(t time.Time) int64 { return t.Sub(g.t0).Microseconds() }

// discover begins an exchange of c: a DISCOVER with a fresh xid.
func (g *generator) discover(c *genClient, now time.Time) {
	c.state, c.xid, c.start, c.ex, c.offered = stDiscover, g.newXID(), now, Exchange{}, nil
	c.frame = discoverFrame(c.mac, c.xid)
	c.first, c.sent = now, 0
	g.transmit(c, now)
}

func (g *generator) transmit(c *genClient, now time.Time) {
	c.sent++
	c.due = now.Add(backoff(g.o.timeout, c.sent, g.rand01()))
	if c.state == stDiscover {
		c.ex.Discovers++
	} else {
		c.ex.Requests++
	}
	if err := g.send(c.frame); err != nil {
		g.res.TxErrors++
		return
	}
	g.res.TxFrames++
}

// finish ends the client's exchange.
func (g *generator) finish(c *genClient, fail string, now time.Time) {
	c.ex.OK, c.ex.Fail = fail == "", fail
	c.ex.EndUs = g.since(now)
	c.res.Exchanges = append(c.res.Exchanges, c.ex)
	c.state, c.frame = stIdle, nil
	if !c.ex.OK {
		g.failed++
	}
	g.busy--
}

// handle processes one received frame.
func (g *generator) handle(f []byte, now time.Time) {
	m, err := parseReply(f)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.res.RxFrames++
	if err != nil {
		g.res.RxIgnore++
		return
	}
	i := genIndex(m.ClientHWAddr, len(g.clients))
	if i < 0 {
		g.res.RxIgnore++
		return
	}
	c := &g.clients[i]
	if (c.state != stDiscover && c.state != stRequest) || m.TransactionID != c.xid {
		g.res.RxIgnore++
		return
	}
	switch mt := m.MessageType(); {
	case c.state == stDiscover && mt == dhcpv4.MessageTypeOffer:
		sid := m.ServerIdentifier()
		if sid == nil || m.YourIPAddr.IsUnspecified() {
			g.res.RxIgnore++
			return
		}
		c.ex.OfferUs = now.Sub(c.first).Microseconds()
		c.offered = m.YourIPAddr
		c.state = stRequest
		c.frame = requestFrame(c.mac, c.xid, m.YourIPAddr, sid)
		c.first, c.sent = now, 0
		g.transmit(c, now)
	case c.state == stRequest && mt == dhcpv4.MessageTypeAck:
		c.ex.AckUs = now.Sub(c.first).Microseconds()
		c.res.Address = m.YourIPAddr.String()
		us := g.since(now)
		if us > g.res.LastAckUs {
			g.res.LastAckUs = us
		}
		if c.res.BoundUs == 0 {
			c.res.BoundUs = us
			g.res.Bound++
		}
		g.finish(c, "", now)
		if g.o.persist {
			c.state = stBound
		}
	case c.state == stRequest && mt == dhcpv4.MessageTypeNak:
		g.finish(c, FailNak, now)
		if g.o.persist {
			g.busy++
			g.discover(c, now)
		}
	default:
		g.res.RxIgnore++ // a duplicate OFFER, a late reply
	}
}
