package appliance

import (
	"context"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/datapath"
)

// watchLinks follows the kernel's link notifications for the ports: a port
// whose interface loses carrier, goes administratively down or is removed
// is reported at once (the socket errors watchPorts sees come only when
// something is sent), and every ISP whose uplink it carries has its next
// hop withdrawn, so ispmux stops sending to a MAC it cannot reach and the
// DHCP proxy refuses that ISP's subscribers saying why. Resolution resumes
// by itself when the link returns.
func (a *Appliance) watchLinks(ctx context.Context) {
	updates := make(chan netlink.LinkUpdate, 64)
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
		a.log.Warn("link notifications unavailable: link loss is seen only through socket errors", "err", err)
		return
	}
	const (
		up = iota
		down
		gone
	)
	state := make([]int, len(a.ports))
	mtu := make([]int, len(a.ports))
	for i, n := range a.names {
		mtu[i] = ifMTU(n)
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
		for i, p := range a.ports {
			if p.Index() != at.Index || state[i] == gone {
				continue
			}
			if u.Header.Type != unix.RTM_DELLINK && at.MTU > 0 && at.MTU != mtu[i] {
				a.log.Info("port MTU changed", "port", a.names[i], "from", mtu[i], "to", at.MTU)
				mtu[i] = at.MTU
				a.ctl.SetMTU(uint8(i), at.MTU)
				a.dhcp.SetUplinkMTU(uint8(i), at.MTU)
			}
			now := up
			switch {
			case u.Header.Type == unix.RTM_DELLINK:
				now = gone
			case at.Flags&net.FlagUp == 0 || at.RawFlags&unix.IFF_LOWER_UP == 0:
				now = down
			}
			switch {
			case now == gone:
				a.log.Warn("port removed: its interface is gone (restart ispmux once it is back)", "port", a.names[i])
			case now == down && state[i] == up:
				why := "carrier lost"
				if at.Flags&net.FlagUp == 0 {
					why = "set down"
				}
				a.log.Warn("port link down", "port", a.names[i], "reason", why)
			case now == up && state[i] == down:
				a.log.Info("port link up", "port", a.names[i])
			}
			if now != up && state[i] == up {
				for _, isp := range a.ctl.LinkDown(uint8(i)) {
					a.log.Warn("next hop withdrawn: uplink down", "isp", a.cfg.ISPs[isp].Name, "port", a.names[i])
				}
			}
			state[i] = now
		}
	}
}

// watchPorts logs every change of a port's state (a queue whose kernel calls
// fail, such as an interface that went away, is down) until ctx ends. The
// state and the error counts are also in the control socket's status.
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
		for i, p := range a.ports {
			var st datapath.QueueStats
			for q := range p.NumQueues() {
				st.Add(p.Queue(q).Stats())
			}
			switch {
			case st.Down && !down[i]:
				a.log.Warn("port down: its socket calls fail (interface gone or link down?)", "port", a.names[i], "errors", st.Errors)
			case !st.Down && down[i]:
				a.log.Info("port up again", "port", a.names[i], "errors", st.Errors)
			}
			down[i] = st.Down
		}
	}
}
