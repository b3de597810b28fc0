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
	"time"

	"golang.org/x/sys/unix"
)

// The L2 DHCP client generator (`ispmux bench dhcp-client-gen`, hidden): N
// clients with MACs 02:20:ii:ii:ii:ii (ii = the client's number from 1, big
// endian) run full DORA exchanges like a real client through one AF_PACKET
// socket in promiscuous mode, paced at a number of exchange starts per
// second. It prints a GenResult as JSON on stdout.
//
// This file holds its flags, its results and the subcommand; the pacing
// and the retransmission schedule are in dhcpgenrun.go, the clients'
// state machine in dhcpgenclient.go, the socket and the frames in
// dhcpgenframe.go.

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
