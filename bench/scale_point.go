package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/lab"
)

// Measuring one point of bench scale: the point's state seeded, then runs
// starts of ispmux on it, each timed to "forwarding", with its memory
// (RssAnon after a GC, VmHWM from /proc), a reload and the ctl pages;
// logWatch follows ispmux's log lines.

// scaler measures the points of one run in one lab.
type scaler struct {
	o   *scaleOptions
	t   *lab.Topology
	pr  *progress
	tmp string
}

func (s *scaler) dir(n int, kind string) string {
	return filepath.Join(s.tmp, fmt.Sprintf("%s-%d", kind, n))
}

// point seeds and measures one point: runs starts of ispmux on the same
// state, each with a reload and the ctl pages.
func (s *scaler) point(ctx context.Context, n int, kind string, runs int) (ScalePoint, error) {
	p := ScalePoint{Subscribers: n, Kind: kind, Runs: runs}
	dir := s.dir(n, kind)
	stateDir := filepath.Join(dir, "state")
	if err := os.MkdirAll(stateDir, 0o750); err != nil {
		return p, err
	}
	cfgPath := filepath.Join(dir, "ispmux.toml")
	macTable := max(1<<20, n+1024)
	static := 0
	if kind == KindStatic {
		static = n
	}
	var isps []string
	for _, isp := range s.t.ISPs {
		isps = append(isps, isp.Name)
	}
	t0 := time.Now()
	s.pr.set("%s %s: seeding", kind, humanCount(n))
	if err := os.WriteFile(cfgPath, scaleConfig(s.t, stateDir, macTable, static, nil), 0o644); err != nil {
		return p, err
	}
	if (kind == KindDHCP || kind == KindLapsed) && n > 0 {
		err := seedScaleStore(ctx, filepath.Join(stateDir, appliance.StoreName), n, isps, s.t.Appliance.Access[0].Name, true, kind == KindLapsed,
			func(what string, done int) {
				s.pr.set("%s %s: seeding %s: %d of %d", kind, humanCount(n), what, done, n)
			})
		if err != nil {
			return p, err
		}
	}
	if kind == KindImport && n > 0 {
		err := seedScaleCustomers(ctx, filepath.Join(stateDir, appliance.StoreName), dir, n, isps,
			func(what string, done int) {
				s.pr.set("%s %s: seeding %s: %d of %d", kind, humanCount(n), what, done, n)
			})
		if err != nil {
			return p, err
		}
	}
	pristine := filepath.Join(dir, "pristine")
	if kind == KindLapsed {
		if err := copyStoreFiles(stateDir, pristine); err != nil {
			return p, err
		}
	}
	p.SeedS = round(time.Since(t0).Seconds(), 3)
	var restarts, restartCPU, reloads, lists, rss, idle []float64
	var extra []int
	var lapsedEnded []float64
	for run := range runs {
		if kind == KindLapsed && run > 0 {
			// The start after the outage again: the last one ended
			// what lapsed.
			s.pr.set("%s %s run %d: the seeded store back", kind, humanCount(n), run+1)
			if err := copyStoreFiles(pristine, stateDir); err != nil {
				return p, err
			}
		}
		m, err := s.run(ctx, kind, n, run, cfgPath, stateDir, &extra)
		if err != nil {
			return p, err
		}
		if m.importS > 0 {
			p.ImportS = round(m.importS, 3)
			p.ImportDevicesPerS = round(float64(n)/m.importS, 0)
			p.ImportPeakRSSBytes = m.importPeak
		}
		if run == 0 {
			p.FirstStartS = round(m.start, 3)
			p.FirstStartCPUS = round(m.startCPU, 2)
			p.PeakRSSBytes = m.peak
		} else {
			restarts = append(restarts, m.start)
			restartCPU = append(restartCPU, m.startCPU)
		}
		if m.lapsedEnded > 0 {
			lapsedEnded = append(lapsedEnded, m.lapsedEnded)
		}
		reloads = append(reloads, m.reload)
		lists = append(lists, m.list)
		rss = append(rss, float64(m.rssAnon))
		idle = append(idle, m.idleCPU)
		if run == 0 {
			store := filepath.Join(stateDir, appliance.StoreName)
			if st, err := os.Stat(store); err == nil {
				p.StoreBytes = st.Size()
				// The binding journal's two files beside it (at most
				// 8 MiB each).
				for _, suffix := range []string{".journal", ".journal.1"} {
					if jst, err := os.Stat(store + suffix); err == nil {
						p.StoreBytes += jst.Size()
					}
				}
				if n > 0 {
					p.StoreBytesPerSubscriber = round(float64(p.StoreBytes)/float64(n), 1)
				}
			}
		}
	}
	if n > 0 {
		// Compaction, ispmux stopped: the store as the runs left it.
		s.pr.set("%s %s: ispmux compact", kind, humanCount(n))
		c, err := s.compact(ctx, cfgPath, filepath.Join(stateDir, appliance.StoreName))
		if err != nil {
			return p, err
		}
		p.CompactS, p.CompactPeakRSSBytes = round(c.s, 3), c.peak
		p.CompactBeforeBytes, p.CompactAfterBytes = c.before, c.after
	}
	if len(restarts) > 0 { // one start (the base point) measures no restart
		med, _, _ := median(restartCPU)
		p.RestartCPUS = round(med, 2)
		med, lo, hi := median(restarts)
		p.RestartS, p.RestartMinS, p.RestartMaxS = round(med, 3), round(lo, 3), round(hi, 3)
	}
	if len(lapsedEnded) > 0 {
		med, _, _ := median(lapsedEnded)
		p.LapsedEndedS = round(med, 3)
	}
	med, lo, hi := median(reloads)
	p.ReloadS, p.ReloadMinS, p.ReloadMaxS = round(med, 3), round(lo, 3), round(hi, 3)
	med, _, _ = median(lists)
	p.ListS = round(med, 3)
	med, _, _ = median(rss)
	p.RSSAnonBytes = int64(med)
	med, _, _ = median(idle)
	p.IdleCPUPct, p.IdleWindowS = round(med, 2), s.o.idleWindow.Seconds()
	return p, nil
}

