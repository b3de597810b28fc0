package dhcpproxy

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/failpoint"
)

const reclaimCrashEnv = "DHCPPROXY_RECLAIM_CRASH_CHILD"

// A crash in a reclaim, killed once the holder's binding end and its
// RELEASE intent are durable (end/after-intent), before the RELEASE is
// sent: the next start must not bring the holder's released binding back
// (nor put it in the lease table, where its identifier would refuse the
// owner again), and must send the ISP the RELEASE before the owner's
// DISCOVER with the identifier (the ISP keys the lease by it: a late
// RELEASE would free the lease it grants the owner).
func TestCrashInReclaim(t *testing.T) {
	if path := os.Getenv(reclaimCrashEnv); path != "" {
		r := switchRigAt(t, path)
		r.register(s1, "c-s1")
		r.register(s2, "c-s2")
		id := squatWith(t, r, s2, s1)
		r.askWithOwnID(s1, id) // end/after-intent #1: SIGKILL
		t.Fatal("child: the failpoint was not hit")
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	path := filepath.Join(t.TempDir(), "s.db")
	runKilledAt(t, "TestCrashInReclaim", reclaimCrashEnv, path, failpoint.EndAfterIntent+"@1")

	r := switchRigAt(t, path)
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac(s2))); err == nil {
		t.Fatal("after the crash, s2's revoked binding is still stored")
	}
	if ins, _ := r.store.Intents(); len(ins) != 1 || ins[0].MAC != [6]byte(mac(s2)) {
		t.Fatalf("intents after the crash %+v, want s2's RELEASE pending", ins)
	}
	if _, err := r.p.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.p.Lease(accPort, 0, s2MAC); ok || r.tab.isBound(s2MAC) {
		t.Fatal("after the crash, s2's revoked binding is back")
	}
	id := append([]byte{1}, mac(s1)...)
	up := r.askWithOwnID(s1, id)
	r.p.expire(time.Now())
	r.p.expire(time.Now().Add(time.Second))
	up = append(up, r.askWithOwnID(s1, id)...)
	rel, disc := -1, -1
	for i, m := range up {
		switch m {
		case "RELEASE " + s2:
			rel = i
		case "DISCOVER " + s1:
			if disc < 0 {
				disc = i
			}
		}
	}
	if rel < 0 || disc < 0 || disc < rel {
		t.Errorf("after the crash, to the ISP %v: want s2's RELEASE, then s1's DISCOVER (counters %v)", up, r.p.Counters())
	}
}
