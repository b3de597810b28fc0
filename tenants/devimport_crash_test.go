package tenants

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/crashtest"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

const importCrashEnv = "TENANTS_IMPORT_CRASH_CHILD"

// The devices of TestCrashMidDeviceImport: four of a-1 bound on acc0
// (imported to suspended s-1, to a-2 pinned to acc1, to s-1, to a-2), one
// of a-2 already (unchanged), six new ones and one line naming a customer
// that does not exist.
const (
	impBound1, impBound2, impBound3, impBound4 = "02:00:00:00:0a:01", "02:00:00:00:0a:02", "02:00:00:00:0a:03", "02:00:00:00:0a:04"
	impKept                                    = "02:00:00:00:0a:05"
	impBad                                     = "02:00:00:00:0a:06"
)

// importCrashBatches is the import of TestCrashMidDeviceImport, in the
// batches the API hands ImportDevices (500 lines there; the batching is
// the same). The bound devices moved to the suspended customer or pinned
// to the other access lose their bindings in their batch's revalidation:
// one in the first batch, two in the second.
var importCrashBatches = [][]DeviceInput{
	{{MAC: impKept, CustomerID: "a-2"}, {MAC: impBound1, CustomerID: "s-1"}, {MAC: "02:00:00:00:0b:01", CustomerID: "a-1"}, {MAC: "02:00:00:00:0b:02", CustomerID: "a-2"}},
	{{MAC: impBound2, CustomerID: "a-2", Access: "acc1"}, {MAC: impBound3, CustomerID: "s-1"}, {MAC: "02:00:00:00:0b:03", CustomerID: "a-1"}, {MAC: impBad, CustomerID: "zz"}},
	{{MAC: impBound4, CustomerID: "a-2"}, {MAC: "02:00:00:00:0b:04", CustomerID: "a-1"}, {MAC: "02:00:00:00:0b:05", CustomerID: "a-2"}, {MAC: "02:00:00:00:0b:06", CustomerID: "s-1"}},
}

var alphaActor = Actor{Kind: ActorISP, Name: "alpha-token", ISP: "alpha", RequestID: "r-import"}

// runImport runs importCrashBatches on r, batch after batch, and calls
// ack with each batch's results once it returned (the API writes them
// then, before it reads the next batch).
func (r *pinRig) runImport(ack func([]DeviceImportResult)) {
	line := 1
	for _, b := range importCrashBatches {
		ack(r.ten.ImportDevices(ctx, alphaActor, "alpha", line, b))
		line += len(b)
	}
}

// importState is what TestCrashMidDeviceImport compares of a store: each
// registration (ISP/customer/access/blocked/source), each binding
// (customer/access), and the number of attached, detached and revoked
// events of each MAC.
type importState struct {
	Regs     map[string]string // by MAC
	Bindings map[string]string
	Events   map[string]int // "KIND MAC"
}

func (r *pinRig) importState() importState {
	r.t.Helper()
	return storeImportState(r.t, r.st)
}

