package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
)

// The L2 DHCP client generator (`ispmux bench dhcp-client-gen`, hidden): N
// clients with MACs 02:20:ii:ii:ii:ii (ii = the client's number from 1, big
// endian) run full DORA exchanges like a real client through one AF_PACKET
// socket in promiscuous mode, paced at a number of exchange starts per
// second. It prints a GenResult as JSON on stdout.

// genMACPrefix is the first two bytes of every generated client MAC.
var genMACPrefix = [2]byte{0x02, 0x20}

// maxGenClients bounds --clients: the open Kea pool holds 64,000 addresses.
const maxGenClients = 60000

// genMAC returns the MAC of client i (0-based).
func genMAC(i int) net.HardwareAddr {
	m := make(net.HardwareAddr, 6)
	m[0], m[1] = genMACPrefix[0], genMACPrefix[1]
	binary.BigEndian.PutUint32(m[2:], uint32(i+1))
	return m
}

// genIndex returns the client number of a generated MAC, or -1.
func genIndex(m net.HardwareAddr, n int) int {
	if len(m) < 6 || m[0] != genMACPrefix[0] || m[1] != genMACPrefix[1] {
		return -1
	}
	i := int(binary.BigEndian.Uint32(m[2:6])) - 1
	if i < 0 || i >= n {
		return -1
	}
	return i
}

// Exchange is one DORA attempt of one client. Latencies run from the
// first transmission of the DISCOVER (REQUEST) to the OFFER (ACK), in
// microseconds; 0 when the reply never came.
type Exchange struct {
	OfferUs   int64  `json:"offer_us,omitempty"`
	AckUs     int64  `json:"ack_us,omitempty"`
	Discovers int    `json:"discovers"`          // DISCOVER transmissions
	Requests  int    `json:"requests,omitempty"` // REQUEST transmissions
	OK        bool   `json:"ok"`
	Fail      string `json:"fail,omitempty"` // FailNoOffer, FailNoAck, FailNak or FailUnfinished
	EndUs     int64  `json:"end_us"`         // end of the exchange since the generator's start
}

// Failure reasons of an exchange (FailSkipped: a start due while every
// client was busy, counted by GenResult.Skipped, never in an Exchange).
const (
	FailNoOffer    = "no_offer"
	FailNoAck      = "no_ack"
	FailNak        = "nak"
	FailUnfinished = "unfinished"
	FailSkipped    = "skipped"
)

// ClientResult is everything one client did.
type ClientResult struct {
	MAC     string `json:"mac"`
	Address string `json:"address,omitempty"` // the last address ACKed
	// BoundUs is when the client first got an ACK, since the generator's
	// start; 0 if never.
	BoundUs   int64      `json:"bound_us,omitempty"`
	Exchanges []Exchange `json:"exchanges"`
}

// GenResult is the generator's output.
type GenResult struct {
	Clients   int     `json:"clients"`
	Rate      float64 `json:"rate"`       // exchange starts per second offered
	WindowS   float64 `json:"window_s"`   // how long exchanges were started
	TimeoutMs int64   `json:"timeout_ms"` // per transmission
	Retries   int     `json:"retries"`    // retransmissions per message
	// FirstStartUs and LastAckUs are since the generator's start.
	FirstStartUs int64 `json:"first_start_us"`
	LastAckUs    int64 `json:"last_ack_us"`
	EndUs        int64 `json:"end_us"` // when the last exchange ended
	// Skipped counts starts that were due while every client was busy.
	Skipped int `json:"skipped"`
	// Persist: every client started once and kept trying until bound
	// (the outage case); Bound clients got an ACK, StoppedAt says why the
	// generator stopped ("until" reached, "max_time", "idle", "fail_fast"
	// or "interrupted").
	Persist  bool           `json:"persist,omitempty"`
	Bound    int            `json:"bound"`
	Stopped  string         `json:"stopped"`
	TxFrames uint64         `json:"tx_frames"`
	TxErrors uint64         `json:"tx_errors"`
	RxFrames uint64         `json:"rx_frames"`
	RxIgnore uint64         `json:"rx_ignored"` // replies matching no waiting client
	Results  []ClientResult `json:"results"`
}

