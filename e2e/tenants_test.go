package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	apiclient "github.com/ispmux/ispmux/api/client"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/lab"
	"github.com/ispmux/ispmux/tenants"
)

// tenantCrashCovers are the failpoints TestTenants crashes at (see
// TestCrashMatrixCoversEveryPoint).
var tenantCrashCovers = []string{failpoint.TenantAfterCommit}

// nsHTTPClient is an HTTP client whose connections are made inside network
// namespace ns (the API listens on the appliance namespace's loopback).
func nsHTTPClient(ns string) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialInNS(ctx, ns, network, addr)
	}
	return &http.Client{Transport: &http.Transport{DialContext: dial, MaxIdleConns: 4}}
}

// apiAs returns an API client with token, over the appliance namespace.
func (r *rig) apiAs(token string) *apiclient.Client {
	r.t.Helper()
	c, err := apiclient.New("http://127.0.0.1:8080", token, apiclient.Options{HTTPClient: nsHTTPClient(r.topo.Appliance.NS), Timeout: 10 * time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// keaActive returns the active lease of mac at isp's Kea (lease4-get-all).
func (r *rig) keaActive(isp, mac string) (lab.KeaLease, bool) {
	r.t.Helper()
	for _, i := range r.topo.ISPs {
		if i.Name != isp {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ls, err := i.Leases(ctx)
		if err != nil {
			r.t.Fatalf("kea %s: %v", isp, err)
		}
		for _, l := range ls {
			if strings.EqualFold(l.HWAddr, mac) && l.Active(time.Now()) {
				return l, true
			}
		}
	}
	return lab.KeaLease{}, false
}

// scrape reads /metrics (served in the appliance namespace): the value of
// each series, by its name and labels as the text format writes them.
func (r *rig) scrape() map[string]float64 {
	r.t.Helper()
	resp, err := nsHTTPClient(r.topo.Appliance.NS).Get("http://127.0.0.1:9100/metrics")
	if err != nil {
		r.t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		r.t.Fatalf("scrape: %v %s", err, resp.Status)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func eventually(within time.Duration, f func() bool) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if f() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return f()
}

// TestTenants is issue 7 end to end: ISPs register customers through the
// API, a claim attaches a device, real DHCP clients get leases from the
// ISP their customer belongs to through real Kea, tenants see only their
// own, the operator moves a device between ISPs (RELEASE to the old one,
// ispmux NAKs the old address), the configuration never overrides the
// API, and a crash right after a tenant change loses nothing.
func TestTenants(t *testing.T) {
	t.Parallel()
	r := newRig(t, lab.Options{Subscribers: 8, DHCP: true, LeaseTime: time.Hour, API: true, KeaNotAuthoritative: true,
		Unconfigured: []string{"s7", "s8"}, KeaKnown: map[string][]string{"beta": {"c-77"}, "alpha": {"a-77"}}})
	r.start()
	ctx := context.Background()
	tok := r.topo.API
	beta, alpha, claimer := r.apiAs(tok.ISP["beta"]), r.apiAs(tok.ISP["alpha"]), r.apiAs(tok.Claim)
	op := r.apiAs(tok.Operator)
	s7, s8 := r.sub("s7"), r.sub("s8")
	capture := r.capture(s7)

	before := r.scrape()
	t.Run("beta registers c-77, a claim attaches s7, s7 gets beta's lease", func(t *testing.T) {
		if _, err := beta.CreateCustomer(ctx, "beta", tenants.CustomerInput{ID: "c-77", Password: "correct horse battery"}); err != nil {
			t.Fatal(err)
		}
		if _, err := claimer.Claim(ctx, tenants.ClaimRequest{ISP: "beta", CustomerID: "c-77", Password: "wrong", MAC: s7.MAC}); !errors.Is(err, tenants.ErrBadCredentials) {
			t.Errorf("claim with a wrong password: %v", err)
		}
		time.Sleep(1100 * time.Millisecond) // the customer's back-off after a failure
		start := time.Now()
		if _, err := claimer.Claim(ctx, tenants.ClaimRequest{ISP: "beta", CustomerID: "c-77", Password: "correct horse battery", MAC: s7.MAC}); err != nil {
			t.Fatal(err)
		}
		t.Logf("claim answered in %v", time.Since(start))
		startClient(t, r.topo.Dhclient(ctx, s7))
		a, ok := r.waitAddr(s7, 20*time.Second)
		if !ok {
			t.Fatalf("s7 got no address; ispmux log:\n%s", r.log.String())
		}
		l, ok := r.keaActive("beta", s7.MAC)
		if !ok || string(l.SubscriberID) != "c-77" || l.Address != a.Addr() {
			t.Errorf("beta's Kea lease %+v %v, want c-77 at %v", l, ok, a)
		}
		if !r.ping("s7", hostAddr, 3) {
			t.Errorf("s7 cannot reach beta's host")
		}
		// /metrics saw beta's DORA.
		after := r.scrape()
		for _, m := range []string{`ispmux_dhcp_exchanges_total{isp="beta",outcome="ack"}`, `ispmux_bindings{isp="beta",kind="dhcp"}`,
			`ispmux_customers{isp="beta"}`} {
			if after[m] <= before[m] {
				t.Errorf("%s: %v before the DORA, %v after", m, before[m], after[m])
			}
		}
		if after[`ispmux_dhcp_exchanges_total{isp="alpha",outcome="ack"}`] != before[`ispmux_dhcp_exchanges_total{isp="alpha",outcome="ack"}`] {
			t.Error("alpha's acks moved with beta's DORA")
		}
		// The binding's journal append went through io_uring (this
		// machine's kernel allows it; CI runs here as root).
		if after[`ispmux_store_journal_sync_info{via="io_uring"}`] != 1 {
			var got []string
			for k, v := range after {
				if strings.HasPrefix(k, "ispmux_store_journal_sync_info") {
					got = append(got, fmt.Sprint(k, " ", v))
				}
			}
			t.Errorf("journal sync not through io_uring: %q", got)
		}
	})

	t.Run("alpha cannot see beta's customer", func(t *testing.T) {
		for _, isp := range []string{"beta", "alpha"} {
			if _, err := alpha.Customer(ctx, isp, "c-77"); !errors.Is(err, tenants.ErrNotFound) {
				t.Errorf("alpha reading %s/c-77: %v, want not found", isp, err)
			}
		}
		if _, err := alpha.Device(ctx, "alpha", s7.MAC); !errors.Is(err, tenants.ErrNotFound) {
			t.Errorf("alpha reading s7: %v", err)
		}
		if _, err := beta.Device(ctx, "beta", s7.MAC); err != nil {
			t.Errorf("beta reading its own device: %v", err)
		}
	})

	t.Run("a refusal by beta's Kea reaches beta's event stream, not alpha's", func(t *testing.T) {
		sctx, cancel := context.WithTimeout(ctx, 40*time.Second)
		defer cancel()
		var mu sync.Mutex
		var seen []tenants.Event
		got := make(chan tenants.Event, 1)
		go func() {
			_ = beta.Follow(sctx, "beta", -1, func(m apiclient.StreamMessage) error {
				mu.Lock()
				seen = append(seen, m.Event)
				mu.Unlock()
				if m.Event.Kind == "timeout" && m.Event.MAC == s8.MAC {
					got <- m.Event
				}
				return nil
			})
		}()
		time.Sleep(300 * time.Millisecond) // the stream is open
		if _, err := beta.CreateCustomer(ctx, "beta", tenants.CustomerInput{ID: "c-88"}); err != nil {
			t.Fatal(err)
		}
		if _, err := beta.AttachDevice(ctx, "beta", tenants.DeviceInput{MAC: s8.MAC, CustomerID: "c-88"}); err != nil {
			t.Fatal(err)
		}
		startClient(t, r.topo.Udhcpc(ctx, s8))
		select {
		case e := <-got:
			if e.ISP != "beta" || e.CustomerID != "c-88" {
				t.Errorf("timeout event %+v", e)
			}
		case <-sctx.Done():
			mu.Lock()
			t.Fatalf("no timeout event for s8 on beta's stream; seen %+v", seen)
		}
		p, err := alpha.Events(ctx, "alpha", 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Items {
			if e.ISP != "alpha" || e.MAC == s8.MAC || e.MAC == s7.MAC {
				t.Errorf("alpha sees %+v", e)
			}
		}
	})

	t.Run("the operator moves s7 to alpha, cutting beta at once", func(t *testing.T) {
		if _, err := op.CreateCustomer(ctx, "alpha", tenants.CustomerInput{ID: "a-77"}); err != nil {
			t.Fatal(err)
		}
		old, ok := r.keaActive("beta", s7.MAC)
		if !ok {
			t.Fatal("s7 has no lease at beta before the move")
		}
		if _, err := op.Move(ctx, s7.MAC, tenants.MoveRequest{ISP: "alpha", CustomerID: "a-77", Immediate: true}); err != nil {
			t.Fatal(err)
		}
		// Traffic stops at once; beta's Kea got the RELEASE.
		if _, ok := r.bound(s7.MAC); ok {
			t.Error("s7 still bound after the move")
		}
		if !eventually(5*time.Second, func() bool { _, ok := r.keaActive("beta", s7.MAC); return !ok }) {
			t.Error("beta's Kea still holds s7's lease after the move")
		}
		// dhclient (1 h lease) restarts: INIT-REBOOT for the old address,
		// NAKed by ispmux itself, then a DORA at alpha.
		r.killInNS(s7.NS, "dhclient", syscall.SIGKILL)
		startClient(t, r.topo.Dhclient(ctx, s7))
		var b struct{ ok bool }
		if !eventually(30*time.Second, func() bool {
			bs, ok := r.bound(s7.MAC)
			b.ok = ok && bs.ISP == "alpha"
			return b.ok
		}) {
			t.Fatalf("s7 not bound at alpha; ispmux log:\n%s", r.log.String())
		}
		l, ok := r.keaActive("alpha", s7.MAC)
		if !ok || string(l.SubscriberID) != "a-77" {
			t.Errorf("alpha's Kea lease %+v %v, want a-77", l, ok)
		}
		if !eventually(10*time.Second, func() bool { a, ok := r.topo.SubAddr(ctx, s7); return ok && a.Addr() == l.Address }) {
			t.Errorf("s7 does not hold alpha's address %v", l.Address)
		}
		if !r.ping("s7", hostAddr, 3) {
			t.Errorf("s7 cannot reach alpha's host")
		}
		naked := false
		for _, m := range capture() {
			if m.MessageType() == dhcpv4.MessageTypeNak && m.ServerIdentifier().Equal(net.ParseIP(lab.Gateway)) {
				naked = true
			}
		}
		if !naked {
			t.Errorf("no NAK from ispmux (server-id %s) on s7's link (old lease %v)", lab.Gateway, old.Address)
		}
		// beta hears its device left, not where it went.
		p, err := beta.Events(ctx, "beta", 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		moved := false
		for _, e := range p.Items {
			if e.Kind == "moved" && e.MAC == s7.MAC {
				moved = true
				if strings.Contains(e.Reason, "alpha") || strings.Contains(e.Reason, "a-77") {
					t.Errorf("beta's moved event names the winner: %+v", e)
				}
			}
		}
		if !moved {
			t.Error("no moved event at beta")
		}
	})

	t.Run("a reload naming s7 leaves the API's choice", func(t *testing.T) {
		r.topo.Unconfigured = []string{"s8"}
		if err := os.WriteFile(r.cfg, r.topo.ConfigTOML(r.dir+"/state"), 0o644); err != nil {
			t.Fatal(err)
		}
		_ = r.cmd.Process.Signal(syscall.SIGHUP)
		if !eventually(5*time.Second, func() bool { return strings.Contains(r.log.String(), "configuration conflict") }) {
			t.Errorf("no conflict reported; log:\n%s", r.log.String())
		}
		d, err := op.Device(ctx, "", s7.MAC)
		if err != nil || d.ISP != "alpha" || d.CustomerID != "a-77" {
			t.Errorf("s7 after the reload: %+v %v, want alpha/a-77", d, err)
		}
		if bs, ok := r.bound(s7.MAC); !ok || bs.ISP != "alpha" {
			t.Errorf("s7's binding after the reload: %+v %v", bs, ok)
		}
	})

	t.Run("a crash right after a tenant change loses nothing", func(t *testing.T) {
		// ispmux with failpoints, crashed right after the deletion of
		// a-77 is durable: s7's registration falls back to the
		// configuration's (beta, pinned to its access), a move. At
		// the restart s7's binding at alpha is kept, forwarding, as
		// a move's without a crash (make-before-break), until s7's
		// next message, which ends it (a RELEASE to alpha).
		r.stop()
		p := r.launch(failpointBinary(t), "ISPMUX_FAILPOINT="+failpoint.TenantAfterCommit)
		if _, err := r.waitReady(p, 15*time.Second); err != nil {
			t.Fatal(err)
		}
		sock, err := apiclient.NewSocket(r.sock(), apiclient.Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		_ = sock.DeleteCustomer(ctx, "alpha", "a-77") // the process dies answering
		if !p.wait(10 * time.Second) {
			p.kill9()
			t.Fatal("ispmux did not crash at the failpoint")
		}
		if err := diedAt(p, failpoint.TenantAfterCommit); err != nil {
			t.Fatal(err)
		}
		r.start()
		if bs, ok := r.bound(s7.MAC); !ok || bs.ISP != "alpha" {
			t.Errorf("s7's binding after the restart: %+v %v; want alpha's kept until s7's next message", bs, ok)
		}
		if _, ok := r.keaActive("alpha", s7.MAC); !ok {
			t.Error("alpha's Kea released s7's lease at the restart")
		}
		// The API's device is gone with its customer; the configuration
		// (which names s7 since the reload) applies again.
		if d, err := op.Device(ctx, "", s7.MAC); err != nil || d.Source != "config" || d.ISP != "beta" {
			t.Errorf("s7's device after the restart: %+v %v, want the configuration's (beta)", d, err)
		}
		// s7's next message: dhclient restarted asks for its lease
		// again (INIT-REBOOT), NAKed after the alpha binding ends.
		r.killInNS(s7.NS, "dhclient", syscall.SIGKILL)
		startClient(t, r.topo.Dhclient(ctx, s7))
		if !eventually(10*time.Second, func() bool { bs, ok := r.bound(s7.MAC); return !ok || bs.ISP != "alpha" }) {
			t.Error("s7 still bound at alpha after its next message")
		}
		if !eventually(5*time.Second, func() bool { _, ok := r.keaActive("alpha", s7.MAC); return !ok }) {
			t.Error("alpha's Kea still holds s7's lease (the RELEASE was not sent at its next message)")
		}
	})
}
