package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ispmux/ispmux/api/client"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
)

// bench kill9's side of ispmux: its runs (started, SIGKILLed, stopped),
// the bindings listed over its control socket, what /proc tells of it,
// its log's release lines and its stored release events.

// list returns every binding over the control socket, MAC → address.
func (k *kill9) list(ctx context.Context) (map[subscribers.MAC]netip.Addr, float64, error) {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", k.sock)
		},
	}, Timeout: time.Minute}
	defer c.CloseIdleConnections()
	got := make(map[subscribers.MAC]netip.Addr, k.o.subscribers+k.o.clients)
	t0 := time.Now()
	after := ""
	for {
		url := "http://ispmux/v1/bindings?limit=1000"
		if after != "" {
			url += "&after=" + after
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, 0, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, 0, fmt.Errorf("list bindings: %w", err)
		}
		var page struct {
			Items []struct {
				MAC string     `json:"mac"`
				IP  netip.Addr `json:"ip"`
			} `json:"items"`
			Next string `json:"next"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return nil, 0, fmt.Errorf("list bindings: %s: %v", resp.Status, err)
		}
		for _, b := range page.Items {
			hw, err := net.ParseMAC(b.MAC)
			if err != nil || len(hw) != 6 {
				return nil, 0, fmt.Errorf("list bindings: MAC %q", b.MAC)
			}
			got[subscribers.MAC(hw)] = b.IP
		}
		if page.Next == "" {
			break
		}
		after = page.Next
		k.pr.set("listing the bindings: %d", len(got))
	}
	return got, time.Since(t0).Seconds(), nil
}

// k9Proc is one run of ispmux.
type k9Proc struct {
	cmd        *exec.Cmd
	lw         *logWatch
	done       chan error
	exited     bool
	t0, fwdAt  time.Time
	forwarding chan struct{}
	log        *os.File // the run's log (--out/kill9-ispmux-NN.log)
	logPath    string
}

func (k *kill9) start() (*k9Proc, error) {
	p := &k9Proc{lw: &logWatch{want: map[string]chan struct{}{}}, done: make(chan error, 1)}
	p.forwarding = p.lw.expect("msg=forwarding ")
	p.cmd = exec.Command("ip", "netns", "exec", k.t.Appliance.NS, k.o.exe, "run", "-c", k.cfg)
	k.runs++
	var out io.Writer = p.lw
	p.logPath = filepath.Join(k.o.out, fmt.Sprintf("kill9-ispmux-%02d.log", k.runs))
	if f, err := os.Create(p.logPath); err == nil {
		p.log = f
		out = io.MultiWriter(p.lw, f)
	}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p.t0 = time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		err := p.cmd.Wait()
		if p.log != nil {
			p.log.Close()
		}
		p.done <- err
	}()
	return p, nil
}

func (p *k9Proc) pid() int { return p.cmd.Process.Pid }

func (p *k9Proc) sinceExec() float64 { return time.Since(p.t0).Seconds() }

// cpu is the process's CPU time so far (user + system), in seconds.
func (p *k9Proc) cpu() float64 {
	_, ticks, err := readPIDStat(p.pid())
	if err != nil {
		return 0
	}
	return round(float64(ticks)/clockTicks, 2)
}

func (p *k9Proc) waitForwarding(ctx context.Context, limit time.Duration) error {
	select {
	case <-p.forwarding:
		p.fwdAt = time.Now()
		return nil
	case werr := <-p.done:
		p.exited = true
		return fmt.Errorf("ispmux exited before forwarding: %v%s", werr, p.lw.tail())
	case <-time.After(limit):
		return fmt.Errorf("no forwarding within %v%s", limit, p.lw.tail())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// kill SIGKILLs ispmux and waits for it.
func (p *k9Proc) kill() {
	if p.exited {
		return
	}
	_ = syscall.Kill(p.pid(), syscall.SIGKILL)
	<-p.done
	p.exited = true
}

// stop ends ispmux with SIGTERM (SIGKILL after 2 min).
func (p *k9Proc) stop() error {
	if p.exited {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.exited = true
		if err != nil {
			return fmt.Errorf("ispmux exit: %v%s", err, p.lw.tail())
		}
		return nil
	case <-time.After(2 * time.Minute):
		p.kill()
		return errors.New("ispmux did not exit within 2 min of SIGTERM; killed")
	}
}

// procField reads a "Name: N kB" line of a /proc/PID/status text (bytes).
func procField(s, name string) int64 {
	i := bytes.Index([]byte(s), []byte("\n"+name))
	if i < 0 {
		return 0
	}
	var v int64
	_, _ = fmt.Sscanf(s[i+1+len(name):], "%d", &v)
	return v * 1024
}

// runDelay is the time process pid's threads spent runnable but waiting
// for a CPU, summed (the second field of /proc/PID/task/TID/schedstat,
// nanoseconds), in seconds; threads that ended are not counted.
func runDelay(pid int) float64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var ns int64
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		var run, wait int64
		if _, err := fmt.Sscanf(string(data), "%d %d", &run, &wait); err == nil {
			ns += wait
		}
	}
	return round(float64(ns)/1e9, 2)
}

// releasesLogged returns the releases of rs that the ispmux whose log is
// at path logged as released ("dhcp released" with the MAC and the
// address, stamped no earlier than the millisecond the RELEASE was sent
// in: the log's stamps are cut to milliseconds, and the bench and ispmux
// read one clock). An earlier release of the same MAC and address, even
// a few milliseconds earlier, is not this one's.
func releasesLogged(path string, rs []k9Release) []k9Release {
	if len(rs) == 0 {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []k9Release
	for _, r := range rs {
		for _, line := range bytes.Split(data, []byte("\n")) {
			if !bytes.Contains(line, []byte(`msg="dhcp released" mac=`+macText(r.mac)+" ")) || !bytes.Contains(line, []byte(" ip="+r.ip.String()+" ")) {
				continue
			}
			f := bytes.Fields(line)
			if len(f) == 0 || !bytes.HasPrefix(f[0], []byte("time=")) {
				continue
			}
			ts, err := time.Parse(time.RFC3339Nano, string(f[0][len("time="):]))
			if err == nil && !ts.Before(r.at.Truncate(time.Millisecond)) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// releasesStored returns the releases of rs whose end the running
// ispmux's store holds: a "released" event of the MAC and the address,
// stamped no earlier than the RELEASE was sent (the bench and ispmux read
// one clock; an event's time keeps its nanoseconds), among the MAC's
// newest events over the control socket. The event is committed with the
// binding's end in one transaction, so it is there exactly when the end
// is, and no log rate limit holds it back as it can the log line
// (releasesLogged).
func (k *kill9) releasesStored(ctx context.Context, rs []k9Release) ([]k9Release, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	c, err := client.NewSocket(k.sock, client.Options{Timeout: time.Minute})
	if err != nil {
		return nil, err
	}
	var out []k9Release
	for _, r := range rs {
		evs, err := c.EventsOfMAC(ctx, "", macText(r.mac), -1, 50)
		if err != nil {
			return nil, fmt.Errorf("events of %s: %w", macText(r.mac), err)
		}
		if releasedIn(evs.Items, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

// releasedIn reports whether evs hold release r's end: a "released"
// event of its address stamped no earlier than it was sent.
func releasedIn(evs []tenants.Event, r k9Release) bool {
	for _, e := range evs {
		if e.Kind == string(subscribers.EventReleased) && e.IP == r.ip.String() && !e.Time.Before(r.at) {
			return true
		}
	}
	return false
}
