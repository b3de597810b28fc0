// Package appliance assembles a running ispmux from a validated
// configuration: it opens the AF_XDP ports, builds the forwarding state,
// installs static subscribers, starts one datapath worker per queue and the
// control plane, serves the local control socket, and tears everything down
// (XDP programs detached) when its context ends.
//
// Order at start: every table is filled (static bindings installed) before
// any worker forwards a frame, so a restart resumes forwarding for every
// subscriber it knows without waiting for traffic.
package appliance

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ispmux/ispmux/api"
	"github.com/ispmux/ispmux/auth"
	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/dhcpproxy"
	"github.com/ispmux/ispmux/engine"
	"github.com/ispmux/ispmux/fastpath"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/sdnotify"
	"github.com/ispmux/ispmux/metrics"
	"github.com/ispmux/ispmux/portal"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
	"github.com/ispmux/ispmux/webhooks"
)

// SocketName is the control socket's file name inside state_dir.
const SocketName = ctlsock.SocketName

// StoreName is the subscriber store's file name inside state_dir.
const StoreName = ctlsock.StoreName

// commitWindow is the store's group commit window: under concurrent
// binding commits (DHCP ACKs) a leader with a small batch waits up to this
// long for more ACKs to share its two fsyncs; a lone writer never waits.
// bench dhcp at 2000 DORA/s, µs of CPU per DORA: none 469, 1 ms 435–442
// (ACK p50 8.0 → 4.3–4.6 ms, less CPU busy); 2 ms against 1 ms in the same
// 3 runs, 379–387 against 404–415 (ACK p50 3.6–3.9 against 3.4–3.6 ms,
// p99 16–20 against 12–48 ms). Tried again at stop 28, with one P and
// the journal, 5 alternated runs at 2000/s each (bench dhcp --base):
// 1 ms against 2 ms, CPU per DORA 172 against 146 µs, ACK p50 1.7 against
// 2.4 ms but ACK p99 7.9 against 5.1 ms and OFFER p99 6.8 against 4.1
// (the extra CPU lengthens every queue); 4 ms against 2 ms, 134 against
// 156 µs, ACK p50 3.6 against 2.4 ms, ACK p99 10.1 against 7.4 ms.
const commitWindow = 2 * time.Millisecond

// Appliance is a running ispmux.
type Appliance struct {
	cfg   *configs.Config
	log   *slog.Logger
	ports []*datapath.XDPPort
	fast  *fastpath.Maps // [datapath] fastpath = "xdp"; nil: off
	// metricsLn and apiLn are the metrics and API listeners, opened by
	// Start before the ports, served by Run (nil: not served).
	metricsLn, apiLn net.Listener
	names            []string
	state            *engine.State
	ctl              *engine.Control
	workers          []*datapath.Worker
	ispIdx           []uint8
	store            *subscribers.Store
	reg              *registry.Registry
	ten              *tenants.Tenants
	tokens           *auth.Tokens
	api              *api.Server
	hooks            *webhooks.Manager
	dhcp             *dhcpproxy.Proxy
	notify           *sdnotify.Notifier // the service manager (watchdog.go); nil: none
	reloader         func()             // the command's reload (SetReloader); nil: none
	started          time.Time

	// The captive portal (nil when [portal] is off): its namespace and
	// link, and its web server.
	portalNS  *portalNS
	portal    *portal.Server
	portalIdx int // the portal link's port index

	reloadMu sync.Mutex // one Reload at a time
	// restartPending is what the last reload read that only a restart
	// applies (ctl status shows it).
	restartPending atomic.Pointer[pendingRestart]
	// lastReload is the last reload's outcome (nil: none since the
	// start); lastApplied when the file was last applied by one.
	lastReload  atomic.Pointer[reloadOutcome]
	lastApplied atomic.Pointer[time.Time]
	// ispsInForce are the running ISPs with the token files and webhook
	// settings the last reload applied (nil: a.cfg.ISPs, start's); under
	// reloadMu.
	ispsInForce []configs.ISP
	subs        []configs.Subscriber // the subscriber entries in force (Reload replaces them)

	linksMu sync.Mutex
	links   []*portLink // each port's link keeper (links.go), set by Run
}

