package subscribers

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func testIntent(i int) *Intent {
	b := testBinding(i)
	return &Intent{
		Kind: IntentRelease, ISP: b.ISP, MAC: b.MAC, Access: b.Access, VLAN: b.VLAN, IP: b.IP,
		Message: []byte(fmt.Sprintf("release %d", i)),
	}
}

func TestEndBinding(t *testing.T) {
	numberFromOne(t)
	s, _ := openTest(t, Options{NoSync: true})
	b := testBinding(1)
	if err := s.CommitBinding(b); err != nil {
		t.Fatal(err)
	}
	in := testIntent(1)
	created := time.Date(2026, 5, 1, 2, 3, 4, 5, time.UTC)
	in.Created = created
	in.ID = 77 // ignored
	it, e, found, err := s.EndBinding(b.Access, b.VLAN, b.MAC, in,
		Event{Kind: EventReleased, MAC: b.MAC, ISP: b.ISP, IP: b.IP, Customer: "c1", Access: "acc1.101", Reason: "released"})
	if err != nil || !found {
		t.Fatalf("EndBinding = found %v, %v; want true, nil", found, err)
	}
	if it.ID != 1 || e.Seq != 1 || e.Time.IsZero() {
		t.Errorf("EndBinding returned intent ID %d, event seq %d time %v; want 1, 1, set", it.ID, e.Seq, e.Time)
	}
	if _, err := s.Binding(b.Access, b.VLAN, b.MAC); !errors.Is(err, ErrNotFound) {
		t.Errorf("binding after EndBinding: %v, want ErrNotFound", err)
	}
	ins, err := s.Intents()
	if err != nil || len(ins) != 1 {
		t.Fatalf("Intents = %+v, %v; want 1", ins, err)
	}
	want := *in
	want.ID = 1
	if !intentEqual(ins[0], want) || !intentEqual(it, want) {
		t.Errorf("intent stored %+v, returned %+v, want %+v", ins[0], it, want)
	}
	evs, err := s.Events(0, 0)
	e.Time = e.Time.UTC() // as stored: UTC, no monotonic reading
	e.ISPSeq = 0          // the whole log's reads do not number by ISP
	if err != nil || len(evs) != 1 || evs[0] != e || e.Customer != "c1" || e.Access != "acc1.101" {
		t.Errorf("Events = %+v, %v; want [%+v]", evs, err, e)
	}
	if in.ID != 77 {
		t.Error("EndBinding changed the caller's intent")
	}

	// No binding: the intent and the event are stored anyway.
	it, e, found, err = s.EndBinding(b.Access, b.VLAN, b.MAC, testIntent(1), Event{Kind: EventReleased, MAC: b.MAC})
	if err != nil || found || it.ID != 2 || e.Seq != 2 {
		t.Errorf("EndBinding of a missing binding = %d, %d, %v, %v; want 2, 2, false, nil", it.ID, e.Seq, found, err)
	}
	// No intent (expiry): the binding goes, the event is written.
	b2 := testBinding(2)
	if err := s.CommitBinding(b2); err != nil {
		t.Fatal(err)
	}
	it, e, found, err = s.EndBinding(b2.Access, b2.VLAN, b2.MAC, nil, Event{Kind: EventExpired, MAC: b2.MAC})
	if err != nil || !found || it.ID != 0 || e.Seq != 3 {
		t.Errorf("EndBinding without intent = %+v, %d, %v, %v", it, e.Seq, found, err)
	}
	if ins, _ := s.Intents(); len(ins) != 2 {
		t.Errorf("%d intents, want 2", len(ins))
	}

	// Invalid arguments change nothing.
	b3 := testBinding(3)
	if err := s.CommitBinding(b3); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		in *Intent
		e  Event
	}{
		"no event kind": {nil, Event{}},
		"intent kind":   {&Intent{Kind: "move", ISP: "a", Access: "a", IP: b3.IP, Message: []byte{1}}, Event{Kind: EventReleased}},
		"no message":    {&Intent{Kind: IntentDecline, ISP: "a", Access: "a", IP: b3.IP}, Event{Kind: EventDeclined}},
		"no IP":         {&Intent{Kind: IntentDecline, ISP: "a", Access: "a", Message: []byte{1}}, Event{Kind: EventDeclined}},
		"no ISP":        {&Intent{Kind: IntentDecline, Access: "a", IP: b3.IP, Message: []byte{1}}, Event{Kind: EventDeclined}},
		"no access":     {&Intent{Kind: IntentDecline, ISP: "a", IP: b3.IP, Message: []byte{1}}, Event{Kind: EventDeclined}},
		"huge message":  {&Intent{Kind: IntentDecline, ISP: "a", Access: "a", IP: b3.IP, Message: make([]byte, maxMessage+1)}, Event{Kind: EventDeclined}},
	} {
		if _, _, _, err := s.EndBinding(b3.Access, b3.VLAN, b3.MAC, c.in, c.e); !errors.Is(err, ErrInvalid) {
			t.Errorf("EndBinding(%s) = %v, want ErrInvalid", name, err)
		}
	}
	if _, _, _, err := s.EndBinding("", 0, b3.MAC, nil, Event{Kind: EventExpired}); !errors.Is(err, ErrInvalid) {
		t.Errorf("EndBinding with no access = %v, want ErrInvalid", err)
	}
	if _, err := s.Binding(b3.Access, b3.VLAN, b3.MAC); err != nil {
		t.Errorf("binding after refused EndBindings: %v", err)
	}
	if last, _ := s.LastEventSeq(); last != 3 {
		t.Errorf("LastEventSeq after refused EndBindings = %d, want 3", last)
	}
}

