package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/engine"
	"github.com/ispmux/ispmux/subscribers"
)

// Status is what the control socket reports.
type Status struct {
	Uptime   string          `json:"uptime"`
	Ports    []PortStatus    `json:"ports"`
	ISPs     []ISPStatus     `json:"isps"`
	Bindings []BindingStatus `json:"bindings"` // [] when none
	Control  ControlStatus   `json:"control"`
	// DHCP counts the DHCP proxy's decisions (relayed, offers, acks,
	// drops by reason, rejections).
	DHCP map[string]uint64 `json:"dhcp"`
	// Leases is the number of DHCP leases held.
	Leases int `json:"leases"`
	// PendingIntents is the number of messages to ISPs (RELEASE, DECLINE
	// on a binding's end) recorded and not yet sent: above 0 for long, an
	// ISP's next hop is unresolved.
	PendingIntents int `json:"pending_intents"`
}

// ControlStatus is the control plane's counters.
type ControlStatus struct {
	ARPSent       uint64 `json:"arp_sent"`
	ARPLearned    uint64 `json:"arp_learned"`
	PuntUnhandled uint64 `json:"punt_unhandled"`
}

func controlStatus(c engine.ControlCounters) ControlStatus {
	return ControlStatus{ARPSent: c.ARPSent, ARPLearned: c.ARPLearned, PuntUnhandled: c.PuntUnhandled}
}

// PortStatus is one port's datapath and engine counters, summed over queues
// and workers.
type PortStatus struct {
	Name       string            `json:"name"`
	RxFrames   uint64            `json:"rx_frames"`
	RxBytes    uint64            `json:"rx_bytes"`
	TxFrames   uint64            `json:"tx_frames"`
	TxBytes    uint64            `json:"tx_bytes"`
	TxFull     uint64            `json:"tx_full"`
	NoFrame    uint64            `json:"no_frame"`
	Errors     uint64            `json:"errors"`
	Down       bool              `json:"down"`
	FwdUp      uint64            `json:"forwarded_up"`
	FwdDown    uint64            `json:"forwarded_down"`
	ARPReplies uint64            `json:"arp_replies"`
	Echo       uint64            `json:"echo_replies"`
	Punts      uint64            `json:"punts"`
	Drops      map[string]uint64 `json:"drops"`
}

// ISPStatus is one ISP's next-hop resolution.
type ISPStatus struct {
	Name    string `json:"name"`
	NextHop string `json:"next_hop"`
	State   string `json:"state"`
	MAC     string `json:"mac,omitempty"`
}

// BindingStatus is one bound subscriber.
type BindingStatus struct {
	MAC    string `json:"mac"`
	Access string `json:"access"`
	VLAN   uint16 `json:"vlan"`
	ISP    string `json:"isp"`
	IP     string `json:"ip"`
	Static bool   `json:"static"`
	// DHCP bindings: when the lease runs out and the ISP server that
	// granted it (its server identifier).
	Expires  string `json:"expires,omitempty"`
	ServerID string `json:"server_id,omitempty"`
}