// storeImportState is importState of the store st.
func storeImportState(t testing.TB, st *subscribers.Store) importState {
	t.Helper()
	s := importState{Regs: map[string]string{}, Bindings: map[string]string{}, Events: map[string]int{}}
	regs, err := st.Registrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range regs {
		s.Regs[macString(g.MAC)] = fmt.Sprintf("%s/%s/%s/%v/%s", g.ISP, g.CustomerID, g.Access, g.Blocked, g.Source)
	}
	if err := st.ForEachBinding(func(b subscribers.Binding) error {
		s.Bindings[macString(b.MAC)] = b.Customer + "/" + b.Access
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	evs, err := st.Events(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		switch e.Kind {
		case subscribers.EventDeviceAttached, subscribers.EventDeviceDetached, subscribers.EventRevoked:
			s.Events[fmt.Sprintf("%s %s", e.Kind, macString(e.MAC))]++
		}
	}
	return s
}

// TestCrashMidDeviceImport: an ISP's bulk device import of three batches
// (new devices, a device already its customer's, bound devices moved to a
// suspended customer, pinned to the other access or moved to another
// customer, a line naming no customer) is SIGKILLed at each instant of a
// batch: after the first or the second batch's commit (before it is
// published and its bindings revalidated), after the second batch's
// first revocation is durable (in its revalidation), and between the
// second and the third batch (the API answered the first two). Restarted:
// every line the child answered (the API's reply) is as answered; each
// batch is there whole or not at all (registration, its events, the
// registry) and nothing of a batch after the crash; no binding forwards
// for a device whose registration no longer allows it (suspended
// customer, other access), each revoked once; the same import run again
// answers no error but the bad line, and leaves the store as the import
// run without a crash leaves it (registrations, bindings, one event of
// each kind a device); a third run changes nothing.
func TestCrashMidDeviceImport(t *testing.T) {
	if path := os.Getenv(importCrashEnv); path != "" {
		r := newPinRigAt(t, path)
		if _, err := r.px.Restore(time.Now()); err != nil {
			t.Fatalf("child: restore: %v", err)
		}
		acks, err := os.OpenFile(path+".acks", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		r.runImport(func(res []DeviceImportResult) {
			var b []byte
			for _, x := range res {
				j, _ := json.Marshal(x)
				b = append(append(b, j...), '\n')
			}
			if _, err := acks.Write(b); err != nil {
				t.Fatal(err)
			}
		})
		t.Fatal("child: the failpoint was not hit")
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	// The store every child starts from.
	seedPath := filepath.Join(t.TempDir(), "seed.db")
	seed := newPinRigAt(t, seedPath)
	for _, c := range []CustomerInput{{ID: "a-1", DeviceLimit: 10}, {ID: "a-2", DeviceLimit: 10}, {ID: "s-1", DeviceLimit: 10, Status: StatusSuspended}} {
		if _, err := seed.ten.CreateCustomer(ctx, op, "alpha", c); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range []string{impBound1, impBound2, impBound3, impBound4, impKept} {
		cid := "a-1"
		if m == impKept {
			cid = "a-2"
		}
		if _, err := seed.ten.AttachDevice(ctx, op, "alpha", DeviceInput{MAC: m, CustomerID: cid}); err != nil {
			t.Fatal(err)
		}
		if m == impKept {
			continue
		}
		if err := seed.st.CommitBinding(subscribers.Binding{MAC: [6]byte(mustMAC(m)), Access: "acc0", ISP: "alpha", Customer: cid,
			IP: netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)}), ServerID: netip.MustParseAddr("203.0.113.1"), Relay: netip.MustParseAddr("203.0.113.1"),
			Expires: time.Now().Add(time.Hour), LeaseTime: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	before := seed.importState()
	if err := seed.st.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(seedPath)
	if err != nil {
		t.Fatal(err)
	}
	copySeed := func(dir string) string {
		p := filepath.Join(dir, "s.db")
		if err := os.WriteFile(p, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The import without a crash: what a crashed one must converge to.
	ref := newPinRigAt(t, copySeed(t.TempDir()))
	if _, err := ref.px.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	refRes := map[int]string{}
	ref.runImport(func(res []DeviceImportResult) {
		for _, x := range res {
			refRes[x.Line] = x.Result
		}
	})
	ref.runTicks()
	want := ref.importState()
	revokedRef := 0
	for _, m := range []string{impBound1, impBound2, impBound3} {
		if want.Events["revoked "+m] != 1 {
			t.Fatalf("the reference import: revoked events %v; want one for %s", want.Events, m)
		}
		revokedRef++
	}
	if _, ok := want.Bindings[impBound4]; !ok || len(want.Bindings) != 1 {
		t.Fatalf("the reference import: bindings %v; want %s's only (moved within alpha, still served)", want.Bindings, impBound4)
	}
	// batchOf is the batch of each MAC of the import; changed, the MACs
	// each batch changes (the reference's attached and moved lines).
	batchOf := map[string]int{}
	changed := make([][]string, len(importCrashBatches))
	line := 1
	for bi, b := range importCrashBatches {
		for _, in := range b {
			m := macString([6]byte(mustMAC(in.MAC)))
			batchOf[m] = bi
			if res := refRes[line]; res == "attached" || res == "moved" {
				changed[bi] = append(changed[bi], m)
			}
			line++
		}
	}
	if ref.st.Close() != nil {
		t.Fatal("close")
	}

	type crashCase struct {
		name, point string
		acked       int // batches the child answered before it died
		done        int // batches durable in the store
	}
	cases := []crashCase{
		{"after-commit-1", failpoint.TenantAfterCommit + "@1", 0, 1},
		{"after-commit-2", failpoint.TenantAfterCommit + "@2", 1, 2},
		{"in-revalidation-2", failpoint.EndAfterIntent + "@2", 1, 2},
		{"between-2-and-3", failpoint.TenantImportBeforeBatch + "@3", 2, 2},
	}
	// Every tenant/import- failpoint is crashed at here, the only test
	// that does (e2e's TestCrashMatrixCoversEveryPoint takes them as
	// covered).
	for _, p := range failpoint.Points {
		if strings.HasPrefix(p, "tenant/import-") && !slices.ContainsFunc(cases, func(c crashCase) bool {
			return strings.HasPrefix(c.point, p+"@")
		}) {
			t.Errorf("failpoint %s: not crashed at", p)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := copySeed(t.TempDir())
			crashtest.KillAt(t, "TestCrashMidDeviceImport", importCrashEnv+"="+path, c.point)
			acked := readAcks(t, path+".acks")
			nAcked := 0
			for _, b := range importCrashBatches[:c.acked] {
				nAcked += len(b)
			}
			if len(acked) != nAcked {
				t.Fatalf("the child answered %d lines, want %d", len(acked), nAcked)
			}
			// A batch is revalidated before it is answered: the
			// bindings an answered batch revoked are gone, with their
			// revoked events, in the store as the crash left it (a
			// restart's Restore would revoke them anyway: a review).
			st, err := subscribers.Open(path, subscribers.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			crashed := storeImportState(t, st)
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			for _, m := range []string{impBound1, impBound2, impBound3} {
				if _, bound := crashed.Bindings[m]; batchOf[m] < c.acked && (bound || crashed.Events["revoked "+m] != 1) {
					t.Errorf("%s, of answered batch %d, as the crash left the store: bound %v, revoked events %d; want revoked once, before the answer",
						m, batchOf[m]+1, bound, crashed.Events["revoked "+m])
				}
			}
			r := newPinRigAt(t, path)
			if _, err := r.px.Restore(time.Now()); err != nil {
				t.Fatal(err)
			}
			r.runTicks()
			got := r.importState()
			// Every answered line is as answered.
			for _, a := range acked {
				m := a.MAC
				switch a.Result {
				case "attached", "moved", "unchanged":
					in := importCrashBatches[batchOf[m]][(a.Line-1)%4]
					if w := fmt.Sprintf("alpha/%s/%s/false/api", in.CustomerID, in.Access); got.Regs[m] != w {
						t.Errorf("line %d answered %s: stored %q, want %q", a.Line, a.Result, got.Regs[m], w)
					}
				default:
					if _, ok := got.Regs[m]; ok || a.MAC != impBad {
						t.Errorf("line %d answered %s (%s): stored %q", a.Line, a.Result, a.Error, got.Regs[m])
					}
				}
			}
			// Each batch whole (up to the crash) or not at all: its
			// registrations and their events, and the registry.
			for bi, ms := range changed {
				for _, m := range ms {
					isNew := got.Regs[m] == want.Regs[m]
					if bi < c.done && (!isNew || got.Events["device-attached "+m] != want.Events["device-attached "+m] ||
						got.Events["device-detached "+m] != want.Events["device-detached "+m]) {
						t.Errorf("batch %d (durable), %s: stored %q, events %v; want %q", bi+1, m, got.Regs[m], got.Events, want.Regs[m])
					}
					if bi >= c.done && (got.Regs[m] != before.Regs[m] || got.Events["device-attached "+m] != before.Events["device-attached "+m] ||
						got.Events["device-detached "+m] != before.Events["device-detached "+m]) {
						t.Errorf("batch %d (not begun), %s: stored %q, events %v; want %q as before", bi+1, m, got.Regs[m], got.Events, before.Regs[m])
					}
				}
			}
			for m, reg := range got.Regs {
				e, ok := r.ten.reg.Lookup(mac48(m))
				if !ok || fmt.Sprintf("%s/%s/%s/%v/%s", e.ISP, e.CustomerID, e.Access, e.Blocked, e.Source) != reg {
					t.Errorf("%s: stored %q, registry %+v %v", m, reg, e, ok)
				}
			}
			if n := r.ten.Counts()["alpha"].Devices; n != len(got.Regs) {
				t.Errorf("alpha counts %d devices, the store holds %d", n, len(got.Regs))
			}
			// No binding of a device its registration no longer allows;
			// no event twice (a binding revoked twice, a line attached
			// twice).
			checkBindings := func(when string, st importState) {
				t.Helper()
				for m, b := range st.Bindings {
					reg := st.Regs[m]
					if reg != "alpha/a-1//false/api" && reg != "alpha/a-2//false/api" || !r.tab.isBound(mac48(m)) {
						t.Errorf("%s: binding %s of %s (registered %q, forwarding %v)", when, b, m, reg, r.tab.isBound(mac48(m)))
					}
				}
				for k, n := range st.Events {
					if n > want.Events[k] {
						t.Errorf("%s: %d events %s, the import without a crash leaves %d", when, n, k, want.Events[k])
					}
				}
			}
			checkBindings("after the restart", got)
			if ins, _ := r.st.Intents(); len(ins) != 0 {
				t.Errorf("after the restart: intents %+v pending", ins)
			}
			// The same import again converges to the reference.
			rerun := func(when string, allowed ...string) {
				r.runImport(func(res []DeviceImportResult) {
					for _, x := range res {
						ok := slices.Contains(allowed, x.Result)
						if x.MAC == impBad {
							ok = x.Result == "error"
						}
						if !ok {
							t.Errorf("%s: line %d (%s → %s): %s %s", when, x.Line, x.MAC, x.CustomerID, x.Result, x.Error)
						}
					}
				})
				r.runTicks()
			}
			rerun("the import run again", "attached", "moved", "unchanged")
			again := r.importState()
			if !maps.Equal(again.Regs, want.Regs) || !maps.Equal(again.Bindings, want.Bindings) || !maps.Equal(again.Events, want.Events) {
				t.Errorf("the import run again after the crash left\n%+v\nwithout a crash:\n%+v", again, want)
			}
			checkBindings("after the import run again", again)
			rerun("the import run a third time", "unchanged")
			if third := r.importState(); !maps.Equal(third.Regs, want.Regs) || !maps.Equal(third.Bindings, want.Bindings) || !maps.Equal(third.Events, want.Events) {
				t.Errorf("the import run a third time left\n%+v\nwant\n%+v", third, want)
			}
		})
	}
}

// readAcks reads the results the child wrote (none if it wrote none).
func readAcks(t *testing.T, path string) []DeviceImportResult {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []DeviceImportResult
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var x DeviceImportResult
		if err := json.Unmarshal(sc.Bytes(), &x); err != nil {
			t.Fatalf("ack %q: %v", sc.Text(), err)
		}
		out = append(out, x)
	}
	return out
}
