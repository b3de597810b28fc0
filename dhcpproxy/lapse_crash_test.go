package dhcpproxy

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/crashtest"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

const lapseCrashEnv = "DHCPPROXY_LAPSE_CRASH_CHILD"

// The crash version of TestAckAfterLapseIsNewBinding: a subscriber's lease
// runs out, the expiry tick not having ended it, and its ISP ACKs a new
// DORA; ispmux ends the lapsed binding (durable, its expired event), then
// commits the new one. SIGKILLed before the new commit, after it and after
// the ACK, and restarted twice: before the commit, no binding (the lapsed
// one is not resurrected) and one expired event; after it, the new binding
// stands, bound after expired (not renewed over the lapse), and nothing is
// ended or told twice. No RELEASE in either case: a lapsed lease has
// nothing left at the ISP to free.
func TestCrashAckAfterLapse(t *testing.T) {
	if path := os.Getenv(lapseCrashEnv); path != "" {
		r := switchRigAt(t, path)
		now := time.Now()
		r.storeS1(now, time.Second, nil)
		if n, err := r.p.Restore(now); err != nil || n != 1 {
			t.Fatalf("child: restore %d, %v", n, err)
		}
		time.Sleep(1100 * time.Millisecond) // past the lease; no tick runs here
		r.dora(s1, atAddr(kea(t, time.Minute), netip.MustParseAddr(s1Addr)), nil)
		t.Fatal("child: the failpoint was not hit")
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	for _, c := range []struct {
		point string
		bound bool
	}{{failpoint.BindBeforeCommit, false}, {failpoint.BindAfterCommit, true}, {failpoint.BindAfterAck, true}} {
		t.Run(c.point, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			crashtest.KillAt(t, "TestCrashAckAfterLapse", lapseCrashEnv+"="+path, c.point)
			want := []subscribers.EventKind{subscribers.EventExpired}
			if c.bound {
				want = append(want, subscribers.EventBound)
			}
			for restart := 1; restart <= 2; restart++ {
				r := switchRigAt(t, path)
				n, err := r.p.Restore(time.Now())
				if err != nil {
					t.Fatal(err)
				}
				r.p.lapsing.Wait() // the start's end of lapsed bindings runs behind it
				r.p.expire(time.Now())
				r.p.expire(time.Now().Add(time.Second))
				r.p.notes.wait()
				b, berr := r.store.Binding("acc0", 0, [6]byte(mac(s1)))
				switch {
				case c.bound && (berr != nil || n != 1 || b.Expires.Before(time.Now().Add(30*time.Second))):
					t.Errorf("restart %d after a crash at %s: binding %+v %v (restored %d), want the new one-minute lease", restart, c.point, b, berr, n)
				case !c.bound && (berr == nil || n != 0 || r.tab.isBound(0x020000000101)):
					t.Errorf("restart %d after a crash at %s: binding %+v (restored %d), want none (the lapsed one ended)", restart, c.point, b, n)
				}
				if kinds := r.eventKinds(); !slices.Equal(kinds, want) {
					t.Errorf("restart %d after a crash at %s: events %v, want %v", restart, c.point, r.eventKinds(), want)
				}
				if rel := r.sentUp(dhcpv4.MessageTypeRelease); len(rel) != 0 {
					t.Errorf("restart %d: %d RELEASEs of a lapsed lease", restart, len(rel))
				}
				if ins, _ := r.store.Intents(); len(ins) != 0 {
					t.Errorf("restart %d: intents %+v pending", restart, ins)
				}
				if err := r.store.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// storeS1 registers s1 (customer c-s1 at alpha) and stores its binding at
// s1Addr, granted by alpha's server at now for lease, with the client
// identifier clientID (nil: none): the state a crash test's child starts
// from.
func (r *prig) storeS1(now time.Time, lease time.Duration, clientID []byte) {
	r.t.Helper()
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(s1)), CustomerID: "c-s1", ISP: "alpha", Source: "api"}); err != nil {
		r.t.Fatal(err)
	}
	if err := r.store.CommitBinding(subscribers.Binding{MAC: [6]byte(mac(s1)), Access: "acc0", ISP: "alpha", IP: netip.MustParseAddr(s1Addr),
		ServerID: ispSID, Relay: ispSID, Expires: now.Add(lease), Updated: now, ClientID: clientID, Customer: "c-s1", LeaseTime: lease}); err != nil {
		r.t.Fatal(err)
	}
}

// eventKinds is the kinds of the events the store holds, oldest first.
func (r *prig) eventKinds() []subscribers.EventKind {
	r.t.Helper()
	evs, err := r.store.Events(0, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	var kinds []subscribers.EventKind
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	return kinds
}