// Status returns the appliance's counters and tables.
func (a *Appliance) Status() Status {
	bs := a.ctl.Bindings()
	st := Status{Uptime: time.Since(a.started).Round(time.Second).String(), Control: controlStatus(a.ctl.Counters()),
		DHCP: a.dhcp.Counters(), Leases: a.dhcp.Leases(), PendingIntents: a.dhcp.PendingIntents(), Bindings: make([]BindingStatus, 0, len(bs))}
	ec := a.state.Counters()
	for i, name := range a.names {
		ps := PortStatus{Name: name, Drops: map[string]uint64{}}
		var qs datapath.QueueStats
		if i < len(a.ports) {
			for q := range a.ports[i].NumQueues() {
				qs.Add(a.ports[i].Queue(q).Stats())
			}
		}
		ps.RxFrames, ps.RxBytes, ps.TxFrames, ps.TxBytes = qs.RxFrames, qs.RxBytes, qs.TxFrames, qs.TxBytes
		ps.TxFull, ps.NoFrame, ps.Errors, ps.Down = qs.TxFull, qs.NoFrame, qs.Errors, qs.Down
		c := ec[i]
		ps.FwdUp, ps.FwdDown, ps.ARPReplies, ps.Punts = c.Up, c.Down, c.ARPReplies, c.Punts
		ps.Echo = c.EchoReplies
		for r, n := range c.Drops {
			if n > 0 {
				ps.Drops[classifier.Reason(r).String()] = n
			}
		}
		st.Ports = append(st.Ports, ps)
	}
	hops := a.ctl.NextHops(a.ispIdx)
	for i, isp := range a.cfg.ISPs {
		is := ISPStatus{Name: isp.Name, NextHop: isp.NextHop, State: hops[i].State}
		if hops[i].MAC != 0 {
			is.MAC = engine.MACString(hops[i].MAC)
		}
		st.ISPs = append(st.ISPs, is)
	}
	for _, b := range bs {
		bst := BindingStatus{
			MAC: engine.MACString(b.MAC), Access: a.accessName(b.Port, b.VLAN), VLAN: b.VLAN,
			ISP: a.cfg.ISPs[b.ISP].Name, IP: b.IP.String(), Static: b.Static,
		}
		if l, ok := a.dhcp.Lease(b.Port, b.VLAN, b.MAC); ok && !b.Static {
			bst.Expires = l.Expires.UTC().Format(time.RFC3339)
			if l.ServerID.IsValid() {
				bst.ServerID = l.ServerID.String()
			}
		}
		st.Bindings = append(st.Bindings, bst)
	}
	sort.Slice(st.Bindings, func(i, j int) bool { return st.Bindings[i].MAC < st.Bindings[j].MAC })
	return st
}

// serveControl serves GET /status and GET /events as JSON, and GET /backup
// (a copy of the store, see backup.go), on a unix socket (reachable from
// any network namespace through the file system).
//
// GET /events returns events in ascending Seq: with last=N the newest N,
// otherwise up to limit (default 1000, at most 10000) after Seq after. The
// headers Ispmux-Oldest-Seq and Ispmux-Newest-Seq give the range the log
// holds, for paging.
func (a *Appliance) serveControl(path string) (*http.Server, error) {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	_ = os.Chmod(path, 0o600)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.Status())
	})
	mux.HandleFunc("GET /events", a.serveEvents)
	mux.HandleFunc("GET /backup", a.serveBackup)
	// The tenant API, as the operator (the socket is root's only).
	if a.api != nil {
		mux.Handle("/v1/", a.api.SocketHandler())
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Warn("control socket", "err", err)
		}
	}()
	return srv, nil
}

// Event paging: the headers of GET /events and its page sizes.
const (
	headerOldestSeq = "Ispmux-Oldest-Seq"
	headerNewestSeq = "Ispmux-Newest-Seq"
	defaultEvents   = 1000
	maxEvents       = 10000
)

