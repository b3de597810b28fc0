package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/api/client"
	"github.com/ispmux/ispmux/tenants"
)

func TestClient(t *testing.T) {
	f := newFixture(t)
	addr := f.serve()
	ctx := context.Background()
	op, err := client.New("http://"+addr, f.tokens["operator"], client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	alpha, _ := client.New("http://"+addr, f.tokens["alpha"], client.Options{})
	beta, _ := client.New("http://"+addr, f.tokens["beta"], client.Options{})
	claim, _ := client.New("http://"+addr, f.tokens["claim"], client.Options{})

	if isps, err := op.ISPs(ctx); err != nil || len(isps) != 2 {
		t.Fatalf("ISPs: %v %v", isps, err)
	}
	if isps, err := beta.ISPs(ctx); err != nil || len(isps) != 1 || isps[0].Name != "beta" {
		t.Fatalf("beta ISPs: %v %v", isps, err)
	}
	if _, err := beta.ISP(ctx, "alpha"); !errors.Is(err, tenants.ErrNotFound) {
		t.Fatalf("beta reads alpha: %v", err)
	}
	cu, err := alpha.CreateCustomer(client.WithRequestID(ctx, "cli-1"), "alpha", tenants.CustomerInput{ID: "c/weird id", Password: "pw"})
	if err != nil || cu.ID != "c/weird id" {
		t.Fatalf("create: %+v %v", cu, err)
	}
	if c := f.svc.lastCall(); c.Actor.RequestID != "cli-1" {
		t.Fatalf("request id %q", c.Actor.RequestID)
	}
	if _, err := alpha.Customer(ctx, "alpha", "c-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := alpha.Customer(ctx, "alpha", "c/weird id"); !errors.Is(err, tenants.ErrNotFound) {
		t.Fatalf("escaped id: %v", err) // reached the handler (not the mux's 404) as one segment
	}
	if c := f.svc.lastCall(); c.Arg != "c/weird id" {
		t.Fatalf("Service got id %v", c.Arg)
	}
	page, err := alpha.Customers(ctx, "alpha", tenants.ListOptions{Limit: 1})
	if err != nil || len(page.Items) != 1 || f.svc.lastCall().Opts.Limit != 1 {
		t.Fatalf("page %+v %v", page, err)
	}
	st := tenants.StatusSuspended
	if _, err := alpha.UpdateCustomer(ctx, "alpha", "c-1", tenants.CustomerPatch{Status: &st}); err != nil {
		t.Fatal(err)
	}
	if err := alpha.DeleteCustomer(ctx, "alpha", "c-1"); err != nil {
		t.Fatal(err)
	}
	var results []tenants.ImportResult
	err = alpha.Import(ctx, "alpha", strings.NewReader("{\"customer_id\":\"i-1\"}\n{\"bad\":1}\n"), func(r tenants.ImportResult) error {
		results = append(results, r)
		return nil
	})
	if err != nil || len(results) != 2 || results[0].Result != "created" || results[1].Result != "error" {
		t.Fatalf("import %+v %v", results, err)
	}
	if d, err := alpha.Devices(ctx, "alpha", "c-1", tenants.ListOptions{}); err != nil || len(d.Items) != 1 {
		t.Fatalf("devices %+v %v", d, err)
	}
	if d, err := op.Devices(ctx, "", "", tenants.ListOptions{}); err != nil || len(d.Items) != 2 {
		t.Fatalf("all devices %+v %v", d, err)
	}
	if _, err := alpha.Device(ctx, "alpha", "02:00:00:00:00:07"); !errors.Is(err, tenants.ErrNotFound) {
		t.Fatalf("alpha reads beta's device: %v", err)
	}
	if d, err := op.Device(ctx, "", "02:00:00:00:00:07"); err != nil || d.ISP != "beta" {
		t.Fatalf("device %+v %v", d, err)
	}
	if _, err := alpha.AttachDevice(ctx, "alpha", tenants.DeviceInput{MAC: "02:00:00:00:00:03", CustomerID: "c-1"}); err != nil {
		t.Fatal(err)
	}
	if err := alpha.DetachDevice(ctx, "alpha", "02:00:00:00:00:01"); err != nil {
		t.Fatal(err)
	}
	if _, err := claim.Claim(ctx, tenants.ClaimRequest{ISP: "alpha", CustomerID: "c-1", Password: "pw", MAC: "02:00:00:00:00:03"}); err != nil {
		t.Fatal(err)
	}
	_, err = claim.Claim(ctx, tenants.ClaimRequest{ISP: "alpha", CustomerID: "c-1", Password: "wrong", MAC: "02:00:00:00:00:03"})
	var ce *client.Error
	if !errors.Is(err, tenants.ErrBadCredentials) || !errors.As(err, &ce) || ce.Status != 403 || ce.RequestID == "" {
		t.Fatalf("wrong password: %v", err)
	}
	f.svc.mu.Lock()
	f.svc.err = &tenants.DeviceLimitError{Limit: 1, Devices: []string{"02:00:00:00:00:01"}}
	f.svc.mu.Unlock()
	_, err = claim.Claim(ctx, tenants.ClaimRequest{ISP: "alpha", CustomerID: "c-1", Password: "pw", MAC: "02:00:00:00:00:04"})
	if !errors.Is(err, tenants.ErrDeviceLimit) || !errors.As(err, &ce) || len(ce.Devices) != 1 {
		t.Fatalf("device limit: %v", err)
	}
	f.svc.mu.Lock()
	f.svc.err = fmt.Errorf("%w: device 02:00:00:00:00:04 cannot be attached here; ask the operator", tenants.ErrDeviceTaken)
	f.svc.mu.Unlock()
	_, err = claim.Claim(ctx, tenants.ClaimRequest{ISP: "alpha", CustomerID: "c-1", Password: "pw", MAC: "02:00:00:00:00:04"})
	if !errors.Is(err, tenants.ErrDeviceTaken) || !errors.Is(err, tenants.ErrConflict) || !errors.As(err, &ce) || ce.Slug() != "device-unavailable" {
		t.Fatalf("device taken: %v", err)
	}
	f.svc.mu.Lock()
	f.svc.err = &tenants.RateLimitError{RetryAfter: 7 * time.Second}
	f.svc.mu.Unlock()
	_, err = claim.Claim(ctx, tenants.ClaimRequest{ISP: "alpha", CustomerID: "c-1", Password: "pw", MAC: "02:00:00:00:00:04"})
	if !errors.Is(err, tenants.ErrRateLimited) || !errors.As(err, &ce) || ce.RetryAfter != 7*time.Second {
		t.Fatalf("rate limited: %v", err)
	}
	if d, err := op.Block(ctx, "02:00:00:00:00:01"); err != nil || !d.Blocked {
		t.Fatalf("block %+v %v", d, err)
	}
	if d, err := op.Unblock(ctx, "02:00:00:00:00:01"); err != nil || d.Blocked {
		t.Fatalf("unblock %+v %v", d, err)
	}
	if d, err := op.Move(ctx, "02:00:00:00:00:01", tenants.MoveRequest{ISP: "beta", CustomerID: "c-77"}); err != nil || d.ISP != "beta" {
		t.Fatalf("move %+v %v", d, err)
	}
	if _, err := alpha.Move(ctx, "02:00:00:00:00:01", tenants.MoveRequest{ISP: "beta", CustomerID: "c-77"}); !errors.Is(err, tenants.ErrForbidden) {
		t.Fatalf("alpha moves: %v", err)
	}
	if b, err := beta.Bindings(ctx, "beta", tenants.ListOptions{}); err != nil || len(b.Items) != 1 {
		t.Fatalf("bindings %+v %v", b, err)
	}
	if b, err := op.Bindings(ctx, "", tenants.ListOptions{}); err != nil || len(b.Items) != 2 {
		t.Fatalf("all bindings %+v %v", b, err)
	}
	f.svc.addEvent(tenants.Event{Kind: "bound", ISP: "beta"})
	if ev, err := beta.Events(ctx, "beta", 0, 10); err != nil || len(ev.Items) != 1 {
		t.Fatalf("events %+v %v", ev, err)
	}
	if s, err := op.Stats(ctx); err != nil || s.ISPs != 2 {
		t.Fatalf("stats %+v %v", s, err)
	}
	if _, err := beta.Stats(ctx); !errors.Is(err, tenants.ErrForbidden) {
		t.Fatalf("beta stats: %v", err)
	}
	bad, _ := client.New("http://"+addr, f.tokens["rotated"], client.Options{})
	if _, err := bad.ISPs(ctx); !errors.As(err, &ce) || ce.Status != 401 {
		t.Fatalf("rotated-out token: %v", err)
	}
}

func TestClientFollowResumes(t *testing.T) {
	f := newFixture(t)
	f.srv.Limits.Heartbeat = 50 * time.Millisecond
	// A proxy we can cut: the client must resume after what it saw.
	addr := f.serve()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				return
			}
			conns <- c
			go func() { _, _ = copyConn(up, c) }()
			go func() { _, _ = copyConn(c, up) }()
		}
	}()
	beta, _ := client.New("http://"+ln.Addr().String(), f.tokens["beta"], client.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan tenants.Event, 16)
	done := make(chan error, 1)
	go func() {
		done <- beta.Follow(ctx, "beta", -1, func(m client.StreamMessage) error {
			if m.Reset != nil {
				t.Errorf("unexpected reset %+v", m.Reset)
				return nil
			}
			got <- m.Event
			return nil
		})
	}()
	first := <-conns
	time.Sleep(100 * time.Millisecond)                         // connected, live, position known
	f.svc.addEvent(tenants.Event{Kind: "bound", ISP: "alpha"}) // 1: not beta's
	f.svc.addEvent(tenants.Event{Kind: "bound", ISP: "beta"})  // 2
	if ev := <-got; ev.Seq != 2 {
		t.Fatalf("got %+v", ev)
	}
	first.Close()                                                // cut: events while disconnected must not be lost
	f.svc.addEvent(tenants.Event{Kind: "released", ISP: "beta"}) // 3
	f.svc.addEvent(tenants.Event{Kind: "bound", ISP: "beta"})    // 4
	for _, want := range []uint64{3, 4} {
		select {
		case ev := <-got:
			if ev.Seq != want {
				t.Fatalf("after resume got %d, want %d", ev.Seq, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d not delivered after the reconnect", want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Follow: %v", err)
	}
}

func copyConn(dst, src net.Conn) (int64, error) {
	defer dst.Close()
	buf := make([]byte, 4096)
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if err != nil {
			return n, err
		}
	}
}

