package appliance

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ispmux/ispmux/internal/sdnotify"
)

// The service manager's view of ispmux, through systemd's notification
// protocol (internal/sdnotify; contrib/systemd/ispmux.service is
// Type=notify with WatchdogSec=): READY=1 once every part runs (Run),
// RELOADING=1 and READY=1 around a SIGHUP's reload (cmd/ispmux),
// STOPPING=1 at the stop, and, with a watchdog, WATCHDOG=1 every half
// interval only while every part that must keep turning has turned: each
// worker has run an iteration (or waits idle, no longer than its
// poll_timeout), the DHCP proxy's timers
// have run (transactions timing out, leases expiring, intents sent) and
// the control plane's loop has (punted frames, the next hops). A part
// stuck in a loop or a lock that keeps the process up but stops it
// forwarding or answering DHCP is a process systemd then kills (SIGABRT:
// the Go runtime writes every goroutine's stack to the journal) and
// restarts; the bindings are durable, so a restart loses none.

// SetNotifier has Run tell the service manager n of its state; call it
// before Run. Without it (or with a Notifier outside systemd) Run tells
// nobody.
func (a *Appliance) SetNotifier(n *sdnotify.Notifier) { a.notify = n }

// SetReloader gives the control socket's POST /reload (`ispmux ctl
// reload`) the command's reload, f: what SIGHUP does (the file read,
// applied or refused, the outcome noted for Status), run to its end
// before the request is answered. Call it before Run; without it the
// socket answers that no reload is available.
func (a *Appliance) SetReloader(f func()) { a.reloader = f }

// liveness is what the watchdog compares from one look to the next.
type liveness struct {
	at       time.Time
	idle     time.Duration // the workers' longest idle wait (poll_timeout)
	workers  []uint64      // each worker's iterations
	sleeping []bool        // each worker in its idle wait
	proxy    uint64        // the DHCP proxy's timers: rounds and work done in them (Progress)
	control  uint64        // the control plane's resolver rounds
}

func (a *Appliance) liveness(now time.Time) liveness {
	l := liveness{at: now, idle: a.cfg.Datapath.PollTimeoutDur, proxy: a.dhcp.Progress(), control: a.ctl.Ticks()}
	for _, w := range a.workers {
		it, _ := w.Loops()
		l.workers = append(l.workers, it)
		l.sleeping = append(l.sleeping, w.Sleeping())
	}
	return l
}

// stalled names the parts that did not turn from prev to now. A worker
// in its idle wait may run no iteration for its poll_timeout; one that
// ran none for longer (and a second more) is stuck in the wait itself
// (a wake-up lost, the timeout not kept).
func stalled(prev, now liveness) []string {
	var s []string
	longWait := now.at.Sub(prev.at) > now.idle+time.Second
	for i := range now.workers {
		if i < len(prev.workers) && now.workers[i] == prev.workers[i] && (!now.sleeping[i] || longWait) {
			s = append(s, fmt.Sprintf("worker %d", i))
		}
	}
	if now.proxy == prev.proxy {
		s = append(s, "dhcp proxy timers")
	}
	if now.control == prev.control {
		s = append(s, "control plane")
	}
	return s
}

// watchdogWindow is the shortest time over which the watchdog judges
// progress: the proxy's and the control plane's timers turn 4 times a
// second, so a shorter WatchdogSec does not make a part look stuck.
const watchdogWindow = time.Second

// watchdog sends WATCHDOG=1 every half of the notifier's watchdog
// interval while every part turns (see above) as look sees them
// (Appliance.liveness), until ctx ends. A part that stalls is logged
// once, with the status line saying it, until all turn again.
func (a *Appliance) watchdog(ctx context.Context, look func(time.Time) liveness) {
	every := a.notify.Watchdog() / 2
	t := time.NewTicker(every)
	defer t.Stop()
	prev := look(time.Now())
	var stuck []string
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if now.Sub(prev.at) >= watchdogWindow {
				cur := look(now)
				s := stalled(prev, cur)
				prev = cur
				switch {
				case len(s) > 0 && !slices.Equal(s, stuck):
					a.log.Error("watchdog: parts of ispmux made no progress; the service manager is not told it lives, and restarts it when WatchdogSec passes so",
						"stalled", strings.Join(s, ", "), "for", every.Round(time.Millisecond))
					a.sendNotify("STATUS=stalled: " + strings.Join(s, ", "))
				case len(s) == 0 && stuck != nil:
					a.log.Warn("watchdog: every part turns again", "was_stalled", strings.Join(stuck, ", "))
					a.sendNotify("STATUS=" + a.readyStatus())
				}
				stuck = s
			}
			if stuck == nil {
				a.sendNotify("WATCHDOG=1")
			}
		}
	}
}

// readyStatus is the status line while forwarding.
func (a *Appliance) readyStatus() string {
	return fmt.Sprintf("forwarding: %d ports, %d workers", len(a.ports), len(a.workers))
}

// sendNotify sends the assignments to the service manager, logging a
// failure.
func (a *Appliance) sendNotify(assignments ...string) {
	if err := a.notify.Send(assignments...); err != nil {
		a.log.Warn("service manager notification failed", "err", err)
	}
}

// NotifyReloading tells the service manager a reload starts; NotifyReloaded
// that it ended (refused or not), ispmux forwarding all along.
func (a *Appliance) NotifyReloading() { a.sendNotify(sdnotify.Reloading()...) }

// NotifyReloaded: see NotifyReloading.
func (a *Appliance) NotifyReloaded() { a.sendNotify("READY=1", "STATUS="+a.readyStatus()) }