// genOptions are the generator's flags.
type genOptions struct {
	ifname   string
	clients  int
	rate     float64
	duration time.Duration
	timeout  time.Duration
	retries  int
	// drain bounds the wait for the last exchanges after the window; 0:
	// their whole retransmission schedule.
	drain time.Duration
	// failFast (percent, 0 off) stops the run as soon as failed
	// exchanges plus skipped starts exceed that share of the starts due
	// in the whole window: the rate search's step has failed.
	failFast float64
	// persist: each client starts once (clients/rate seconds of starts)
	// and keeps trying until it is bound, as a real client does (the
	// outage case); the run ends when until (a fraction) of the clients
	// are bound or after maxTime.
	persist bool
	until   float64
	maxTime time.Duration
	// progress is how often a progress line goes to stderr (0: never).
	progress time.Duration
}

// maxBackoff caps a retransmission's wait (RFC 2131 §4.1: 64 s).
const maxBackoff = 64 * time.Second

// backoff is the wait after transmission n (1-based) of a message:
// timeout doubled at each retransmission (RFC 2131 §4.1: 4, 8, 16, ... s
// with the default 4 s), capped at 64 s, randomised by ±timeout/4 (±1 s
// at 4 s) with r uniform in [0, 1).
func backoff(timeout time.Duration, n int, r float64) time.Duration {
	d := timeout
	for i := 1; i < n && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, max(maxBackoff, timeout))
	j := time.Duration((2*r - 1) * float64(timeout/4))
	return d + j
}

// scheduleLen is how long a message can wait in all before it fails:
// the sum of its retries+1 backoffs at their longest.
func scheduleLen(timeout time.Duration, retries int) time.Duration {
	var t time.Duration
	for n := 1; n <= retries+1; n++ {
		t += backoff(timeout, n, 1)
	}
	return t
}