// runMeasure is what one start of ispmux measured.
type runMeasure struct {
	start, reload, list float64
	startCPU            float64 // ispmux's CPU time (user + system) at "forwarding" (lapsed: at the lapsed ends)
	lapsedEnded         float64 // lapsed points: from exec to the lapsed bindings ended
	rssAnon, peak       int64
	idleCPU             float64 // percent of one CPU, settled, nothing happening
	importS             float64 // import points' first run: the device import
	importPeak          int64   // ispmux's VmHWM right after it
}

// run starts ispmux once on the point's state and measures the start,
// RssAnon after a GC, a reload with one added entry and the ctl pages,
// then stops it (SIGTERM).
func (s *scaler) run(ctx context.Context, kind string, n, run int, cfgPath, stateDir string, extra *[]int) (m runMeasure, err error) {
	label := fmt.Sprintf("%s %s run %d", kind, humanCount(n), run+1)
	argv := []string{"ip", "netns", "exec", s.t.Appliance.NS, s.o.exe, "run", "-c", cfgPath}
	lw := &logWatch{want: map[string]chan struct{}{}}
	forwarding := lw.expect("msg=forwarding ")
	lapsedEnded := lw.expect(`msg="dhcp: bindings that lapsed while ispmux was stopped`)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), gcEnv+"=1")
	cmd.Stdout, cmd.Stderr = lw, lw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	s.pr.set("%s: starting ispmux", label)
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return m, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	defer func() {
		if exited {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case werr := <-done:
			if werr != nil && err == nil {
				err = fmt.Errorf("ispmux exit: %v%s", werr, lw.tail())
			}
		case <-time.After(2 * time.Minute):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			if err == nil {
				err = fmt.Errorf("ispmux did not exit within 2 min of SIGTERM; killed%s", lw.tail())
			}
		}
	}()
	wait := func(ch chan struct{}, what string, limit time.Duration) error {
		select {
		case <-ch:
			return nil
		case werr := <-done:
			exited = true
			return fmt.Errorf("ispmux exited before %s: %v%s", what, werr, lw.tail())
		case <-time.After(limit):
			return fmt.Errorf("no %s within %v%s", what, limit, lw.tail())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.pr.set("%s: waiting for forwarding", label)
	if err := wait(forwarding, "forwarding", s.o.timeout); err != nil {
		return m, err
	}
	m.start = time.Since(t0).Seconds()
	if kind == KindLapsed && n > 0 {
		s.pr.set("%s: waiting for the lapsed bindings' ends", label)
		if err := wait(lapsedEnded, "the lapsed bindings' ends", s.o.timeout); err != nil {
			return m, err
		}
		m.lapsedEnded = time.Since(t0).Seconds()
	}
	pid := cmd.Process.Pid
	if _, ticks, err := readPIDStat(pid); err == nil {
		m.startCPU = float64(ticks) / clockTicks
	}
	if kind == KindImport && n > 0 && run == 0 {
		s.pr.set("%s: device import of %d", label, n)
		if m.importS, err = s.importDevices(ctx, filepath.Join(stateDir, appliance.SocketName), filepath.Dir(cfgPath)); err != nil {
			return m, err
		}
		if _, m.importPeak, err = procMem(pid); err != nil {
			return m, err
		}
	}

	// RssAnon after a GC, once it stops moving.
	s.pr.set("%s: RssAnon after a GC", label)
	if err := sleep(ctx, time.Second); err != nil {
		return m, err
	}
	if m.rssAnon, err = settledRSSAnon(ctx, pid); err != nil {
		return m, err
	}

	// Idle CPU: nothing happens for a window.
	s.pr.set("%s: idle CPU over %v", label, s.o.idleWindow)
	if m.idleCPU, err = idleCPU(ctx, pid, s.o.idleWindow); err != nil {
		return m, err
	}

	// A reload with one change: one more [[subscriber]] entry.
	s.pr.set("%s: reload", label)
	*extra = append(*extra, n+len(*extra))
	macTable := max(1<<20, n+1024)
	static := 0
	if kind == KindStatic {
		static = n
	}
	if err := os.WriteFile(cfgPath, scaleConfig(s.t, stateDir, macTable, static, *extra), 0o644); err != nil {
		return m, err
	}
	reloaded := lw.expect("msg=reloaded ")
	refused := lw.expect("level=ERROR")
	t1 := time.Now()
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return m, err
	}
	select {
	case <-reloaded:
	case <-refused:
		return m, fmt.Errorf("reload failed%s", lw.tail())
	case werr := <-done:
		exited = true
		return m, fmt.Errorf("ispmux exited during the reload: %v%s", werr, lw.tail())
	case <-time.After(s.o.timeout):
		return m, fmt.Errorf("no reloaded within %v%s", s.o.timeout, lw.tail())
	case <-ctx.Done():
		return m, ctx.Err()
	}
	m.reload = time.Since(t1).Seconds()

	// The ctl pages.
	s.pr.set("%s: ctl pages", label)
	sock := filepath.Join(stateDir, appliance.SocketName)
	t2 := time.Now()
	for _, what := range []string{"devices", "bindings"} {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		out, err := exec.CommandContext(cctx, s.o.exe, "ctl", "--socket", sock, what, "--limit", "1000").CombinedOutput()
		cancel()
		if err != nil {
			return m, fmt.Errorf("ctl %s: %v: %s", what, err, truncate(string(out), 200))
		}
	}
	m.list = time.Since(t2).Seconds()
	if _, m.peak, err = procMem(pid); err != nil {
		return m, err
	}
	s.pr.set("%s: stopping ispmux", label)
	return m, nil
}

