package appliance

// Links: the kernel's link notifications for the ports, and each port's
// recovery from a flap.
//
// watchLinks reads the notifications (one goroutine) and tells each port's
// keeper (a goroutine per port) what its interface is now: up, down (set
// down or no carrier) or gone (deleted). A keeper closes the port's
// queues when it leaves up and re-opens the port when it is up again —
// the same interface, or a new one of the same name (a new ifindex) —
// through the datapath, which runs each queue's part on the worker owning
// it (datapath/reopen.go). Keepers are independent: a port recovering
// never holds up another, and the workers keep serving the other ports.
// A re-open that fails is retried (100 ms doubling to 5 s) while the link
// is up. What happened is logged and counted (ctl status: link, flaps,
// re-opens, failures).

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/netnsrun"
)

// linkState is a port's interface as the kernel last reported it.
type linkState int

const (
	linkUp linkState = iota
	linkDown
	linkGone
)

func (s linkState) String() string {
	return [...]string{"up", "down", "gone"}[s]
}

// portLink is one port's keeper and what it reports.
type portLink struct {
	a    *Appliance
	i    int
	name string
	kick chan struct{}

	mu      sync.Mutex
	kernel  linkState // what the kernel said last
	downs   uint64    // transitions out of up (a flap begins)
	upAt    time.Time // when the kernel said up last
	open    bool      // the port's queues are open
	failing bool      // the last re-open failed
	lastErr string
}

// linkStatus is a port's link as the keeper knows it, for status.
type linkStatus struct {
	State   string // up, down, gone, reopening, failed
	Flaps   uint64
	LastErr string
}

func (l *portLink) status() linkStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := linkStatus{State: l.kernel.String(), Flaps: l.downs, LastErr: l.lastErr}
	switch {
	case l.kernel == linkUp && l.failing:
		st.State = "failed"
	case l.kernel == linkUp && !l.open:
		st.State = "reopening"
	}
	return st
}

// linkStatuses returns every port's link status (nil before Run).
func (a *Appliance) linkStatuses() []linkStatus {
	a.linksMu.Lock()
	ls := a.links
	a.linksMu.Unlock()
	if ls == nil {
		return nil
	}
	out := make([]linkStatus, len(ls))
	for i, l := range ls {
		out[i] = l.status()
	}
	return out
}

// watchLinks follows the kernel's link notifications for the ports: a port
// whose interface loses carrier, goes administratively down or is removed
// is reported at once (the socket errors watchPorts sees come only when
// something is sent), every ISP whose uplink it carries has its next hop
// withdrawn, so ispmux stops sending to a MAC it cannot reach and the DHCP
// proxy refuses that ISP's subscribers saying why, and the port's keeper
// closes its queues. When the interface is up again, or an interface of
// the port's name appears, the keeper re-opens the port; its next hops are
// asked for at once.
func (a *Appliance) watchLinks(ctx context.Context) {
	ls := make([]*portLink, len(a.ports))
	for i, n := range a.names {
		ls[i] = &portLink{a: a, i: i, name: n, kick: make(chan struct{}, 1), open: true}
	}
	a.linksMu.Lock()
	a.links = ls
	a.linksMu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run(ctx)
		}()
	}

	updates := make(chan netlink.LinkUpdate, 256)
	done := make(chan struct{})
	defer close(done)
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			if ctx.Err() == nil { // closing the subscription at exit reports an error too
				a.log.Warn("link notifications", "err", err)
			}
		},
	})
	if err != nil {
		a.log.Warn("link notifications unavailable: link loss is seen only through socket errors, and a port that loses its interface needs a restart", "err", err)
		<-ctx.Done()
		return
	}
	// The index each port's interface had when last seen: a deleted
	// interface's notifications carry it, a re-created one's another.
	index := make([]int, len(a.ports))
	mtu := make([]int, len(a.ports))
	for i, p := range a.ports {
		index[i] = p.Index()
		mtu[i] = ifMTU(a.names[i])
	}
	// The state each interface is in now, subscribed: a port whose
	// interface was down at start (or went down before the subscription)
	// sends no notification until it changes again, and was taken for up
	// (its ISP's next hop kept, ctl status saying up).
	for i, l := range ls {
		if link, err := netlink.LinkByIndex(index[i]); err == nil {
			if now, why := linkStateOf(link.Attrs(), false); now != linkUp {
				l.report(now, why, index[i])
			}
		}
	}
	for {
		var u netlink.LinkUpdate
		var ok bool
		select {
		case <-ctx.Done():
			return
		case u, ok = <-updates:
			if !ok {
				return
			}
		}
		at := u.Attrs()
		for i, l := range ls {
			del := u.Header.Type == unix.RTM_DELLINK
			switch {
			case at.Index == index[i] && !del && at.Name != l.name:
				// The port's interface renamed away: the port lost
				// its interface (one of its name may come).
				l.report(linkGone, "renamed to "+at.Name, at.Index)
				continue
			case at.Index == index[i]:
			case !del && at.Name == l.name:
				// An interface of the port's name with another
				// index: the port's was deleted and re-created.
				if l.get() != linkGone {
					l.report(linkGone, "replaced", at.Index)
				}
				a.log.Info("port's interface re-created", "port", l.name, "ifindex", at.Index, "was", index[i])
				index[i] = at.Index
			default:
				continue
			}
			if !del && at.MTU > 0 && at.MTU != mtu[i] {
				a.log.Info("port MTU changed", "port", l.name, "from", mtu[i], "to", at.MTU)
				a.checkMTU(l.name, at.MTU)
				mtu[i] = at.MTU
				a.ctl.SetMTU(uint8(i), at.MTU)
				a.dhcp.SetPortMTU(uint8(i), at.MTU)
			}
			now, why := linkStateOf(at, del)
			l.report(now, why, at.Index)
		}
	}
}

