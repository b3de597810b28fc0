package dhcpproxy

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

const ackCIDCrashEnv = "DHCPPROXY_ACK_CID_CRASH_CHILD"

// ackCIDCrashChild runs, in a child killed at a failpoint, s1's and s2's
// exchanges with one client identifier under way together, and their
// ACKs: a shared identifier (s2's refused at its ACK), or s1's hardware
// one that s2 held first (reclaim: s1's DISCOVER reclaims it, s2's ACK
// binds, s1's ACK reclaims it again).
func ackCIDCrashChild(t *testing.T, path string, reclaim bool) {
	r := switchRigAt(t, path)
	r.register(s1, "c-s1")
	r.register(s2, "c-s2")
	if !reclaim {
		id := []byte{0, 's', 'h', 'a', 'r', 'e', 'd'}
		req1, req2 := r.requestInFlight(s1, id), r.requestInFlight(s2, id)
		r.ackOf(req1)
		r.ackOf(req2) // end/after-intent #1: its RELEASE recorded
		t.Fatal("child: the failpoint was not hit")
	}
	id := squatWith(t, r, s2, s1)
	req1 := r.requestInFlight(s1, id) // end/after-intent #1: the relay's reclaim
	req2 := r.requestInFlight(s2, id)
	r.ackOf(req2)
	r.ackOf(req1) // end/after-intent #2: the reclaim at the ACK
	t.Fatal("child: the failpoint was not hit")
}

// A crash once a refused ACK's RELEASE intent is durable, before it is
// sent: the next start has no binding for the refused subscriber, the
// winner's, and sends the ISP the RELEASE of the refused ACK's lease.
func TestCrashAtAckClientIDTaken(t *testing.T) {
	if path := os.Getenv(ackCIDCrashEnv); path != "" {
		ackCIDCrashChild(t, path, false)
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	path := filepath.Join(t.TempDir(), "s.db")
	runKilledAt(t, "TestCrashAtAckClientIDTaken", ackCIDCrashEnv, path, failpoint.EndAfterIntent+"@1")
	r := switchRigAt(t, path)
	r.wantStored(s1, true)
	r.wantStored(s2, false)
	r.wantReleaseReplayed(s2)
}

// A crash in the reclaim at the ACK, once the holder's binding end and
// its RELEASE intent are durable, before the owner's binding is committed:
// the holder's binding does not come back, nothing is bound for the
// owner (its client, unanswered, asks again), and the holder's RELEASE is
// sent at the next start.
func TestCrashInAckReclaim(t *testing.T) {
	if path := os.Getenv(ackCIDCrashEnv); path != "" {
		ackCIDCrashChild(t, path, true)
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	path := filepath.Join(t.TempDir(), "s.db")
	runKilledAt(t, "TestCrashInAckReclaim", ackCIDCrashEnv, path, failpoint.EndAfterIntent+"@2")
	r := switchRigAt(t, path)
	r.wantStored(s1, false)
	r.wantStored(s2, false)
	r.wantReleaseReplayed(s2)
}

// wantStored checks whether m's binding is stored (want) and, after a
// start on the store, installed.
func (r *prig) wantStored(m string, want bool) {
	r.t.Helper()
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac(m))); (err == nil) != want {
		r.t.Errorf("after the crash, %s's binding stored %v, want %v (%v)", m, err == nil, want, err)
	}
}

// wantReleaseReplayed starts r on the crashed store and checks that m's
// pending RELEASE of its byMACKea address is sent to the ISP, and that
// no binding of m is back.
func (r *prig) wantReleaseReplayed(m string) {
	r.t.Helper()
	ins, _ := r.store.Intents()
	if !slices.ContainsFunc(ins, func(in subscribers.Intent) bool { return in.MAC == [6]byte(mac(m)) && in.IP == byMACAddr(m) }) {
		r.t.Fatalf("intents after the crash %+v, want %s's RELEASE of %v pending", ins, m, byMACAddr(m))
	}
	if _, err := r.p.Restore(time.Now()); err != nil {
		r.t.Fatal(err)
	}
	r.p.expire(time.Now())
	r.p.committing.Wait()
	sent := false
	for _, s := range r.snd.take() {
		if msg := dhcpOf(s.frame); s.port == upPort && msg.MessageType() == dhcpv4.MessageTypeRelease &&
			string(msg.ClientHWAddr) == string(mac(m)) && msg.ClientIPAddr.Equal(byMACAddr(m).AsSlice()) {
			sent = true
		}
	}
	if !sent {
		r.t.Errorf("after the crash, %s's RELEASE of %v not sent (counters %v)", m, byMACAddr(m), r.p.Counters())
	}
	if r.tab.isBound(binding.MAC48([6]byte(mac(m)))) {
		r.t.Errorf("after the crash, %s bound", m)
	}
}