// AddIntent stores an intent on its own (a DECLINE of an address never
// bound): the subscriber's binding, if any, stays; IDs follow EndBinding's;
// an invalid intent is refused and nothing is stored.
func TestAddIntent(t *testing.T) {
	numberFromOne(t)
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	b := testBinding(1)
	if err := s.CommitBinding(b); err != nil {
		t.Fatal(err)
	}
	in := *testIntent(1)
	in.Kind, in.IP, in.ID = IntentDecline, netip.MustParseAddr("100.64.9.9"), 77
	it, err := s.AddIntent(in)
	if err != nil || it.ID != 1 || it.Created.IsZero() {
		t.Fatalf("AddIntent = %+v, %v; want ID 1, Created set", it, err)
	}
	if _, err := s.Binding(b.Access, b.VLAN, b.MAC); err != nil {
		t.Errorf("the subscriber's binding after AddIntent: %v", err)
	}
	if last, _ := s.LastEventSeq(); last != 0 {
		t.Errorf("AddIntent appended events (last seq %d)", last)
	}
	bad := in
	bad.Message = nil
	if _, err := s.AddIntent(bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddIntent without a message = %v, want ErrInvalid", err)
	}
	s.Close()
	if s, err = Open(path, Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ins, err := s.Intents()
	if err != nil || len(ins) != 1 || !intentEqual(ins[0], it) {
		t.Fatalf("Intents after reopen = %+v, %v; want [%+v]", ins, err, it)
	}
	rel := testIntent(2)
	if it2, _, _, err := s.EndBinding(rel.Access, rel.VLAN, rel.MAC, rel, Event{Kind: EventReleased}); err != nil || it2.ID != 2 {
		t.Errorf("EndBinding after AddIntent: ID %d, %v; want 2", it2.ID, err)
	}
}

// The RELEASE of a lease in an ACK ispmux did not bind is an intent of its
// own kind, stored alone (AddIntent) and read back at the next start; an
// unknown kind is refused.
func TestAddIntentReleaseUnbound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	in := *testIntent(1)
	in.Kind = IntentReleaseUnbound
	it, err := s.AddIntent(in)
	if err != nil || it.ID != 1 {
		t.Fatalf("AddIntent(%s) = %+v, %v; want ID 1", in.Kind, it, err)
	}
	bad := in
	bad.Kind = "release_all"
	if _, err := s.AddIntent(bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddIntent of kind %q = %v, want ErrInvalid", bad.Kind, err)
	}
	s.Close()
	if s, err = Open(path, Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ins, err := s.Intents(); err != nil || len(ins) != 1 || !intentEqual(ins[0], it) {
		t.Fatalf("Intents after reopen = %+v, %v; want [%+v]", ins, err, it)
	}
}

func intentEqual(a, b Intent) bool {
	return a.ID == b.ID && a.Kind == b.Kind && a.ISP == b.ISP && a.MAC == b.MAC && a.Access == b.Access &&
		a.VLAN == b.VLAN && a.IP == b.IP && bytes.Equal(a.Message, b.Message) && a.Created.Equal(b.Created)
}

// CompleteIntents deletes a batch of intents in one transaction, in any
// order given, IDs repeated or never stored not being errors; the others
// stay, across a reopen.
func TestCompleteIntents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := s.AddIntent(*testIntent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CompleteIntents(nil); err != nil {
		t.Errorf("CompleteIntents(nil): %v", err)
	}
	before := s.CommitStats().Transactions
	if err := s.CompleteIntents([]uint64{17, 3, 12, 3, 999, 1, 20}); err != nil {
		t.Fatal(err)
	}
	if n := s.CommitStats().Transactions - before; n != 1 {
		t.Errorf("CompleteIntents of 7 IDs ran %d transactions, want 1", n)
	}
	s.Close()
	s, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ins, err := s.Intents()
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, in := range ins {
		ids = append(ids, in.ID)
	}
	if got := fmt.Sprint(ids); got != "[2 4 5 6 7 8 9 10 11 13 14 15 16 18 19]" {
		t.Errorf("intents after completing 1, 3, 12, 17, 20 and a reopen: %s", got)
	}
	s.Close()
	if err := s.CompleteIntents([]uint64{2}); !errors.Is(err, ErrClosed) {
		t.Errorf("CompleteIntents on a closed store: %v, want ErrClosed", err)
	}
}

func TestCompleteIntentAndOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 { // IDs 1..12: more than 9, so byte order must be numeric order
		in := testIntent(i)
		if i%2 == 1 {
			in.Kind = IntentDecline
		}
		if _, _, _, err := s.EndBinding(in.Access, in.VLAN, in.MAC, in, Event{Kind: EventReleased}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func() []uint64 {
		t.Helper()
		ins, err := s.Intents()
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, in := range ins {
			ids = append(ids, in.ID)
			if want := fmt.Sprintf("release %d", in.ID-1); string(in.Message) != want {
				t.Errorf("intent %d has message %q, want %q", in.ID, in.Message, want)
			}
		}
		return ids
	}
	if got := fmt.Sprint(ids()); got != "[1 2 3 4 5 6 7 8 9 10 11 12]" {
		t.Errorf("Intents IDs = %s, want 1..12 in order", got)
	}
	for _, id := range []uint64{3, 10, 3, 999} { // again, and never there: not errors
		if err := s.CompleteIntent(id); err != nil {
			t.Errorf("CompleteIntent(%d): %v", id, err)
		}
	}
	if got := fmt.Sprint(ids()); got != "[1 2 4 5 6 7 8 9 11 12]" {
		t.Errorf("Intents after completing 3 and 10 = %s", got)
	}
	s.Close()

	// Pending intents survive a reopen; IDs are never reused.
	s, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := len(ids()); got != 10 {
		t.Errorf("%d intents after reopen, want 10", got)
	}
	for _, id := range ids() {
		if err := s.CompleteIntent(id); err != nil {
			t.Fatal(err)
		}
	}
	in := testIntent(0)
	it, _, _, err := s.EndBinding(in.Access, in.VLAN, in.MAC, in, Event{Kind: EventReleased})
	if err != nil || it.ID != 13 {
		t.Errorf("intent after reopen and completion: ID %d, %v; want 13", it.ID, err)
	}

	// A corrupt intent is reported; the others are returned.
	putRaw(t, s, bucketIntents, seqKey(5), []byte{2, 0xff})
	ins, err := s.Intents()
	checkCorrupt(t, "Intents", err, bucketIntents, seqKey(5))
	if len(ins) != 1 || ins[0].ID != 13 {
		t.Errorf("Intents with a corrupt one = %+v", ins)
	}
}

const endChildEnv = "SUBSCRIBERS_END_CHILD"

// TestEndBindingCrash re-executes the test binary as a child that ends
// bindings with EndBinding (intent and event) from several goroutines; the
// parent SIGKILLs it mid-stream and checks, for every binding, that either
// nothing of its EndBinding happened (binding there, no intent, no event)
// or all of it did (binding gone, its intent and its event there).
func TestEndBindingCrash(t *testing.T) {
	if path := os.Getenv(endChildEnv); path != "" {
		endChild(path)
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary; skipped in -short")
	}
	const n = 4000
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestEndBindingCrash$", "-test.count=1")
	cmd.Env = append(os.Environ(), endChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ended := map[int]bool{}
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "ended ")
		if !ok {
			continue
		}
		i, err := strconv.Atoi(line)
		if err != nil {
			t.Fatalf("child printed %q", sc.Text())
		}
		ended[i] = true
		if len(ended) == 300 && !killed {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !killed || !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed mid-stream: killed=%v, wait: %v", killed, err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer s.Close()
	bound := map[int]bool{}
	bs, err := s.Bindings()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		bound[macIndex(b.MAC)] = true
	}
	intent := map[int]bool{}
	ins, err := s.Intents()
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		intent[macIndex(in.MAC)] = true
	}
	event := map[int]bool{}
	evs, err := s.Events(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		event[macIndex(e.MAC)] = true
	}
	torn := 0
	for i := range n {
		if bound[i] == intent[i] || intent[i] != event[i] {
			torn++
			if torn <= 5 {
				t.Errorf("binding %d: bound %v, intent %v, event %v: EndBinding was not atomic", i, bound[i], intent[i], event[i])
			}
		}
		if ended[i] && bound[i] {
			t.Errorf("binding %d: EndBinding returned, yet the binding is there after the crash", i)
		}
	}
	if len(ins) != len(evs) {
		t.Errorf("%d intents, %d events", len(ins), len(evs))
	}
	t.Logf("child reported %d EndBindings before it died; the file holds %d intents, %d bindings", len(ended), len(ins), len(bs))
}

func macIndex(m MAC) int { return int(m[2])<<24 | int(m[3])<<16 | int(m[4])<<8 | int(m[5]) }

// endChild ends every binding from 8 goroutines, then waits to be killed.
func endChild(path string) {
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	const workers = 8
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := g; i < 4000; i += workers {
				b := testBinding(i)
				_, _, found, err := s.EndBinding(b.Access, b.VLAN, b.MAC, testIntent(i), Event{Kind: EventReleased, MAC: b.MAC})
				if err != nil || !found {
					fmt.Fprintln(os.Stderr, "child:", found, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(w, "ended %d\n", i)
				w.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	time.Sleep(time.Hour)
}

// TestBindingV2Fields: the fields schema 2 added round-trip, and their
// bounds are enforced.
func TestBindingV2Fields(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	b := testBinding(1)
	b.ClientID = []byte{1, 2, 0, 0, 0, 1, 1}
	b.Option82 = []byte{1, 8, 'a', 'c', 'c', '1', ':', '1', '0', '1', 6, 2, 'c', '1'}
	b.Options = []byte{1, 4, 255, 255, 255, 0, 3, 4, 100, 64, 0, 1, 6, 8, 8, 8, 8, 8, 1, 1, 1, 1, 51, 4, 0, 0, 14, 16}
	b.LeaseTime = time.Hour
	b.Customer = "c1"
	if err := s.CommitBinding(b); err != nil {
		t.Fatal(err)
	}
	got, err := s.Binding(b.Access, b.VLAN, b.MAC)
	if err != nil || !bindingEqual(got, normB(b)) {
		t.Errorf("Binding = %+v, %v\nwant %+v", got, err, b)
	}
	// The stored bytes are the store's: changing the caller's slice after
	// the commit changes nothing, nor does changing what a read returned.
	b.ClientID[0] = 9
	got.Options[0] = 9
	if again, _ := s.Binding(b.Access, b.VLAN, b.MAC); again.ClientID[0] != 1 || again.Options[0] != 1 {
		t.Error("stored bytes alias a caller's slice")
	}
	// At the bounds: accepted; beyond: refused.
	b.ClientID, b.Option82, b.Options = make([]byte, 255), make([]byte, 255), make([]byte, 1500)
	if err := s.CommitBinding(b); err != nil {
		t.Errorf("CommitBinding at the bounds: %v", err)
	}
	for name, f := range map[string]func(*Binding){
		"client id":  func(b *Binding) { b.ClientID = make([]byte, 256) },
		"option 82":  func(b *Binding) { b.Option82 = make([]byte, 256) },
		"options":    func(b *Binding) { b.Options = make([]byte, 1501) },
		"lease time": func(b *Binding) { b.LeaseTime = -time.Second },
	} {
		bb := testBinding(2)
		f(&bb)
		if err := s.CommitBinding(bb); !errors.Is(err, ErrInvalid) {
			t.Errorf("CommitBinding with too big %s: %v, want ErrInvalid", name, err)
		}
	}
	// Empty byte fields read back as nil.
	b = testBinding(3)
	b.ClientID = []byte{}
	if err := s.CommitBinding(b); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Binding(b.Access, b.VLAN, b.MAC); got.ClientID != nil {
		t.Errorf("empty ClientID read back as %#v, want nil", got.ClientID)
	}
}

// TestBindingEqualCoversFields keeps bindingEqual (which the tests compare
// bindings with, Binding not being comparable) in step with Binding.
func TestBindingEqualCoversFields(t *testing.T) {
	full := func() Binding {
		return Binding{MAC: mac(1), Access: "a", VLAN: 1, ISP: "i", IP: netip.MustParseAddr("10.0.0.1"), Circuit: "c",
			ServerID: netip.MustParseAddr("10.0.0.2"), Relay: netip.MustParseAddr("10.0.0.3"), Expires: time.Unix(1, 0),
			Updated: time.Unix(2, 0), ClientID: []byte{1}, Option82: []byte{2}, Options: []byte{3}, LeaseTime: 1, Customer: "x",
			Boot: make([]byte, BootLen), Since: time.Unix(3, 0)}
	}
	changes := []func(*Binding){
		func(b *Binding) { b.MAC[0]++ }, func(b *Binding) { b.Access += "x" }, func(b *Binding) { b.VLAN++ },
		func(b *Binding) { b.ISP += "x" }, func(b *Binding) { b.IP = b.IP.Next() }, func(b *Binding) { b.Circuit += "x" },
		func(b *Binding) { b.ServerID = b.ServerID.Next() }, func(b *Binding) { b.Relay = b.Relay.Next() },
		func(b *Binding) { b.Expires = b.Expires.Add(1) }, func(b *Binding) { b.Updated = b.Updated.Add(1) },
		func(b *Binding) { b.ClientID[0]++ }, func(b *Binding) { b.Option82[0]++ }, func(b *Binding) { b.Options[0]++ },
		func(b *Binding) { b.LeaseTime++ }, func(b *Binding) { b.Customer += "x" }, func(b *Binding) { b.Boot[0]++ },
		func(b *Binding) { b.Since = b.Since.Add(1) },
	}
	if n := len(changes); n != reflectNumField(Binding{}) {
		t.Fatalf("Binding has %d fields, the test changes %d: update bindingEqual and this test", reflectNumField(Binding{}), n)
	}
	for i, ch := range changes {
		b := full()
		ch(&b)
		if bindingEqual(full(), b) {
			t.Errorf("bindingEqual misses change %d", i)
		}
	}
}

// IntentsOrderedFrom is set at the first open by a build that records it,
// past every intent ID given out before (an older ispmux's), and kept by
// later opens: the intents of this build are at or above it.
func TestIntentsOrderedFrom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.IntentsOrderedFrom(); got != 1 {
		t.Fatalf("a new file: IntentsOrderedFrom %d, want 1", got)
	}
	for i := range 3 {
		if _, err := s.AddIntent(*testIntent(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The file as an older ispmux left it: no marker.
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyIntentsFrom) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for range 2 {
		s, err = Open(path, Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.IntentsOrderedFrom(); got != 4 {
			t.Errorf("IntentsOrderedFrom %d, want 4 (past the older build's 3 intents)", got)
		}
		it, err := s.AddIntent(*testIntent(9))
		if err != nil || it.ID < s.IntentsOrderedFrom() {
			t.Errorf("AddIntent = ID %d, %v: want at or above %d", it.ID, err, s.IntentsOrderedFrom())
		}
		s.Close()
	}
}

// TestEndBindings: many bindings end in batches of endBatch (a restart's
// expired ones), each removed with its event, the events numbered in the
// order given; one not stored ends nothing but still has its event, as
// EndBinding's.
func TestEndBindings(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	const n = endBatch + 100
	var ends []BindingEnd
	for i := range n {
		b := testBinding(i)
		if err := s.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, BindingEnd{Access: b.Access, VLAN: b.VLAN, MAC: b.MAC,
			Event: Event{Kind: EventExpired, MAC: b.MAC, ISP: b.ISP, IP: b.IP, Reason: fmt.Sprint("lease expired ", i)}})
	}
	gone := testBinding(n) // never stored
	ends = append(ends, BindingEnd{Access: gone.Access, VLAN: gone.VLAN, MAC: gone.MAC, Event: Event{Kind: EventExpired, MAC: gone.MAC}})
	tx0 := s.CommitStats().Transactions
	evs, err := s.EndBindings(ends)
	if err != nil || len(evs) != n+1 {
		t.Fatalf("EndBindings: %d events, %v", len(evs), err)
	}
	if tx := s.CommitStats().Transactions - tx0; tx > 2 {
		t.Errorf("%d bindings ended in %d transactions, want 2", n, tx)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq != evs[i-1].Seq+1 {
			t.Fatalf("event %d has seq %d after %d", i, evs[i].Seq, evs[i-1].Seq)
		}
	}
	stored, err := s.Events(evs[0].Seq-1, 10)
	if err != nil || len(stored) == 0 || stored[0].Reason != "lease expired 0" {
		t.Errorf("first stored event %+v, %v", stored, err)
	}
	left := 0
	if err := s.ForEachBindingBorrowed(func(*Binding) error { left++; return nil }); err != nil || left != 0 {
		t.Errorf("%d bindings left, %v", left, err)
	}
}

// TestEndBindingsIfExpires: an end with Expires (a start's, of a binding
// it found lapsed, run beside its DHCP) removes the binding only while the
// stored one has that expiry: one committed since stays. The lapsed lease
// has its expired event when the binding since is of another address (a
// review: a webhook consumer saw the new lease bound and never the old one
// end), saying so, and none when it is of the same one (an expired event
// after its bound one would say the live address ended).
func TestEndBindingsIfExpires(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	lapsed, rebound, same, gone := testBinding(1), testBinding(2), testBinding(4), testBinding(3)
	for _, b := range []Binding{lapsed, rebound, same, gone} {
		if err := s.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	again := rebound
	again.Expires = rebound.Expires.Add(time.Hour)
	again.IP = netip.MustParseAddr("100.64.9.9")
	sameAgain := same
	sameAgain.Expires = same.Expires.Add(time.Hour)
	for _, b := range []Binding{again, sameAgain} {
		if err := s.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DeleteBinding(gone.Access, gone.VLAN, gone.MAC); err != nil {
		t.Fatal(err)
	}
	var ends []BindingEnd
	for _, b := range []Binding{lapsed, rebound, same, gone} {
		ends = append(ends, BindingEnd{Access: b.Access, VLAN: b.VLAN, MAC: b.MAC, Expires: b.Expires,
			Event: Event{Kind: EventExpired, MAC: b.MAC, ISP: b.ISP, IP: b.IP, Reason: "lease expired while ispmux was stopped"}})
	}
	evs, err := s.EndBindings(ends)
	if err != nil || len(evs) != 3 {
		t.Fatalf("EndBindings: events %+v, %v; want the lapsed, rebound and gone ones'", evs, err)
	}
	for _, e := range evs {
		if e.MAC == same.MAC {
			t.Errorf("an expired event for a lease bound again at the same address: %+v", e)
		}
		if e.MAC == rebound.MAC && !strings.Contains(e.Reason, "bound again since at 100.64.9.9") {
			t.Errorf("the rebound lease's event does not say so: %q", e.Reason)
		}
	}
	if stored, _ := s.Events(0, 10); len(stored) != 3 {
		t.Errorf("%d events stored, want 3", len(stored))
	}
	if _, err := s.Binding(lapsed.Access, lapsed.VLAN, lapsed.MAC); err == nil {
		t.Error("the lapsed binding is still stored")
	}
	for _, b := range []Binding{again, sameAgain} {
		if got, err := s.Binding(b.Access, b.VLAN, b.MAC); err != nil || got.IP != b.IP {
			t.Errorf("the binding committed since: %+v, %v; want it kept", got, err)
		}
	}
}

// TestEndBindingsWithIntents: an end with an intent stores it in its end's
// transaction (a start ending a removed circuit's bindings, each with its
// RELEASE): each intent stored once, its ID set in the caller's Intent,
// with the bindings gone and their events; an intent with a conditional
// end (Expires) is refused before anything is written.
func TestEndBindingsWithIntents(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	const n = endBatch + 10
	var ends []BindingEnd
	ins := make([]Intent, n)
	for i := range n {
		b := testBinding(i)
		if err := s.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
		e := BindingEnd{Access: b.Access, VLAN: b.VLAN, MAC: b.MAC, Event: Event{Kind: EventRevoked, MAC: b.MAC, ISP: b.ISP, IP: b.IP}}
		if i%2 == 0 {
			ins[i] = Intent{Kind: IntentRelease, ISP: b.ISP, MAC: b.MAC, Access: b.Access, VLAN: b.VLAN, IP: b.IP, Message: []byte{1, byte(i)}}
			e.Intent = &ins[i]
		}
		ends = append(ends, e)
	}
	bad := ends[1]
	bad.Expires = time.Now()
	bad.Intent = &Intent{Kind: IntentRelease, ISP: "a", IP: netip.MustParseAddr("100.64.0.1"), Message: []byte{1}}
	if _, err := s.EndBindings([]BindingEnd{ends[0], bad}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an intent with Expires: %v, want ErrInvalid", err)
	}
	if got, _ := s.Intents(); len(got) != 0 {
		t.Fatalf("%d intents stored by a refused EndBindings", len(got))
	}
	tx0 := s.CommitStats().Transactions
	evs, err := s.EndBindings(ends)
	if err != nil || len(evs) != n {
		t.Fatalf("EndBindings: %d events, %v", len(evs), err)
	}
	if tx := s.CommitStats().Transactions - tx0; tx != 2 {
		t.Errorf("%d ends in %d transactions, want 2", n, tx)
	}
	stored, err := s.Intents()
	if err != nil || len(stored) != (n+1)/2 {
		t.Fatalf("%d intents stored, %v; want %d", len(stored), err, (n+1)/2)
	}
	byID := map[uint64]Intent{}
	for _, in := range stored {
		byID[in.ID] = in
	}
	for i := 0; i < n; i += 2 {
		got, ok := byID[ins[i].ID]
		if ins[i].ID == 0 || !ok || got.MAC != ins[i].MAC || !bytes.Equal(got.Message, ins[i].Message) || got.Created.IsZero() {
			t.Fatalf("end %d: intent %+v in the caller, stored %+v (%v)", i, ins[i], got, ok)
		}
	}
	left := 0
	if err := s.ForEachBindingBorrowed(func(*Binding) error { left++; return nil }); err != nil || left != 0 {
		t.Errorf("%d bindings left, %v", left, err)
	}
}