func parseGen(args []string, stderr io.Writer) (*genOptions, error) {
	fs := flag.NewFlagSet("bench dhcp-client-gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &genOptions{}
	fs.StringVar(&o.ifname, "if", "eth0", "interface")
	fs.IntVar(&o.clients, "clients", 1000, "client MACs")
	fs.Float64Var(&o.rate, "rate", 500, "DORA starts per second")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to start exchanges")
	fs.DurationVar(&o.timeout, "timeout", 4*time.Second, "first retransmission's wait (doubled at each, ±1/4: RFC 2131's 4, 8, 16 s ± 1)")
	fs.IntVar(&o.retries, "retries", 2, "retransmissions per message")
	fs.DurationVar(&o.drain, "drain", 0, "longest wait for the last exchanges after the window (0: their whole retransmission schedule)")
	fs.Float64Var(&o.failFast, "fail-fast", 0, "stop once failed exchanges + skipped starts exceed this percentage of the starts due (0: off)")
	fs.BoolVar(&o.persist, "persist", false, "each client starts once and retries until bound (the outage case)")
	fs.Float64Var(&o.until, "until", 0.999, "with --persist: stop when this fraction of the clients is bound")
	fs.DurationVar(&o.maxTime, "max-time", 2*time.Minute, "with --persist: give up after this long")
	fs.DurationVar(&o.progress, "progress", 0, "print a progress line to stderr this often (0: never)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() != 0:
		return nil, fmt.Errorf("dhcp-client-gen: unexpected arguments %q", fs.Args())
	case o.clients < 1 || o.clients > maxGenClients:
		return nil, fmt.Errorf("dhcp-client-gen: --clients %d: want 1..%d", o.clients, maxGenClients)
	case o.rate <= 0 || o.rate > 1e6:
		return nil, fmt.Errorf("dhcp-client-gen: --rate %g: want (0, 1e6]", o.rate)
	case o.duration <= 0 || o.duration > time.Hour:
		return nil, fmt.Errorf("dhcp-client-gen: --duration %v: want (0, 1h]", o.duration)
	case o.timeout < 10*time.Millisecond || o.timeout > time.Minute:
		return nil, fmt.Errorf("dhcp-client-gen: --timeout %v: want 10ms..1m", o.timeout)
	case o.retries < 0 || o.retries > 10:
		return nil, fmt.Errorf("dhcp-client-gen: --retries %d: want 0..10", o.retries)
	case o.drain < 0 || o.failFast < 0 || o.failFast > 100 || o.progress < 0:
		return nil, fmt.Errorf("dhcp-client-gen: --drain, --fail-fast or --progress out of range")
	case o.persist && (o.until <= 0 || o.until > 1 || o.maxTime <= 0):
		return nil, fmt.Errorf("dhcp-client-gen: --until %g (want (0, 1]) or --max-time %v", o.until, o.maxTime)
	}
	if o.persist {
		o.duration = time.Duration(float64(o.clients) / o.rate * float64(time.Second))
	}
	return o, nil
}

// dhcpClientGen runs the hidden subcommand.
func dhcpClientGen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseGen(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	ifi, err := net.InterfaceByName(o.ifname)
	if err != nil {
		return fmt.Errorf("dhcp-client-gen: %w", err)
	}
	sock, err := openGenSocket(ifi.Index)
	if err != nil {
		return fmt.Errorf("dhcp-client-gen: %w", err)
	}
	defer unix.Close(sock)
	g := newGenerator(o, func(f []byte) error { return sendFrame(sock, ifi.Index, f) })
	res := g.run(ctx, func(buf []byte) (int, error) {
		n, _, err := unix.Recvfrom(sock, buf, 0)
		return n, err
	})
	enc := json.NewEncoder(stdout)
	return enc.Encode(res)
}

// dhcpPortFilter is a classic BPF program accepting only untagged IPv4
// UDP frames to port 68 (non-fragments): DHCP replies to clients. The
// generator's own DISCOVERs and REQUESTs (to port 67) never reach it.
var dhcpPortFilter = []unix.SockFilter{
	{Code: 0x28, K: 12},                   // ldh [12]            ethertype
	{Code: 0x15, Jt: 0, Jf: 8, K: 0x0800}, // jeq #0x800
	{Code: 0x30, K: 23},                   // ldb [23]            protocol
	{Code: 0x15, Jt: 0, Jf: 6, K: 17},     // jeq #17
	{Code: 0x28, K: 20},                   // ldh [20]            fragment
	{Code: 0x45, Jt: 4, Jf: 0, K: 0x1fff}, // jset #0x1fff
	{Code: 0xb1, K: 14},                   // ldxb 4*([14]&0xf)   IP header length
	{Code: 0x48, K: 16},                   // ldh [x+16]          UDP dst port
	{Code: 0x15, Jt: 0, Jf: 1, K: 68},     // jeq #68
	{Code: 0x06, K: 0x40000},              // ret #262144
	{Code: 0x06, K: 0},                    // ret #0
}

// openGenSocket opens the AF_PACKET socket: bound to ifindex, promiscuous
// (replies are unicast to every client MAC), filtered to DHCP replies,
// with a large receive buffer and a receive timeout so that the reader
// notices the end.
func openGenSocket(ifindex int) (int, error) {
	proto := int(htons(unix.ETH_P_IP))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	fail := func(what string, err error) (int, error) {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: %w", what, err)
	}
	prog := unix.SockFprog{Len: uint16(len(dhcpPortFilter)), Filter: &dhcpPortFilter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fail("SO_ATTACH_FILTER", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex}); err != nil {
		return fail("bind", err)
	}
	mreq := unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		return fail("PACKET_ADD_MEMBERSHIP", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail("SO_RCVTIMEO", err)
	}
	return fd, nil
}

func sendFrame(fd, ifindex int, f []byte) error {
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex, Halen: 6}
	copy(to.Addr[:], f[0:6])
	for {
		err := unix.Sendto(fd, f, 0, to)
		if err == unix.EINTR {
			continue
		}
		return err
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

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

// run paces the exchanges for the duration, waits for the last ones and
// returns the results. recv reads one frame (it may time out).
func (g *generator) run(ctx context.Context, recv func([]byte) (int, error)) *GenResult {
	g.t0 = time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, err := recv(buf)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || errors.Is(err, unix.EWOULDBLOCK) {
					continue
				}
				fmt.Fprintf(os.Stderr, "dhcp-client-gen: recv: %v\n", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			g.handle(buf[:n], time.Now())
		}
	}()

	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	started := 0
	window := g.o.duration
	drain := g.o.drain
	if drain == 0 {
		drain = scheduleLen(g.o.timeout, g.o.retries) + time.Second
	}
	// The fail-fast budget: failures + skips allowed over the whole window.
	budget := int(g.o.failFast / 100 * g.o.rate * window.Seconds())
	lastProgress := g.t0
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			now = time.Now()
			window = min(window, now.Sub(g.t0))
		case now = <-tick.C:
		}
		el := now.Sub(g.t0)
		inWindow := el < window && ctx.Err() == nil
		var due int
		switch {
		case inWindow:
			due = int(el.Seconds()*g.o.rate) + 1
		case g.o.persist && ctx.Err() == nil:
			due = g.o.clients // the last starts of the second
		}
		if g.o.persist {
			due = min(due, g.o.clients)
		}
		g.mu.Lock()
		for ; started < due; started++ {
			g.startOne(now)
		}
		g.timeouts(now)
		idle := g.busy == 0
		bad := g.failed + g.res.Skipped
		bound := g.res.Bound
		g.mu.Unlock()
		if g.o.progress > 0 && now.Sub(lastProgress) >= g.o.progress {
			lastProgress = now
			g.mu.Lock()
			fmt.Fprintf(os.Stderr, "progress: %.0fs started=%d failed=%d skipped=%d busy=%d bound=%d\n",
				el.Seconds(), g.started, g.failed, g.res.Skipped, g.busy, g.res.Bound)
			g.mu.Unlock()
		}
		stopped := ""
		switch {
		case ctx.Err() != nil && (idle || !inWindow):
			stopped = "interrupted"
		case g.o.failFast > 0 && bad > budget:
			stopped = "fail_fast"
		case g.o.persist && float64(bound) >= g.o.until*float64(g.o.clients):
			stopped = "until"
		case g.o.persist && el >= g.o.maxTime:
			stopped = "max_time"
		case !g.o.persist && !inWindow && idle:
			stopped = "idle"
		case !g.o.persist && !inWindow && el >= window+drain:
			stopped = "drain"
		}
		if stopped != "" {
			g.res.Stopped = stopped
			break
		}
	}
	close(stop)
	wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	end := time.Now()
	for i := range g.clients {
		if c := &g.clients[i]; c.state == stDiscover || c.state == stRequest {
			g.finish(c, FailUnfinished, end)
		}
	}
	g.res.WindowS = round(window.Seconds(), 3)
	g.res.EndUs = g.since(end)
	return &g.res
}

