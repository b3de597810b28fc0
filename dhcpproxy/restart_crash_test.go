package dhcpproxy

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

const restartCrashEnv = "DHCPPROXY_RESTART_CRASH_CHILD"

// restartCrashLapsed and restartCrashLive are the bindings the crashed
// start finds: lapsed ones (more than two of Store.EndBindings' batches of
// 4096) and live ones.
const (
	restartCrashLapsed = 9000
	restartCrashLive   = 5
)

// restartCrashMAC is the hardware address of binding i.
func restartCrashMAC(i int) [6]byte { return [6]byte{2, 0, 0, 9, byte(i >> 8), byte(i)} }

// TestCrashBetweenRestartEnds: a start after an outage ends the bindings
// it finds lapsed in batches (Store.EndBindings, one durable transaction
// of 4096 each, with their expired events). Killed after the first batch
// (failpoint restart/end-after-batch), the next start must end the rest
// and keep the live bindings: no lapsed binding back, none of the first
// batch's ended twice (one expired event each), the event log without a
// gap. The e2e crash matrix passes the point with one binding (one batch);
// this is the crash between batches.
func TestCrashBetweenRestartEnds(t *testing.T) {
	now := time.Now()
	if path := os.Getenv(restartCrashEnv); path != "" {
		r := switchRigAt(t, path)
		_, err := r.p.Restore(now)
		r.p.lapsing.Wait()
		t.Fatalf("child: the failpoint was not hit (restore: %v)", err)
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	path := filepath.Join(t.TempDir(), "s.db")
	seed, err := subscribers.Open(path, subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range restartCrashLapsed + restartCrashLive {
		hw := restartCrashMAC(i)
		b := subscribers.Binding{MAC: hw, Access: "acc0", ISP: "alpha",
			IP: netip.AddrFrom4([4]byte{100, 66, byte(i >> 8), byte(i)}), Expires: now.Add(-time.Minute), Updated: now.Add(-time.Hour)}
		if i >= restartCrashLapsed {
			if err := seed.PutRegistration(subscribers.Registration{MAC: hw, CustomerID: "c-s1", ISP: "alpha", Source: "api"}); err != nil {
				t.Fatal(err)
			}
			b.Expires = now.Add(time.Hour)
		}
		if err := seed.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := seed.Close(); err != nil {
		t.Fatal(err)
	}

	runKilledAt(t, "TestCrashBetweenRestartEnds", restartCrashEnv, path, failpoint.RestartEndAfterBatch+"@1")

	r := switchRigAt(t, path)
	left := 0
	if err := r.store.ForEachBindingBorrowed(func(*subscribers.Binding) error { left++; return nil }); err != nil {
		t.Fatal(err)
	}
	// The crash was between batches: the first one ended, not the rest.
	if want := restartCrashLapsed - 4096 + restartCrashLive; left != want {
		t.Fatalf("after the crash %d bindings stored, want %d (the first batch ended, the rest not)", left, want)
	}
	n, err := r.p.Restore(now)
	if err != nil || n != restartCrashLive {
		t.Fatalf("the start after the crash restored %d, %v; want the %d live bindings", n, err, restartCrashLive)
	}
	r.p.lapsing.Wait()
	for i := range restartCrashLapsed + restartCrashLive {
		_, err := r.store.Binding("acc0", 0, restartCrashMAC(i))
		switch {
		case i < restartCrashLapsed && err == nil:
			t.Fatalf("lapsed binding %d is still stored", i)
		case i >= restartCrashLapsed && err != nil:
			t.Fatalf("live binding %d: %v", i, err)
		}
	}
	evs, err := r.store.Events(0, 2*restartCrashLapsed)
	if err != nil {
		t.Fatal(err)
	}
	expired := map[[6]byte]int{}
	for i, e := range evs {
		if i > 0 && e.Seq != evs[i-1].Seq+1 {
			t.Fatalf("event %d has seq %d after %d: a gap", i, e.Seq, evs[i-1].Seq)
		}
		if e.Kind == subscribers.EventExpired {
			expired[[6]byte(e.MAC)]++
		}
	}
	for i := range restartCrashLapsed + restartCrashLive {
		if got, want := expired[restartCrashMAC(i)], min(1, max(0, restartCrashLapsed-i)); got != want {
			t.Fatalf("binding %d: %d expired events, want %d", i, got, want)
		}
	}
}

// blockingEnds is a store whose EndBindings waits for release: the start's
// ends of lapsed bindings held up, as a million of them are.
type blockingEnds struct {
	*subscribers.Store
	started chan struct{}
	release chan struct{}
}

func (s *blockingEnds) EndBindings(ends []subscribers.BindingEnd) ([]subscribers.Event, error) {
	close(s.started)
	<-s.release
	return s.Store.EndBindings(ends)
}

// TestStartForwardsBeforeLapsedEnds: the bindings that lapsed while
// ispmux was stopped are ended beside the start, not before it (a
// million took ~6 s of a restart's outage): Restore returns while their
// ends are held up, the box answers DHCP meanwhile, and a subscriber whose
// lapsed binding is not ended yet binds again and keeps its new binding
// when the end comes (its lapsed lease still has its expired event); the
// other lapsed binding ends with its event.
func TestStartForwardsBeforeLapsedEnds(t *testing.T) {
	r := newPRig(t)
	now := time.Now()
	const again, other = "02:00:00:00:01:01", "02:00:00:00:01:02"
	for i, m := range []string{again, other} {
		b := subscribers.Binding{MAC: [6]byte(mac(m)), Access: "acc0", ISP: "alpha",
			IP: netip.AddrFrom4([4]byte{100, 64, 0, byte(200 + i)}), Expires: now.Add(-time.Minute), Updated: now.Add(-time.Hour)}
		if err := r.store.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	st := &blockingEnds{Store: r.store, started: make(chan struct{}), release: make(chan struct{})}
	r.p = New(r.p.config(), st, r.p.reg, r.tab, r.snd, nil)
	released := false
	defer func() {
		if !released {
			close(st.release)
		}
	}()
	if n, err := r.p.Restore(now); err != nil || n != 0 {
		t.Fatalf("restored %d, %v; want 0 (both lapsed)", n, err)
	}
	select {
	case <-st.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the lapsed bindings' ends did not start")
	}
	// Restore returned with the ends held up: the start does not wait.
	got := r.dora(again, kea(t, time.Hour), nil)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DORA while the lapsed ends are held up: %v", got)
	}
	newIP := netip.AddrFrom4([4]byte(got[0].YourIPAddr.To4()))
	close(st.release)
	released = true
	r.p.lapsing.Wait()
	b, err := r.store.Binding("acc0", 0, [6]byte(mac(again)))
	if err != nil || b.IP != newIP || !b.Expires.After(now) {
		t.Fatalf("the binding made while the lapsed one's end was pending: %+v, %v; want %v kept", b, err, newIP)
	}
	if !r.tab.isBound(binding.MAC48([6]byte(mac(again)))) {
		t.Error("the new binding is not installed")
	}
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac(other))); err == nil {
		t.Error("the other lapsed binding was not ended")
	}
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 100)
	expired := map[string]int{}
	for _, e := range evs {
		if e.Kind == subscribers.EventExpired {
			expired[net.HardwareAddr(e.MAC[:]).String()]++
		}
	}
	if expired[again] != 1 || expired[other] != 1 {
		t.Errorf("expired events %v: want one for each lapsed lease (%s's too, though it bound again before the end)", expired, again)
	}
}

// runKilledAt runs this test binary's test name as a child, with env set
// to path (the child's store) and the failpoint fp armed
// (ISPMUX_FAILPOINT), and fails t unless the failpoint's SIGKILL ended it.
func runKilledAt(t *testing.T, name, env, path, fp string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+path, "ISPMUX_FAILPOINT="+fp)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child not killed at the failpoint: %v\n%s", err, stderr.String())
	}
}
