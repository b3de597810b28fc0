package dhcpproxy

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/ispmux/ispmux/internal/crashtest"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

// endCrashPoints are an intent's crash points, in order (EndBinding's
// or AddIntent's store transaction, the send, the completion), each with
// pending: the intent is still stored after the crash, and its message
// is sent once after the restart.
var endCrashPoints = []struct {
	point   string
	pending bool
}{
	{failpoint.EndAfterIntent, true},
	{failpoint.EndAfterSend, true},
	{failpoint.EndAfterComplete, false},
}

const removedCircuitCrashEnv = "DHCPPROXY_REMOVED_CIRCUIT_CRASH_CHILD"

// A binding of a removed access circuit ends at start through an intent
// (endUnconfigured): the store transaction that removes it, records the
// RELEASE and its revoked event; the RELEASE sent; the intent completed.
// ispmux is SIGKILLed at each step (the child, armed at the failpoint
// named after the store file, restores and ticks), then restarted twice:
// the binding never comes back (not stored, not leased, no second revoked
// event), the RELEASE not known to be on the wire is sent after the
// restart, once, and one completed is not sent again; the same MAC's
// binding on a configured circuit of the same ISP (older than the intent:
// not a proof the RELEASE left) is untouched.
func TestCrashEndingRemovedCircuitsBinding(t *testing.T) {
	if env := os.Getenv(removedCircuitCrashEnv); env != "" {
		removedCircuitCrashChild(t, env)
		return
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	for _, c := range endCrashPoints {
		t.Run(c.point, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			crashtest.KillAt(t, "TestCrashEndingRemovedCircuitsBinding", removedCircuitCrashEnv+"="+path, c.point)
			m := [6]byte(mac(s1))
			for restart := 1; restart <= 2; restart++ {
				r := switchRigAt(t, path)
				if _, err := r.store.Binding("acc1", 5, m); err == nil {
					t.Fatalf("restart %d: the removed circuit's binding is stored again", restart)
				}
				ins, _ := r.store.Intents()
				wantIns, wantReleases := 0, 0
				if c.pending && restart == 1 {
					wantIns, wantReleases = 1, 1
				}
				if len(ins) != wantIns {
					t.Fatalf("restart %d after a crash at %s: %d intents stored, want %d", restart, c.point, len(ins), wantIns)
				}
				if _, err := r.p.Restore(time.Now()); err != nil {
					t.Fatal(err)
				}
				r.p.expire(time.Now())
				r.p.expire(time.Now().Add(time.Second))
				r.p.notes.wait()
				rels := r.sentUp(dhcpv4.MessageTypeRelease)
				for _, m := range rels {
					if !m.ClientIPAddr.Equal(net.IP(removedGone.AsSlice())) {
						t.Errorf("restart %d: RELEASE of %v, want %v", restart, m.ClientIPAddr, removedGone)
					}
				}
				releases := len(rels)
				if releases != wantReleases {
					t.Errorf("restart %d after a crash at %s: %d RELEASEs to alpha, want %d", restart, c.point, releases, wantReleases)
				}
				if n := r.p.PendingIntents(); n != 0 {
					t.Errorf("restart %d: %d intents still pending after the tick", restart, n)
				}
				revoked := 0
				evs, _ := r.store.Events(0, 100)
				for _, e := range evs {
					if e.Kind == subscribers.EventRevoked && e.Access == "acc1" {
						revoked++
					}
				}
				if revoked != 1 {
					t.Errorf("restart %d: %d revoked events for acc1's binding, want 1", restart, revoked)
				}
				if _, ok := r.p.Lease(accPort, 0, s1MAC); !ok {
					t.Errorf("restart %d: the binding at acc0 was not restored", restart)
				}
				if err := r.store.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// removedGone is the address of the removed circuit's binding in
// TestCrashEndingRemovedCircuitsBinding.
var removedGone = netip.MustParseAddr("100.64.0.101")

// removedCircuitCrashChild stores s1's bindings on acc1 (not configured)
// and acc0 at alpha, restores (ending acc1's) and ticks past intentSettle;
// the armed failpoint kills it on the way.
func removedCircuitCrashChild(t *testing.T, path string) {
	r := switchRigAt(t, path)
	now := time.Now()
	m := [6]byte(mac(s1))
	if err := r.store.PutRegistration(subscribers.Registration{MAC: m, CustomerID: "c-s1", ISP: "alpha", Source: "api"}); err != nil {
		t.Fatal(err)
	}
	op82 := (&relayInfo{CircuitID: []byte("acc1:5"), RemoteID: mac(s1)}).encode()
	for _, b := range []subscribers.Binding{
		{MAC: m, Access: "acc1", VLAN: 5, ISP: "alpha", IP: removedGone, Expires: now.Add(time.Hour), Updated: now, LeaseTime: 2 * time.Hour, ServerID: ispSID, Option82: op82},
		{MAC: m, Access: "acc0", VLAN: 0, ISP: "alpha", IP: netip.MustParseAddr("100.64.0.100"), Expires: now.Add(time.Hour), Updated: now, LeaseTime: 2 * time.Hour},
	} {
		if err := r.store.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.p.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	r.p.expire(time.Now())
	r.p.expire(time.Now().Add(time.Second))
	t.Fatal("child: the failpoint was not hit")
}