// portPlan maps each interface named in the config to a port index: access
// interfaces first (the MAC table keys access ports in 4 bits), then
// uplinks.
func portPlan(cfg *configs.Config) (names []string, idx map[string]int) {
	idx = make(map[string]int)
	add := func(n string) {
		if _, ok := idx[n]; !ok {
			idx[n] = len(names)
			names = append(names, n)
		}
	}
	for _, a := range cfg.Access {
		add(a.Interface)
	}
	for _, i := range cfg.ISPs {
		add(i.Uplink)
	}
	if cfg.Portal.Enabled {
		add(cfg.Portal.Interface)
	}
	return names, idx
}

// Start opens the ports and starts forwarding. On error nothing is left
// attached.
func Start(ctx context.Context, cfg *configs.Config, log *slog.Logger) (_ *Appliance, err error) {
	names, idx := portPlan(cfg)
	if len(names) > datapath.MaxPorts {
		return nil, fmt.Errorf("appliance: %d interfaces: at most %d", len(names), datapath.MaxPorts)
	}
	a := &Appliance{cfg: cfg, log: log, names: names, started: time.Now(), subs: cfg.Subscribers}
	defer func() {
		if err != nil {
			for _, ln := range []net.Listener{a.metricsLn, a.apiLn} {
				if ln != nil {
					ln.Close()
				}
			}
			a.closePorts()
			if a.portalNS != nil {
				_ = a.portalNS.close()
			}
			if a.dhcp != nil {
				// The restore's ends of lapsed bindings may be under
				// way: stopped between batches, before the store
				// closes under them.
				a.dhcp.Close()
			}
			if a.store != nil {
				a.store.Close()
			}
		}
	}()
	if err := os.MkdirAll(cfg.Appliance.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("appliance: state dir: %w", err)
	}
	// The store first: a second ispmux on the same state_dir stops here,
	// before it touches an interface.
	a.reg = registry.New()
	a.store, err = subscribers.Open(filepath.Join(cfg.Appliance.StateDir, StoreName), subscribers.Options{CommitWindow: commitWindow, EventRetention: cfg.Appliance.EventRetention, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("appliance: %w", err)
	}
	// The listeners next, before any interface is touched: an address in
	// use stops the start here. Opened by Run, after the ports, a taken
	// metrics port stopped ispmux once it forwarded, XDP attached and
	// detached again (a trial; under systemd's Restart=, every 2 s).
	var lc net.ListenConfig
	if cfg.Metrics.Enabled() {
		if a.metricsLn, err = lc.Listen(ctx, "tcp", cfg.Metrics.Listen); err != nil {
			return nil, fmt.Errorf("appliance: [metrics] listen: %w", err)
		}
	}
	if cfg.ServesAPI() {
		if a.apiLn, err = lc.Listen(ctx, "tcp", cfg.API.Listen); err != nil {
			return nil, fmt.Errorf("appliance: [api] listen: %w", err)
		}
	}
	via, why := a.store.JournalSync()
	attrs := []any{"path", a.store.Path(), "journal_sync", via}
	if why != "" {
		attrs = append(attrs, "journal_sync_why", why)
	}
	log.Info("store open", attrs...)
	if from := a.store.MigratedFrom(); from > 0 {
		// An older ispmux refuses the file from now on: say so once, where
		// the upgrade is watched (a trial upgraded without a word logged).
		log.Warn("store migrated to a newer schema: an older ispmux refuses it now; roll back by restoring the backup taken before the upgrade",
			"path", a.store.Path(), "from_schema", from, "to_schema", subscribers.SchemaVersion)
	}
	if a.store.CreatedByOpen() {
		// A new store numbers its events from the clock (a box rebuilt
		// must not give out its old numbers again): a wrong clock at the
		// first start gives a wrong base, so say which.
		base := a.store.EventBase()
		log.Info("store created: event numbers start after the clock at its creation, in microseconds",
			"event_seq_base", base, "clock", time.UnixMicro(int64(base)).UTC().Format(time.RFC3339))
	}
	if jump := a.store.OpenedFromCopy(); jump > 0 {
		last, _ := a.store.LastEventSeq()
		log.Warn("store opened from a backup copy: event numbers continue past every number the original store may have given out since the backup", "next_event_seq", last+1, "skipped", jump)
	}
	// Webhooks before anything writes events: an ISP whose webhook is new
	// hears from here on, the start's own events included.
	a.hooks, err = webhooks.New(cfg, a.store, log)
	if err != nil {
		return nil, fmt.Errorf("appliance: %w", err)
	}
	// The access and uplink ports first: opening one takes its
	// interface's lock, so a second ispmux on the same interfaces is
	// refused here, before it touches anything of the first (it deleted
	// the running one's portal link, which the portal's port opened
	// later). The portal's link must exist before its port opens.
	dp := cfg.Datapath
	a.ports = make([]*datapath.XDPPort, len(names))
	if dp.FastPath == "xdp" {
		// The fast path's maps before the ports: every port's program
		// reads them. Empty, they send every frame to the engine, until
		// SetOffload below fills them.
		if a.fast, err = fastpath.New(dp.MACTableSize); err != nil {
			return nil, fmt.Errorf("appliance: %w", err)
		}
	}
	openPort := func(i int) error {
		n := names[i]
		xc := datapath.XDPConfig{
			Interface: n, Queues: dp.Queues, Frames: dp.Frames, FrameSize: dp.FrameSize,
			FillRing: dp.FillRing, CompletionRing: dp.CompletionRing, RXRing: dp.RxRing, TXRing: dp.TxRing,
			AttachMode: dp.AttachMode, BindMode: dp.BindMode,
		}
		if a.fast != nil {
			xc.Program = func(qidconf, xsks *ebpf.Map) (*ebpf.Program, error) {
				ifi, err := net.InterfaceByName(n)
				if err != nil {
					return nil, err
				}
				return a.fast.Program(uint8(i), mac48(ifi.HardwareAddr), qidconf, xsks)
			}
		}
		p, err := datapath.OpenXDP(xc)
		if err != nil {
			if dp.BindMode == "zerocopy" && (errors.Is(err, syscall.EOPNOTSUPP) || strings.Contains(err.Error(), "not supported")) {
				err = fmt.Errorf("%w (interface %s has no zero-copy AF_XDP support: set [datapath] bind_mode = \"auto\" or \"copy\")", err, n)
			}
			return fmt.Errorf("appliance: %w", err)
		}
		a.ports[i] = p
		if p.VLANStripOff {
			log.Info("turned receive VLAN stripping off (tags must reach the datapath in the frame)", "interface", n)
		} else if p.VLANStripErr != nil {
			log.Warn("receive VLAN stripping could not be turned off: 802.1Q tags may be invisible on this port", "interface", n, "err", p.VLANStripErr)
		}
		if p.Replaced != 0 {
			log.Warn("replaced an XDP program left attached (an earlier ispmux did not exit cleanly?)", "interface", n, "prog_id", p.Replaced)
		}
		log.Info("port open", "interface", n, "index", idx[n], "mac", p.MAC.String(),
			"queues", p.NumQueues(), "attach", dp.AttachMode, "zerocopy", p.ZeroCopy)
		return nil
	}
	for i, n := range names {
		if cfg.Portal.Enabled && n == cfg.Portal.Interface {
			continue
		}
		if err := openPort(i); err != nil {
			return nil, err
		}
	}
	if cfg.Portal.Enabled {
		if a.portalNS, err = openPortalNS(cfg.Portal, onboardingPools(cfg), len(cfg.ISPs)); err != nil {
			return nil, fmt.Errorf("appliance: %w", err)
		}
		a.portalIdx = idx[cfg.Portal.Interface]
		log.Info("portal namespace ready", "link", cfg.Portal.Interface, "portal", cfg.Portal.Addr, "next_hop", a.portalNS.gateway)
		if err := openPort(a.portalIdx); err != nil {
			return nil, err
		}
	}

	pcs := make([]engine.PortConfig, len(names))
	for i, p := range a.ports {
		pcs[i] = engine.PortConfig{Name: names[i], MAC: mac48(p.MAC), Uplinks: map[uint16]uint8{}, MTU: ifMTU(names[i])}
		a.checkMTU(names[i], pcs[i].MTU)
	}
	for _, ac := range cfg.Access {
		pi := idx[ac.Interface]
		pcs[pi].AccessVLANs = append(pcs[pi].AccessVLANs, uint16(ac.VLAN))
		if ac.Addr.IsValid() {
			if pcs[pi].AccessAddrs == nil {
				pcs[pi].AccessAddrs = map[uint16]uint32{}
			}
			pcs[pi].AccessAddrs[uint16(ac.VLAN)] = engine.IP4(ac.Addr)
		}
	}
	for _, isp := range cfg.ISPs {
		pi := idx[isp.Uplink]
		pcs[pi].Uplinks[uint16(isp.VLAN)] = uint8(isp.Index)
	}
	if cfg.Portal.Enabled {
		pcs[a.portalIdx].Uplinks[0] = binding.GardenVRF
	}
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	a.state, err = engine.NewState(pcs, dp.MACTableSize, binary.LittleEndian.Uint64(seed[:]))
	if err != nil {
		return nil, err
	}

	// Workers: worker q owns queue q of every port.
	for q := range dp.Queues {
		qs := make([]datapath.Queue, len(a.ports))
		for i, p := range a.ports {
			qs[i] = p.Queue(q)
		}
		w, err := datapath.NewWorker(q, qs, a.state.NewProcessor(), dp.Batch, dp.PollTimeoutDur)
		if err != nil {
			return nil, err
		}
		a.workers = append(a.workers, w)
	}
	a.ctl = engine.NewControl(a.state, a.workers[0], log)
	setDHCPBudget(a.ctl, cfg.DHCP)
	isps := make([]string, len(cfg.ISPs))
	for i, isp := range cfg.ISPs {
		isps[i] = isp.Name
	}
	circuits := make([]tenants.Circuit, 0, len(cfg.Access))
	for _, ac := range cfg.Access {
		circuits = append(circuits, tenants.Circuit{Access: ac.Name, VLAN: uint16(ac.VLAN)})
	}
	a.ten = tenants.New(tenants.Config{ISPs: isps, MaxDevices: dp.MACTableSize, Circuits: circuits}, a.store, a.reg, nil, a.ctl, log)
	// The stored bindings are read (one goroutine) while the registry
	// loads (this one): at a million subscribers each is seconds of CPU,
	// and the restore's checks need both.
	a.dhcp = dhcpproxy.New(a.dhcpConfig(idx), a.store, a.reg, a.ctl, a.workers[0], log)
	loaded := a.dhcp.LoadBindings(time.Now())
	if _, err := a.syncRegistrations(); err != nil {
		return nil, err
	}

	for _, isp := range cfg.ISPs {
		p := a.ports[idx[isp.Uplink]]
		a.ctl.ConfigureISP(uint8(isp.Index), fib.Uplink{
			Port: uint8(idx[isp.Uplink]), VLAN: uint16(isp.VLAN), MAC: mac48(p.MAC),
			Addr: engine.IP4(isp.Prefix.Addr()), PrefixLen: isp.Prefix.Bits(),
			Gateway: engine.IP4(isp.NextHopAddr),
		})
		a.ctl.NameISP(uint8(isp.Index), isp.Name)
		a.ispIdx = append(a.ispIdx, uint8(isp.Index))
	}
	if cfg.Portal.Enabled {
		if err := a.configureGarden(a.portalIdx); err != nil {
			return nil, err
		}
	}
	a.subs = a.withoutHeld(a.subs)
	statics := staticBindings(cfg.Access, a.subs, idx)
	a.ctl.Reserve(len(statics)) // the DHCP bindings' room is reserved when they are restored
	for _, b := range statics {
		if err := a.ctl.Bind(b); err != nil {
			return nil, fmt.Errorf("appliance: static subscriber %s: %w", engine.MACString(b.MAC), err)
		}
	}
	static := len(statics)
	a.ten.SetProxy(a.dhcp)
	a.tokens, err = auth.LoadTokens(auth.TokenFilesFromConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("appliance: %w", err)
	}
	a.api = api.New(cfg.API, a.ten, a.tokens, log)
	if cfg.Portal.Enabled {
		if a.portal, err = a.newPortal(); err != nil {
			return nil, fmt.Errorf("appliance: %w", err)
		}
	}
	a.api.SetWebhookStatus(a.hooks.StatusOf)
	a.dhcp.SetStatic(staticMACs(a.subs))
	a.ctl.OnPunt = func(p *engine.Punted) { a.dhcp.HandleFrame(p.Port, p.Frame()) }
	leased, err := a.dhcp.RestoreLoaded(loaded)
	if err != nil {
		return nil, fmt.Errorf("appliance: %w", err)
	}
	if a.fast != nil {
		// After the restore: the tables are copied in batches.
		start := time.Now()
		a.ctl.SetOffload(a.fast, func(p uint8) int { return a.ports[p].Index() })
		log.Info("fast path on: bound subscribers' traffic is forwarded in the XDP hook", "copied_in", time.Since(start).Round(time.Millisecond))
	}
	log.Info("tables ready", "static_bindings", static, "dhcp_bindings", leased, "isps", len(cfg.ISPs))
	return a, nil
}

// Run forwards until ctx ends, then stops the workers and detaches every
// port. The control socket is served meanwhile.
func (a *Appliance) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(a.workers)+1)
	for _, w := range a.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(); err != nil {
				errc <- err
				cancel()
			}
		}()
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		a.ctl.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		a.watchPorts(ctx, time.Second)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.watchLinks(ctx)
	}()
	go func() {
		defer wg.Done()
		a.dhcp.Run(ctx)
	}()
	srv, err := ctlsock.Serve(filepath.Join(a.cfg.Appliance.StateDir, SocketName),
		&ctlsock.Server{Status: a.Status, Store: a.store, API: a.api.SocketHandler(), Log: a.log, Reload: a.reloader})
	if err != nil {
		a.log.Warn("control socket unavailable", "err", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := a.hooks.Run(ctx); err != nil {
			a.log.Warn("webhooks stopped", "err", err)
		}
	}()
	if a.metricsLn != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := metrics.ServeListener(ctx, a.metricsLn, a.cfg.Metrics, metrics.Handler(metrics.New(a.metricsSource())), a.log); err != nil {
				errc <- fmt.Errorf("metrics on %s: %w", a.cfg.Metrics.Listen, err)
				cancel()
			}
		}()
	}
	if a.portal != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.portal.Serve(ctx, a.portalNS.http, a.portalNS.https); err != nil {
				errc <- fmt.Errorf("portal: %w", err)
				cancel()
			}
		}()
	}
	if a.apiLn == nil {
		a.log.Info("api: no token files configured; the tenant API is served on the control socket only")
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.api.ServeUntil(ctx, a.apiLn); err != nil {
				errc <- fmt.Errorf("api on %s: %w", a.cfg.API.Listen, err)
				cancel()
			}
		}()
	}
	a.log.Info("forwarding", "workers", len(a.workers), "ports", len(a.ports))
	a.sendNotify("READY=1", "STATUS="+a.readyStatus())
	if a.notify.Watchdog() > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.watchdog(ctx, a.liveness)
		}()
	}
	<-ctx.Done()
	a.log.Info("stopping")
	a.sendNotify("STOPPING=1", "STATUS=stopping")
	if srv != nil {
		_ = srv.Close()
	}
	for _, w := range a.workers {
		w.Stop()
	}
	wg.Wait()
	// Their pending summaries, before the store closes.
	a.dhcp.Close()
	a.ten.Close()
	a.logCounters()
	closeErr := errors.Join(a.closePorts(), closeStore(a.store, a.log))
	if a.portalNS != nil {
		closeErr = errors.Join(closeErr, a.portalNS.close())
	}
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	errs = append(errs, closeErr)
	err = errors.Join(errs...)
	if err != nil {
		a.log.Error("stopped", "err", err)
	} else {
		a.log.Info("stopped: ports closed, store closed")
	}
	return err
}