// startOne starts an exchange on the next idle client (round robin).
func (g *generator) startOne(now time.Time) {
	n := len(g.clients)
	for k := 0; k < n; k++ {
		c := &g.clients[g.next]
		g.next = (g.next + 1) % n
		if c.state != stIdle {
			continue
		}
		if !g.anyStart {
			g.anyStart, g.res.FirstStartUs = true, g.since(now)
		}
		g.busy++
		g.started++
		g.discover(c, now)
		return
	}
	g.res.Skipped++
}

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

// timeouts retransmits or fails messages whose wait is over. A client
// that persists keeps retransmitting its DISCOVER (the wait capped at
// 64 s) and starts over after a REQUEST that got no answer.
func (g *generator) timeouts(now time.Time) {
	if g.busy == 0 || now.Sub(g.lastScan) < timeoutScan(g.o.timeout) {
		return
	}
	g.lastScan = now
	for i := range g.clients {
		c := &g.clients[i]
		if (c.state != stDiscover && c.state != stRequest) || now.Before(c.due) {
			continue
		}
		if c.sent <= g.o.retries || (g.o.persist && c.state == stDiscover) {
			g.transmit(c, now)
			continue
		}
		reason := FailNoOffer
		if c.state == stRequest {
			reason = FailNoAck
		}
		g.finish(c, reason, now)
		if g.o.persist {
			g.busy++
			g.discover(c, now)
		}
	}
}

