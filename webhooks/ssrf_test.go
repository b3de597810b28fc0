package webhooks

import (
	"context"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/subscribers"
)

// A webhook_url that names its receiver by a host name is resolved at
// every connection, by DNS the ISP controls: an ISP that points its name
// at 127.0.0.1 (or a link-local address, or one of the box's own) must
// not make the box POST its events to a service on the box, nor learn
// from the webhook's status which of the box's ports answer (a port scan
// of the appliance's namespace through last_error). Such an address is
// refused at the dial; the address written as a literal (or localhost)
// is the operator's own choice and is delivered to.
func TestWebhookNameResolvingInternalRefused(t *testing.T) {
	s := openStore(t, "", subscribers.Options{NoSync: true})
	sec := writeSecret(t, specSecret)
	rc := newReceiver(t, specSecret)
	u, err := url.Parse(rc.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	// hooks.beta.example "resolves" to the receiver's loopback address.
	named := "http://hooks.beta.example:" + u.Port() + "/hook"
	m, err := New(&configs.Config{ISPs: []configs.ISP{isp("beta", named, sec), isp("alpha", rc.srv.URL+"/alpha", sec)}}, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
		if host != "hooks.beta.example" {
			t.Errorf("lookup of %q", host)
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	r := run(t, m)
	addEvent(t, s, "beta", subscribers.EventBound, 1)
	addEvent(t, s, "alpha", subscribers.EventBound, 2)
	// alpha's receiver, named by its address, gets alpha's event.
	rc.waitAcked(1, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := r.m.StatusOf("beta")
		if st.Failures >= 2 {
			if st.Delivered != 0 || !strings.Contains(st.LastError, "127.0.0.1") || !strings.Contains(st.LastError, "loopback") {
				t.Errorf("beta's status %+v: want refused deliveries naming the loopback address", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("beta's status %+v: its name resolving to loopback was not refused", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, d := range rc.all() {
		if d.ev.ISP != "alpha" {
			t.Errorf("the loopback receiver got %+v (beta's webhook name resolves to loopback)", d)
		}
	}
}

func TestInternalAddr(t *testing.T) {
	for _, c := range []struct {
		a    string
		want bool
	}{
		{"127.0.0.1", true}, {"::1", true}, {"::ffff:127.0.0.2", true}, {"0.0.0.0", true}, {"::", true},
		{"169.254.169.254", true}, {"fe80::1", true}, {"224.0.0.1", true}, {"ff02::1", true},
		{"192.0.2.80", false}, {"10.1.2.3", false}, {"2001:db8::1", false},
	} {
		if got := internalAddr(netip.MustParseAddr(c.a), nil) != ""; got != c.want {
			t.Errorf("internalAddr(%s) = %v, want %v", c.a, got, c.want)
		}
	}
	own := []netip.Addr{netip.MustParseAddr("192.0.2.9")}
	if internalAddr(netip.MustParseAddr("192.0.2.9"), own) == "" {
		t.Error("the box's own address is not refused")
	}
}