// linkStateOf is the port state an interface's attributes (deleted: del)
// say, and why when not up.
func linkStateOf(at *netlink.LinkAttrs, del bool) (linkState, string) {
	switch {
	case del:
		return linkGone, "removed"
	case at.Flags&net.FlagUp == 0:
		return linkDown, "set down"
	case at.RawFlags&unix.IFF_LOWER_UP == 0:
		return linkDown, "carrier lost"
	}
	return linkUp, ""
}

// get returns what the kernel said last.
func (l *portLink) get() linkState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.kernel
}

// report records the kernel's latest word on the port's interface, logs
// a change, withdraws the port's next hops when it leaves up, and wakes
// the keeper.
func (l *portLink) report(now linkState, why string, ifindex int) {
	a := l.a
	l.mu.Lock()
	was := l.kernel
	if now == was {
		l.mu.Unlock()
		return
	}
	l.kernel = now
	if was == linkUp {
		l.downs++
	}
	if now == linkUp {
		l.upAt = time.Now()
	}
	l.mu.Unlock()
	switch now {
	case linkGone:
		a.log.Warn("port's interface removed: its queues close; the port re-opens when an interface of its name is up", "port", l.name, "ifindex", ifindex, "reason", why)
	case linkDown:
		a.log.Warn("port link down", "port", l.name, "reason", why)
	case linkUp:
		a.log.Info("port link up", "port", l.name, "ifindex", ifindex)
	}
	if was == linkUp {
		for _, isp := range a.ctl.LinkDown(uint8(l.i)) {
			a.log.Warn("next hop withdrawn: uplink down", "isp", a.ispName(isp), "port", l.name)
		}
	}
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Re-open retries: from reopenRetryMin, doubling, to reopenRetryMax.
const (
	reopenRetryMin = 100 * time.Millisecond
	reopenRetryMax = 5 * time.Second
)

// run is the port's keeper: it makes the port's queues follow its link
// until ctx ends.
func (l *portLink) run(ctx context.Context) {
	a := l.a
	p := a.ports[l.i]
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	var retryC <-chan time.Time
	backoff := reopenRetryMin
	openedAt := uint64(0) // l.downs when the queues were last opened
	// After a re-open the port's next hops are asked for at once and
	// again at probeAfter's steps until they answer (the first request
	// may go out while the far end is still settling).
	probe := time.NewTimer(time.Hour)
	probe.Stop()
	var probeC <-chan time.Time
	probes := 0
	for {
		select {
		case <-ctx.Done():
			retry.Stop()
			probe.Stop()
			return
		case <-l.kick:
		case <-retryC:
			retryC = nil
		case <-probeC:
			probeC = nil
			if !a.probeNextHops(uint8(l.i)) || probes >= len(probeAfter) {
				continue
			}
			probe.Reset(probeAfter[probes])
			probeC = probe.C
			probes++
			continue
		}
		l.mu.Lock()
		kernel, downs, open, upAt := l.kernel, l.downs, l.open, l.upAt
		l.mu.Unlock()
		switch {
		case kernel != linkUp && open:
			a.ctl.SetPortDevice(uint8(l.i), 0) // the fast path leaves it to the engine
			err := p.CloseQueues(ctx, l.i, a.workers)
			if ctx.Err() != nil {
				return
			}
			l.mu.Lock()
			l.open = false
			l.mu.Unlock()
			if err != nil {
				a.log.Warn("port queues closed with errors", "port", l.name, "err", err)
			} else {
				a.log.Info("port queues closed", "port", l.name, "link", kernel.String())
			}
			if kernel == linkGone && l.portal() {
				l.recreatePortal(retry, &retryC, &backoff)
			}
		case kernel == linkGone && !open && l.portal():
			l.recreatePortal(retry, &retryC, &backoff)
		case kernel == linkUp && (!open || downs != openedAt):
			info, err := p.Reopen(ctx, l.i, a.workers)
			if ctx.Err() != nil {
				return
			}
			l.mu.Lock()
			l.failing = err != nil
			if err != nil {
				l.open = false
				l.lastErr = err.Error()
			} else {
				l.open, l.lastErr = true, ""
			}
			l.mu.Unlock()
			if err != nil {
				a.log.Warn("port re-open failed: retrying while the link is up", "port", l.name, "err", err, "retry_in", backoff)
				retry.Reset(backoff)
				retryC = retry.C
				backoff = min(2*backoff, reopenRetryMax)
				continue
			}
			backoff = reopenRetryMin
			openedAt = downs
			a.ctl.SetPortDevice(uint8(l.i), p.Index())
			l.reopened(p, info, time.Since(upAt))
			if a.probeNextHops(uint8(l.i)) {
				probes = 1
				probe.Reset(probeAfter[0])
				probeC = probe.C
			}
		}
	}
}

// portal reports whether the port is the captive portal's link.
func (l *portLink) portal() bool {
	return l.a.portalNS != nil && l.i == l.a.portalIdx
}

// recreatePortal makes the portal's link again after it was deleted (it
// is ispmux's own: both ends went, and the namespace's end is nobody
// else's to restore); its notification then brings the port back. A
// failure is retried like a failed re-open.
func (l *portLink) recreatePortal(retry *time.Timer, retryC *<-chan time.Time, backoff *time.Duration) {
	a := l.a
	if err := a.recreatePortalLink(); err != nil {
		a.log.Warn("portal link not re-created: retrying", "port", l.name, "err", err, "retry_in", *backoff)
		retry.Reset(*backoff)
		*retryC = retry.C
		*backoff = min(2**backoff, reopenRetryMax)
		return
	}
	a.log.Info("portal link re-created", "port", l.name)
}

// recreatePortalLink re-creates the portal's link (the veth, its far end
// in the portal's namespace configured as at start) unless an interface of
// its name exists. The portal's listeners, bound to its address, are
// untouched: they serve again once the address is back.
//
// The far end is configured from inside the namespace, on a goroutine of
// its own: a thread that cannot be switched back (netnsrun.In) stays
// locked and ends with that goroutine, not with the link's.
func (a *Appliance) recreatePortalLink() error {
	pn, cfg := a.portalNS, a.cfg.Portal
	if _, err := netlink.LinkByName(cfg.Interface); err == nil {
		return nil // there already
	}
	la := netlink.NewLinkAttrs()
	la.Name = cfg.Interface
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: portalPeer, PeerNamespace: netlink.NsFd(pn.ns)}); err != nil {
		return fmt.Errorf("portal: create link %s: %w", cfg.Interface, err)
	}
	host, err := netlink.LinkByName(cfg.Interface)
	if err != nil {
		return fmt.Errorf("portal: link %s: %w", cfg.Interface, err)
	}
	pn.hostLink = host
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+cfg.Interface+"/disable_ipv6", []byte("1"), 0)
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("portal: set %s up: %w", cfg.Interface, err)
	}
	done := make(chan error, 1)
	go func() {
		done <- netnsrun.In(pn.ns, func() error {
			return portalLinkInside(pn, cfg, onboardingPools(a.cfg))
		})
	}()
	return <-done
}