// importDevices attaches an import point's devices through the control
// socket sock, `ispmux ctl device-import` of each ISP's file in dir in
// turn (importFile), and returns the time they took (the first exec to
// the last exit). A line refused fails it (ctl exits 1).
func (s *scaler) importDevices(ctx context.Context, sock, dir string) (float64, error) {
	t0 := time.Now()
	for _, isp := range s.t.ISPs {
		// The API's own limit: a bulk import's deadline is 30 min.
		cctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		out, err := exec.CommandContext(cctx, s.o.exe, "ctl", "--socket", sock, "device-import", isp.Name, importFile(dir, isp.Name), "--errors").CombinedOutput()
		cancel()
		if err != nil {
			return 0, fmt.Errorf("ctl device-import %s: %v: %s", isp.Name, err, truncate(string(out), 400))
		}
	}
	return time.Since(t0).Seconds(), nil
}

// compactMeasure is what one `ispmux compact` measured.
type compactMeasure struct {
	s             float64
	peak          int64 // maxrss, bytes
	before, after int64 // the store file's size
}

// compact runs `ispmux compact -c cfgPath` (ispmux stopped) on the store
// at store, timed, with its peak RSS.
func (s *scaler) compact(ctx context.Context, cfgPath, store string) (c compactMeasure, err error) {
	if st, err := os.Stat(store); err == nil {
		c.before = st.Size()
	}
	cctx, cancel := context.WithTimeout(ctx, s.o.timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, s.o.exe, "compact", "-c", cfgPath)
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	c.s = time.Since(t0).Seconds()
	if err != nil {
		return c, fmt.Errorf("ispmux compact: %v: %s", err, truncate(string(out), 400))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		c.peak = ru.Maxrss * 1024 // kB on Linux
	}
	if st, err := os.Stat(store); err == nil {
		c.after = st.Size()
	}
	return c, nil
}