// timeoutScan is how often the pacer looks for expired waits: the
// resolution of the retransmissions, 1/40 of the first wait within
// [5 ms, 100 ms], so that a scan of every client stays cheap.
func timeoutScan(timeout time.Duration) time.Duration {
	return min(max(timeout/40, 5*time.Millisecond), 100*time.Millisecond)
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

// paramRequest is what the generated clients ask for (as dhclient does).
var paramRequest = dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
	dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue)

// discoverFrame builds a broadcast DISCOVER from mac with transaction xid.
func discoverFrame(mac net.HardwareAddr, xid dhcpv4.TransactionID) []byte {
	m, err := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithTransactionID(xid),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), paramRequest)
	if err != nil {
		panic(err) // only a failing random source; not with a fixed xid
	}
	return clientFrame(mac, m.ToBytes())
}

// requestFrame builds the broadcast REQUEST (SELECTING state: option 50
// the offered address, option 54 the offering server).
func requestFrame(mac net.HardwareAddr, xid dhcpv4.TransactionID, yiaddr, serverID net.IP) []byte {
	m, err := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithTransactionID(xid),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), paramRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(yiaddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverID)))
	if err != nil {
		panic(err)
	}
	return clientFrame(mac, m.ToBytes())
}

// clientFrame wraps a client's DHCP payload: Ethernet broadcast from mac,
// IPv4 0.0.0.0 → 255.255.255.255, UDP 68 → 67, both checksums computed.
func clientFrame(mac net.HardwareAddr, payload []byte) []byte {
	return fib.UDPFrame(classifier.BroadcastMAC, fib.MAC(mac), 0, netip.IPv4Unspecified(),
		netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, payload)
}

// parseReply extracts the DHCP message of an untagged Ethernet/IPv4/UDP
// frame to port 68 and checks that it is a BOOTREPLY.
func parseReply(f []byte) (*dhcpv4.DHCPv4, error) {
	if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return nil, errors.New("not IPv4")
	}
	ip := f[14:]
	ihl := int(ip[0]&0xf) * 4
	if ip[0]>>4 != 4 || ihl < 20 || len(ip) < ihl+8 || ip[9] != 17 {
		return nil, errors.New("not UDP over IPv4")
	}
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if total < ihl+8 || total > len(ip) {
		return nil, errors.New("bad IPv4 length")
	}
	u := ip[ihl:total]
	if binary.BigEndian.Uint16(u[2:]) != 68 {
		return nil, errors.New("not to port 68")
	}
	ul := int(binary.BigEndian.Uint16(u[4:]))
	if ul < 8 || ul > len(u) {
		return nil, errors.New("bad UDP length")
	}
	m, err := dhcpv4.FromBytes(u[8:ul])
	if err != nil {
		return nil, err
	}
	if m.OpCode != dhcpv4.OpcodeBootReply {
		return nil, errors.New("not a BOOTREPLY")
	}
	return m, nil
}