func (a *Appliance) serveEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	newest, err := a.store.LastEventSeq()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var oldest uint64
	if first, _ := a.store.Events(0, 1); len(first) > 0 {
		oldest = first[0].Seq
	}
	var evs []subscribers.Event
	if s := q.Get("last"); s != "" {
		n, perr := strconv.Atoi(s)
		if perr != nil || n <= 0 || n > maxEvents {
			http.Error(w, fmt.Sprintf("last must be 1..%d, got %q", maxEvents, s), http.StatusBadRequest)
			return
		}
		var after uint64
		if newest > uint64(n) {
			after = newest - uint64(n)
		}
		evs, err = a.store.Events(after, n)
	} else {
		after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
		limit, perr := strconv.Atoi(q.Get("limit"))
		if perr != nil || limit <= 0 || limit > maxEvents {
			limit = defaultEvents
		}
		evs, err = a.store.Events(after, limit)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	out := make([]EventStatus, 0, len(evs))
	for _, e := range evs {
		out = append(out, eventStatus(e))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(headerOldestSeq, strconv.FormatUint(oldest, 10))
	w.Header().Set(headerNewestSeq, strconv.FormatUint(newest, 10))
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

// EventStatus is one stored event as the control socket reports it.
type EventStatus struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	MAC    string    `json:"mac"`
	ISP    string    `json:"isp,omitempty"`
	IP     string    `json:"ip,omitempty"`
	Reason string    `json:"reason,omitempty"`
	// Customer and Access are the subscriber's customer ID and access
	// entry, where known.
	Customer string `json:"customer,omitempty"`
	Access   string `json:"access,omitempty"`
}

func eventStatus(e subscribers.Event) EventStatus {
	es := EventStatus{Seq: e.Seq, Time: e.Time, Kind: string(e.Kind), MAC: net.HardwareAddr(e.MAC[:]).String(), ISP: e.ISP, Reason: e.Reason,
		Customer: e.Customer, Access: e.Access}
	if e.IP.IsValid() {
		es.IP = e.IP.String()
	}
	return es
}

// FetchEvents asks the appliance for the events after seq (at most 1000:
// FetchEventPage says whether there are more).
func FetchEvents(ctx context.Context, path string, after uint64) ([]EventStatus, error) {
	p, err := FetchEventPage(ctx, path, after, 0)
	if err != nil {
		return nil, err
	}
	return p.Events, nil
}

// EventPage is a slice of the event log, ascending by Seq, and the range of
// sequence numbers the log holds.
type EventPage struct {
	Events []EventStatus
	// Oldest and Newest are the Seq of the oldest event the log still
	// holds and of the newest one (0 when the log is empty). Events are
	// older than the page when its first Seq is above Oldest, newer when
	// its last Seq is below Newest.
	Oldest, Newest uint64
}

// FetchEventPage asks for up to limit events (1..10000; 0 or less: 1000)
// after Seq after.
func FetchEventPage(ctx context.Context, path string, after uint64, limit int) (*EventPage, error) {
	q := fmt.Sprintf("/events?after=%d", after)
	if limit > 0 {
		q += fmt.Sprintf("&limit=%d", limit)
	}
	return fetchEvents(ctx, path, q)
}

// FetchNewestEvents asks for the newest n events (1..10000).
func FetchNewestEvents(ctx context.Context, path string, n int) (*EventPage, error) {
	return fetchEvents(ctx, path, fmt.Sprintf("/events?last=%d", n))
}

func fetchEvents(ctx context.Context, path, what string) (*EventPage, error) {
	p := &EventPage{}
	h, err := fetch(ctx, path, what, &p.Events)
	if err != nil {
		return nil, err
	}
	if p.Events == nil {
		p.Events = []EventStatus{}
	}
	p.Oldest, _ = strconv.ParseUint(h.Get(headerOldestSeq), 10, 64)
	p.Newest, _ = strconv.ParseUint(h.Get(headerNewestSeq), 10, 64)
	return p, nil
}

// FetchStatus asks the appliance whose control socket is at path for its
// status.
func FetchStatus(ctx context.Context, path string) (*Status, error) {
	var st Status
	if _, err := fetch(ctx, path, "/status", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// fetch GETs what on the control socket at path into v and returns the
// response's headers.
func fetch(ctx context.Context, path, what string, v any) (http.Header, error) {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://ispmux"+what, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w (is ispmux running?)", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("control socket %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return resp.Header, nil
}

// accessName is the name of the [[access]] entry on port and vlan (the
// interface's name if none matches).
func (a *Appliance) accessName(port uint8, vlan uint16) string {
	for _, ac := range a.cfg.Access {
		if ac.Interface == a.names[port] && uint16(ac.VLAN) == vlan {
			return ac.Name
		}
	}
	return a.names[port]
}
