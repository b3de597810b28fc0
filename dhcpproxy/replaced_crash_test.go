package dhcpproxy

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/crashtest"
	"github.com/ispmux/ispmux/internal/failpoint"
)

const replacedCrashEnv = "DHCPPROXY_REPLACED_CRASH_CHILD"

// Client identifiers of TestCrashReplacingLease: the stored binding's, and
// the new DORA's.
var (
	replacedOldID = []byte{1, 2, 0xaa, 0, 0, 0, 1}
	replacedNewID = []byte{1, 2, 0xaa, 0, 0, 0, 2}
	replacedAddr  = netip.MustParseAddr("100.64.0.101")
)

// A bound subscriber starts over with a new client identifier and its ISP
// ACKs it another address; ispmux is SIGKILLed before the new binding's
// commit, after it, and after the ACK, then restarted twice. Before the
// commit: the old binding stands and its lease is not released. After it:
// the new binding stands and the old lease is released (its client
// identifier) once after the restart, not again. The RELEASE's intent is
// recorded before the commit; before stop 39's review it was recorded
// after it, and a crash in between lost it.
func TestCrashReplacingLease(t *testing.T) {
	if path := os.Getenv(replacedCrashEnv); path != "" {
		r := switchRigAt(t, path)
		now := time.Now()
		r.storeS1(now, time.Minute, replacedOldID)
		if _, err := r.p.Restore(now); err != nil {
			t.Fatal(err)
		}
		r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, replacedNewID)))
		offer := r.serve(atAddr(kea(t, time.Minute), replacedAddr))
		if len(offer) != 1 {
			t.Fatalf("child: OFFER %v", offer)
		}
		req, _ := dhcpv4.NewRequestFromOffer(offer[0], dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, replacedNewID))
		r.fromClient(req)
		r.serve(atAddr(kea(t, time.Minute), replacedAddr))
		t.Fatal("child: the failpoint was not hit")
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	for _, c := range []struct {
		point    string
		newBound bool
	}{{failpoint.BindBeforeCommit, false}, {failpoint.BindAfterCommit, true}, {failpoint.BindAfterAck, true}} {
		t.Run(c.point, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			crashtest.KillAt(t, "TestCrashReplacingLease", replacedCrashEnv+"="+path, c.point)
			for restart := 1; restart <= 2; restart++ {
				r := switchRigAt(t, path)
				want := netip.MustParseAddr(s1Addr)
				if c.newBound {
					want = replacedAddr
				}
				if b, err := r.store.Binding("acc0", 0, [6]byte(mac(s1))); err != nil || b.IP != want {
					t.Fatalf("restart %d after a crash at %s: binding %v %v, want %v", restart, c.point, b.IP, err, want)
				}
				if _, err := r.p.Restore(time.Now()); err != nil {
					t.Fatal(err)
				}
				r.p.expire(time.Now())
				r.p.expire(time.Now().Add(time.Second))
				rels := r.sentUp(dhcpv4.MessageTypeRelease)
				for _, m := range rels {
					if !m.ClientIPAddr.Equal(net.ParseIP(s1Addr)) || !bytes.Equal(m.Options.Get(dhcpv4.OptionClientIdentifier), replacedOldID) {
						t.Errorf("restart %d: RELEASE of %v with client identifier %x, want %s and %x", restart, m.ClientIPAddr,
							m.Options.Get(dhcpv4.OptionClientIdentifier), s1Addr, replacedOldID)
					}
				}
				releases := len(rels)
				wantReleases := 0
				if c.newBound && restart == 1 {
					wantReleases = 1
				}
				if releases != wantReleases {
					t.Errorf("restart %d after a crash at %s: %d RELEASEs to alpha, want %d (counters %v)", restart, c.point, releases, wantReleases, r.p.Counters())
				}
				if ins, _ := r.store.Intents(); len(ins) != 0 || r.p.PendingIntents() != 0 {
					t.Errorf("restart %d: intents %+v still pending after the ticks", restart, ins)
				}
				if err := r.store.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