// idleCPU is process pid's CPU time (user + system, all threads) over
// window, in percent of one CPU.
func idleCPU(ctx context.Context, pid int, window time.Duration) (float64, error) {
	if window <= 0 {
		return 0, nil
	}
	_, t0, err := readPIDStat(pid)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := sleep(ctx, window); err != nil {
		return 0, err
	}
	_, t1, err := readPIDStat(pid)
	if err != nil {
		return 0, err
	}
	return 100 * float64(t1-t0) / clockTicks / time.Since(start).Seconds(), nil
}

// settledRSSAnon asks the process for a GC (SIGUSR1, see scale_gc.go) and
// returns its RssAnon once two readings 500 ms apart differ by less than
// 1 % (at most 10 s).
func settledRSSAnon(ctx context.Context, pid int) (int64, error) {
	var last int64 = -1
	for range 20 {
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
			return 0, err
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return 0, err
		}
		cur, _, err := procMem(pid)
		if err != nil {
			return 0, err
		}
		if last >= 0 && abs64(cur-last)*100 < last {
			return cur, nil
		}
		last = cur
	}
	return last, nil
}

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// procMem reads RssAnon and VmHWM (bytes) from /proc/PID/status.
func procMem(pid int) (rssAnon, peak int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseProcMem(string(data))
}

// parseProcMem extracts RssAnon and VmHWM (bytes) from a /proc/PID/status
// text.
func parseProcMem(s string) (rssAnon, peak int64, err error) {
	found := 0
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		v, perr := strconv.ParseInt(f[1], 10, 64)
		if perr != nil {
			continue
		}
		switch f[0] {
		case "RssAnon:":
			rssAnon, found = v*1024, found|1
		case "VmHWM:":
			peak, found = v*1024, found|2
		}
	}
	if found != 3 {
		return 0, 0, errors.New("/proc/PID/status: no RssAnon or VmHWM")
	}
	return rssAnon, peak, nil
}

// logWatch is ispmux's stdout and stderr: it keeps the tail and closes a
// channel the first time a line containing an expected substring is
// written after expect was called.
type logWatch struct {
	mu   sync.Mutex
	part []byte
	want map[string]chan struct{}
	last tailBuffer
}

// expect returns a channel closed when a later line contains s.
func (l *logWatch) expect(s string) chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := make(chan struct{})
	l.want[s] = ch
	return ch
}

func (l *logWatch) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.max == 0 {
		l.last.max = 8192
	}
	_, _ = l.last.Write(p)
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		line := string(l.part[:i])
		l.part = l.part[i+1:]
		for s, ch := range l.want {
			if strings.Contains(line, s) {
				close(ch)
				delete(l.want, s)
			}
		}
	}
	l.part = append([]byte(nil), l.part...)
	return len(p), nil
}

// tail returns the last lines written, for error messages.
func (l *logWatch) tail() string { return errTail(l.last.String()) }

// copyStoreFiles copies the store file and its journal's files from
// directory from into to (created), replacing those there, and writes
// them out to disk (fsync, and to's directory): a lapsed point copies the
// seeded store back before each run, and ~700 MB at 1M left dirty in the
// page cache would be written out by the run's first fdatasync, inside
// its restart_s (syncState, the seed's, for the first start).
func copyStoreFiles(from, to string) error {
	if err := os.MkdirAll(to, 0o750); err != nil {
		return err
	}
	for _, suffix := range []string{"", ".journal", ".journal.1"} {
		name := appliance.StoreName + suffix
		src, err := os.Open(filepath.Join(from, name))
		if errors.Is(err, os.ErrNotExist) {
			_ = os.Remove(filepath.Join(to, name))
			continue
		}
		if err != nil {
			return err
		}
		dst, err := os.OpenFile(filepath.Join(to, name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
		if err == nil {
			_, err = io.Copy(dst, src)
			if err == nil {
				err = dst.Sync()
			}
			err = errors.Join(err, dst.Close())
		}
		src.Close()
		if err != nil {
			return fmt.Errorf("copy %s: %w", name, err)
		}
	}
	return syncPath(to)
}