// reopened logs a re-open and adopts the interface's MTU. (The keeper then
// asks for the port's next hops at once: resolution would otherwise wait
// for its next periodic request, up to fib.ProbeInterval.)
func (l *portLink) reopened(p *datapath.XDPPort, info datapath.ReopenInfo, sinceUp time.Duration) {
	a := l.a
	args := []any{"port", l.name, "ifindex", info.Ifindex, "link_up_to_open", sinceUp.Round(time.Microsecond),
		"in_workers", info.Took.Round(time.Microsecond), "zerocopy", info.ZeroCopy}
	if info.Ifindex != info.OldIfindex {
		args = append(args, "was_ifindex", info.OldIfindex)
	}
	a.log.Info("port re-opened", args...)
	if info.Replaced != 0 {
		a.log.Warn("replaced an XDP program found on the port's interface", "port", l.name, "prog_id", info.Replaced)
	}
	if info.VLANStripErr != nil {
		a.log.Warn("receive VLAN stripping could not be turned off: 802.1Q tags may be invisible on this port", "port", l.name, "err", info.VLANStripErr)
	}
	if len(info.MAC) > 0 && info.MAC.String() != p.MAC.String() {
		a.log.Warn("port's interface came back with another MAC address: ispmux keeps answering with the one it started with (restart to adopt the new one)",
			"port", l.name, "mac", info.MAC.String(), "answering_with", p.MAC.String())
	}
	if info.MTU > 0 {
		a.ctl.SetMTU(uint8(l.i), info.MTU)
		a.dhcp.SetPortMTU(uint8(l.i), info.MTU)
	}
}