func TestClientOptions(t *testing.T) {
	if _, err := client.New("http://192.0.2.9:8080", "t", client.Options{}); err == nil {
		t.Error("clear-text http to a non-loopback host accepted")
	}
	if _, err := client.New("https://192.0.2.9:8443", "t", client.Options{InsecureSkipVerify: true}); err == nil {
		t.Error("skipping certificate checks for a non-loopback host accepted")
	}
	if _, err := client.New("https://[::1]:8443", "t", client.Options{InsecureSkipVerify: true}); err != nil {
		t.Error(err)
	}
	if _, err := client.New("ftp://x", "t", client.Options{}); err == nil {
		t.Error("ftp accepted")
	}
	if _, err := client.New("https://x:1", "", client.Options{}); err == nil {
		t.Error("no token accepted")
	}
	// A CA file: the TLS server of TestTLSReload's kind, verified.
	f := newFixture(t)
	cert, _ := f.overTLS(t, "ca-test")
	addr := f.serve()
	c, err := client.New("https://"+addr, f.tokens["operator"], client.Options{CAFile: cert})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stats(context.Background()); err != nil {
		t.Fatalf("verified TLS: %v", err)
	}
	c2, _ := client.New("https://"+addr, f.tokens["operator"], client.Options{})
	if _, err := c2.Stats(context.Background()); err == nil {
		t.Fatal("an unknown CA was trusted")
	}
}