// xdpHeadroom is what the kernel keeps in front of a frame in a UMEM
// chunk (XDP_PACKET_HEADROOM): a port's frames are at most frame_size
// minus it.
const xdpHeadroom = 256

// maxMTU is the largest MTU whose frames (an Ethernet header and one
// VLAN tag on top) a UMEM frame of frameSize holds.
func maxMTU(frameSize int) int { return frameSize - xdpHeadroom - 18 }

// checkMTU warns when port's MTU lets the link carry frames longer than a
// UMEM frame holds: the kernel drops them before ispmux sees them, and no
// counter of ispmux's says so (found by a new-user trial: an access MTU
// raised to 3000 on a running appliance, adopted without a word).
func (a *Appliance) checkMTU(port string, mtu int) {
	if max := maxMTU(a.cfg.Datapath.FrameSize); mtu > max {
		fix := "lower the MTU or set [datapath] frame_size = 4096"
		if a.cfg.Datapath.FrameSize >= 4096 {
			fix = "lower the MTU (frames span one UMEM frame: no XDP multi-buffer)"
		}
		a.log.Warn("port MTU larger than a UMEM frame holds: longer frames are dropped by the kernel before ispmux sees them, uncounted; "+fix,
			"port", port, "mtu", mtu, "max_mtu", max, "frame_size", a.cfg.Datapath.FrameSize)
	}
}

// ifMTU is the interface's MTU, or 0 when it cannot be read.
func ifMTU(name string) int {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0
	}
	return ifi.MTU
}

func mac48(hw net.HardwareAddr) uint64 {
	var b [6]byte
	copy(b[:], hw)
	return engine.MAC48(b)
}

// The tenant service counts bindings per ISP from the proxy's lease table.
var _ tenants.LeaseCounter = (*dhcpproxy.Proxy)(nil)