// probeAfter are the waits between a re-opened port's next-hop requests
// while they go unanswered (after these, the resolver's own requests,
// every fib.ProbeInterval).
var probeAfter = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}

// probeNextHops sends an ARP request for the next hop of every uplink on
// port that is not resolved (through worker 0's injection queue, as the
// resolver does) and reports whether it sent any.
func (a *Appliance) probeNextHops(port uint8) bool {
	set := a.state.Up.Load()
	var frame [64]byte
	sent := false
	for i := range set.ISP {
		up := &set.ISP[i]
		if !up.Configured || up.Port != port || up.Gateway == 0 || up.Resolved {
			continue
		}
		n := fib.ARPRequest(frame[:], up.MAC, up.Addr, up.Gateway, up.VLAN, up.VLAN != 0)
		sent = a.workers[0].Inject(port, frame[:n]) || sent
	}
	return sent
}

// ispName names ISP isp (the walled garden's VRF included).
func (a *Appliance) ispName(isp uint8) string {
	if int(isp) < len(a.cfg.ISPs) {
		return a.cfg.ISPs[isp].Name
	}
	return fmt.Sprintf("vrf %d", isp)
}

// watchPorts logs every change of a port's state (a queue whose kernel calls
// fail, such as an interface that went away, is down) until ctx ends. The
// state and the error counts are also in the control socket's status. A
// port whose queues its keeper closed (link down or gone) is left to the
// keeper's own log lines.
func (a *Appliance) watchPorts(ctx context.Context, every time.Duration) {
	down := make([]bool, len(a.ports))
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		links := a.linkStatuses()
		for i, p := range a.ports {
			var st datapath.QueueStats
			for q := range p.NumQueues() {
				st.Add(p.Queue(q).Stats())
			}
			closed := i < len(links) && links[i].State != "up"
			switch {
			case st.Down && !down[i] && !closed:
				a.log.Warn("port down: its socket calls fail (interface gone or link down?)", "port", a.names[i], "errors", st.Errors)
			case !st.Down && down[i] && !closed:
				a.log.Info("port up again", "port", a.names[i], "errors", st.Errors)
			}
			down[i] = st.Down
		}
	}
}
