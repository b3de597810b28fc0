package dhcpproxy

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/crashtest"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

const lapsedHolderCrashEnv = "DHCPPROXY_LAPSED_HOLDER_CRASH_CHILD"

// The crash version of TestAckTakesLapsedHoldersAddress: s1's lease runs
// out, the expiry tick not having ended it, and the ISP ACKs its address
// to s2; ispmux ends s1's binding (durable, its expired event) between
// two passes of s2's ACK, then commits s2's. SIGKILLed before s2's
// commit, after it and after the ACK, and restarted twice: s1's binding
// is ended in every case (not resurrected, one expired event, not two);
// before the commit s2 holds nothing, after it s2's binding stands, bound
// after s1's expiry. No RELEASE and no intent: a lapsed lease has nothing
// left at the ISP to free.
func TestCrashAckTakesLapsedHoldersAddress(t *testing.T) {
	if path := os.Getenv(lapsedHolderCrashEnv); path != "" {
		r := switchRigAt(t, path)
		now := time.Now()
		r.storeS1(now, time.Second, nil)
		if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(s2)), CustomerID: "c-s2", ISP: "alpha", Source: "api"}); err != nil {
			t.Fatal(err)
		}
		if n, err := r.p.Restore(now); err != nil || n != 1 {
			t.Fatalf("child: restore %d, %v", n, err)
		}
		time.Sleep(1100 * time.Millisecond) // past s1's lease; no tick runs here
		r.dora(s2, atAddr(byMACKea, netip.MustParseAddr(s1Addr)), nil)
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
			crashtest.KillAt(t, "TestCrashAckTakesLapsedHoldersAddress", lapsedHolderCrashEnv+"="+path, c.point)
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
				r.p.lapsing.Wait()
				r.p.expire(time.Now())
				r.p.expire(time.Now().Add(time.Second))
				r.p.notes.wait()
				if _, err := r.store.Binding("acc0", 0, [6]byte(mac(s1))); err == nil || r.tab.isBound(binding.MAC48([6]byte(mac(s1)))) {
					t.Errorf("restart %d after a crash at %s: s1's lapsed binding stands", restart, c.point)
				}
				b, berr := r.store.Binding("acc0", 0, [6]byte(mac(s2)))
				s2Bound := r.tab.isBound(binding.MAC48([6]byte(mac(s2))))
				switch {
				case c.bound && (berr != nil || n != 1 || !s2Bound || b.IP != netip.MustParseAddr(s1Addr)):
					t.Errorf("restart %d after a crash at %s: s2's binding %+v %v (restored %d, installed %v), want it at %s", restart, c.point, b, berr, n, s2Bound, s1Addr)
				case !c.bound && (berr == nil || n != 0 || s2Bound):
					t.Errorf("restart %d after a crash at %s: s2's binding %+v (restored %d, installed %v), want none", restart, c.point, b, n, s2Bound)
				}
				evs, err := r.store.Events(0, 0)
				if err != nil {
					t.Fatal(err)
				}
				var kinds []subscribers.EventKind
				for _, e := range evs {
					kinds = append(kinds, e.Kind)
				}
				if !slices.Equal(kinds, want) || evs[0].MAC != [6]byte(mac(s1)) {
					t.Errorf("restart %d after a crash at %s: events %+v, want %v, s1's expiry first", restart, c.point, evs, want)
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
