package dhcpproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/crashtest"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
	bolt "go.etcd.io/bbolt"
)

func (r *prig) setUplinkDown(down bool) {
	r.tab.mu.Lock()
	r.tab.uplinkDown = down
	r.tab.mu.Unlock()
}

// A RELEASE ends the binding through an intent: binding gone, intent and
// released event stored in one transaction, then the RELEASE sent and the
// intent completed. With the ISP unreachable the intent stays pending; a
// restarted proxy on the same store sends it (replay) and completes it.
func TestReleaseIntentReplayed(t *testing.T) {
	r := newPRig(t)
	r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil)
	r.snd.take()
	r.setUplinkDown(true)
	rel, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithClientIP(net.IPv4(100, 64, 0, 100)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice()))),
		dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, []byte{1, 2, 0, 0, 0, 1, 1}))
	r.fromClient(rel)
	if sent := r.snd.take(); len(sent) != 0 {
		t.Fatalf("sent %d frames with the ISP unreachable", len(sent))
	}
	if r.tab.isBound(0x020000000101) {
		t.Error("still forwarding after RELEASE")
	}
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac("02:00:00:00:01:01"))); err == nil {
		t.Error("binding still stored")
	}
	ins, err := r.store.Intents()
	if err != nil || len(ins) != 1 || ins[0].Kind != subscribers.IntentRelease || ins[0].IP.String() != "100.64.0.100" {
		t.Fatalf("intents %+v, %v; want the RELEASE pending", ins, err)
	}
	evs, _ := r.store.Events(0, 10)
	last := evs[len(evs)-1]
	if last.Kind != subscribers.EventReleased || last.Customer != "c-s1" || last.Access != "acc0" || last.ISP != "alpha" {
		t.Errorf("last event %+v, want released with customer and access", last)
	}

	// Restart: a new proxy on the same store, the ISP reachable again.
	r.setUplinkDown(false)
	p2 := New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil)
	if _, err := p2.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	if p2.PendingIntents() != 1 {
		t.Fatalf("pending intents after restore %d, want 1", p2.PendingIntents())
	}
	p2.expire(time.Now())
	sent := r.snd.take()
	if len(sent) != 1 || sent[0].port != upPort {
		t.Fatalf("replay sent %d frames, want the RELEASE to the ISP", len(sent))
	}
	m := dhcpOf(sent[0].frame)
	if m.MessageType() != dhcpv4.MessageTypeRelease || !m.ClientIPAddr.Equal(net.IPv4(100, 64, 0, 100)) ||
		!bytes.Equal(m.Options.Get(dhcpv4.OptionClientIdentifier), []byte{1, 2, 0, 0, 0, 1, 1}) ||
		!m.Options.Has(dhcpv4.OptionRelayAgentInformation) || !m.ServerIdentifier().Equal(net.IP(ispSID.AsSlice())) {
		t.Errorf("replayed %v, want the subscriber's RELEASE as relayed (client-id, Option 82, the ISP's server-id)", m)
	}
	// Completed by a tick once the queued frame is surely on the wire,
	// not at once.
	if ins, _ := r.store.Intents(); len(ins) != 1 {
		t.Errorf("intent completed as soon as its frame was queued: %+v", ins)
	}
	p2.expire(time.Now().Add(time.Second))
	if sent := r.snd.take(); len(sent) != 0 {
		t.Errorf("the RELEASE was sent again (%d frames)", len(sent))
	}
	if ins, _ := r.store.Intents(); len(ins) != 0 || p2.PendingIntents() != 0 {
		t.Errorf("intents after the replay: %+v", ins)
	}
	if c := p2.Counters(); c["intent_replayed"] != 1 {
		t.Errorf("counters %v", c)
	}
}

// A renewal the ISP grants is a renewed event, stored with the binding;
// the binding keeps the client identifier, our Option 82, the ACK's
// options and the lease time.
func TestRenewedAndBindingKeepsACK(t *testing.T) {
	r := newPRig(t)
	r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil)
	r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil)
	evs, _ := r.store.Events(0, 10)
	if len(evs) != 2 || evs[0].Kind != subscribers.EventBound || evs[1].Kind != subscribers.EventRenewed ||
		evs[1].Customer != "c-s1" || evs[1].Access != "acc0" || evs[1].LeaseEnd.Before(time.Now().Add(50*time.Second)) {
		t.Fatalf("events %+v, want bound then renewed (with customer and access)", evs)
	}
	b, err := r.store.Binding("acc0", 0, [6]byte(mac("02:00:00:00:01:01")))
	if err != nil {
		t.Fatal(err)
	}
	if b.LeaseTime != time.Minute || b.Customer != "c-s1" || len(b.Option82) == 0 {
		t.Errorf("binding %+v: want lease time, customer and Option 82", b)
	}
	opts := dhcpv4.Options{}
	if err := opts.FromBytes(append(append([]byte{}, b.Options...), 255)); err != nil {
		t.Fatalf("stored options %x do not parse: %v", b.Options, err)
	}
	if !opts.Has(dhcpv4.OptionIPAddressLeaseTime) || opts.Has(dhcpv4.OptionRelayAgentInformation) {
		t.Errorf("stored options %v: want the ACK's (lease time), never Option 82", opts)
	}
}

// Refusals are folded per (MAC, kind, reason), budgeted per ISP and for
// the refusals naming no configured ISP (of unregistered MACs, and of
// registered ones where they are not bound), and what a budget holds back
// is summed up in a suppressed event.
func TestRefusalBudgets(t *testing.T) {
	r := newPRig(t)
	// Two different forgeries by one MAC are two events.
	forged := discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:02")), dhcpv4.WithGatewayIP(net.IPv4(10, 1, 1, 1)))
	r.fromClient(forged)
	forged2 := discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:02")), dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, []byte{1, 1, 'x'}))
	r.fromClient(forged2)
	// A flood of unregistered MACs spends the budget of no ISP only.
	for i := range 300 {
		r.fromClient(discover(t, dhcpv4.WithHwAddr(net.HardwareAddr{0x02, 0x66, 0, 0, byte(i >> 8), byte(i)})))
	}
	// alpha's subscriber is refused (blocked): still recorded.
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac("02:00:00:00:01:01")), CustomerID: "c-s1", ISP: "alpha", Blocked: true, Source: "api"}); err != nil {
		t.Fatal(err)
	}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	r.p.notes.wait()
	r.p.summarize(time.Now().Add(time.Hour))
	evs, _ := r.store.Events(0, 1000)
	var forgeries, unknown, blocked int
	var suppressed []subscribers.Event
	for _, e := range evs {
		switch {
		case e.Kind == subscribers.EventRejected && strings.Contains(e.Reason, "refused"):
			forgeries++
		case e.Kind == subscribers.EventUnknown:
			unknown++
		case e.Kind == subscribers.EventBlocked:
			blocked++
			if e.Customer != "c-s1" || e.Access != "acc0" {
				t.Errorf("blocked event %+v without customer and access", e)
			}
		case e.Kind == subscribers.EventSuppressed:
			suppressed = append(suppressed, e)
		}
	}
	if forgeries != 2 {
		t.Errorf("%d forgery events, want 2 (folded per reason)", forgeries)
	}
	if blocked != 1 {
		t.Errorf("%d blocked events for alpha's subscriber after an unregistered flood, want 1", blocked)
	}
	// The forgeries (no ISP known for them) share the unregistered budget.
	if unknown+forgeries < noiseBurst || unknown >= 300 {
		t.Errorf("%d unknown events, want the budget's worth", unknown)
	}
	// Its summary says what the budget counts: the forgeries are of a
	// registered MAC not bound here (it said "refusals of unregistered
	// MACs").
	if want := " refusals naming no configured ISP (of unregistered MACs, of registered ones where they are not bound, or at an ISP no longer configured) not recorded"; len(suppressed) != 1 || suppressed[0].ISP != "" || !strings.Contains(suppressed[0].Reason, want) {
		t.Fatalf("suppressed events %+v, want one of no ISP saying %q", suppressed, want)
	}
	if want := 300 - unknown; !strings.HasPrefix(suppressed[0].Reason, strconv.Itoa(want)+" refusals") {
		t.Errorf("suppressed event %q, want %d refusals", suppressed[0].Reason, want)
	}
}

// A renewal and a RELEASE back to back: the ISP answers the REQUEST after
// it got the RELEASE... or before; either way the late ACK must not bind
// the subscriber again (the ISP freed the lease with the RELEASE).
func TestReleaseDropsInFlightRenewal(t *testing.T) {
	r := newPRig(t)
	r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil)
	r.snd.take()
	r.pastT1(31 * time.Second) // the renewal goes to the ISP
	renew, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.IPv4(100, 64, 0, 100)))
	r.fromClient(renew)
	toISP := r.snd.take() // the relayed REQUEST, answered below after the RELEASE
	if len(toISP) != 1 || toISP[0].port != upPort {
		t.Fatalf("renewal: %d frames, want it relayed", len(toISP))
	}
	rel := releaseOf100(t)
	r.fromClient(rel)
	r.snd.take()
	r.snd.mu.Lock()
	r.snd.frames = toISP
	r.snd.mu.Unlock()
	r.serve(kea(t, time.Minute))
	if r.tab.isBound(0x020000000101) {
		t.Error("bound again by the ACK of a renewal sent before the RELEASE")
	}
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac("02:00:00:00:01:01"))); err == nil {
		t.Error("binding stored again")
	}
}

// releasedWhileDown binds 02:00:00:00:01:01, has it RELEASE while its
// ISP's uplink is down (the RELEASE stays a pending intent), and restarts
// the proxy on the same store, the uplink up again if up.
func releasedWhileDown(t *testing.T, up bool) *prig {
	t.Helper()
	r := newPRig(t)
	r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil)
	r.snd.take()
	r.setUplinkDown(true)
	rel := releaseOf100(t)
	r.fromClient(rel)
	r.setUplinkDown(!up)
	p2 := New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil)
	if _, err := p2.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	r.p = p2
	return r
}

// After a restart with a RELEASE still pending, the subscriber's next
// DISCOVER reaches the ISP only after that RELEASE (a replayed RELEASE
// arriving after the new DORA would free the lease the ISP just granted).
func TestPendingReleaseGoesFirst(t *testing.T) {
	r := releasedWhileDown(t, true)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	sent := r.snd.take()
	if len(sent) != 2 {
		t.Fatalf("sent %d frames, want the RELEASE then the DISCOVER", len(sent))
	}
	if a, b := dhcpOf(sent[0].frame).MessageType(), dhcpOf(sent[1].frame).MessageType(); a != dhcpv4.MessageTypeRelease || b != dhcpv4.MessageTypeDiscover {
		t.Errorf("sent %v then %v, want RELEASE then DISCOVER", a, b)
	}
	r.p.expire(time.Now().Add(time.Second))
	if ins, _ := r.store.Intents(); len(ins) != 0 {
		t.Errorf("intent still pending: %+v", ins)
	}
}

// A RELEASE still pending (its 200 ms not over) when the subscriber bound
// again at the same ISP: the ISP's ACK proves the RELEASE on the wire (the
// same uplink queue carried it before the new DISCOVER), so the intent is
// completed, durably, before the new binding is committed. A crash after
// the ACK leaves no RELEASE to send again: it would free the new lease.
func TestSupersededIntentNotReplayed(t *testing.T) {
	r := newPRig(t)
	r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil)
	r.snd.take()
	rel := releaseOf100(t)
	r.fromClient(rel)
	if sent := r.snd.take(); len(sent) != 1 {
		t.Fatalf("RELEASE: %d frames", len(sent))
	}
	r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil)
	r.snd.take()
	if ins, _ := r.store.Intents(); len(ins) != 0 || r.p.Counters()["intent_superseded"] != 1 {
		t.Fatalf("intents %+v, counters %v: want the RELEASE completed by the new binding's commit", ins, r.p.Counters())
	}
	p2 := New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil)
	if _, err := p2.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	p2.expire(time.Now())
	if sent := r.snd.take(); len(sent) != 0 {
		t.Errorf("the superseded RELEASE was sent again (%d frames)", len(sent))
	}
	if _, ok := p2.Lease(accPort, 0, 0x020000000101); !ok {
		t.Error("the new binding was not restored")
	}
}

// The same with the clock stepped back an hour between the RELEASE and the
// new DORA (NTP correcting a clock that ran ahead), and ispmux killed
// before the RELEASE's completion: the new binding's Updated is then older
// than the intent's Created. The restore decided by those two times: it
// took the RELEASE for one no new exchange followed and sent it again,
// and the ISP freed the lease the subscriber had just been granted
// (phantom: ispmux forwards for it, the ISP may give the address away).
func TestReleaseNotReplayedOverNewLeaseAfterClockStepBack(t *testing.T) {
	const step = time.Hour
	r := newPRig(t)
	r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil)
	r.snd.take()
	rel := releaseOf100(t)
	r.fromClient(rel)
	if sent := r.snd.take(); len(sent) != 1 {
		t.Fatalf("RELEASE: %d frames", len(sent))
	}
	r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil)
	r.snd.take()
	// The clock stepped back before the DORA: the binding as the proxy
	// wrote it then, its times an hour earlier (the store's clock is the
	// system's; the intent's Created was taken before the step).
	m := [6]byte(mac("02:00:00:00:01:01"))
	b, err := r.store.Binding("acc0", 0, m)
	if err != nil {
		t.Fatal(err)
	}
	b.Updated, b.Expires = b.Updated.Add(-step), b.Expires.Add(-step)
	if err := r.store.CommitBinding(b); err != nil {
		t.Fatal(err)
	}

	// Killed now; the restart runs on the stepped-back clock.
	now := time.Now().Add(-step)
	p2 := New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil)
	if _, err := p2.Restore(now); err != nil {
		t.Fatal(err)
	}
	p2.expire(now)
	for _, m := range r.sentUp(dhcpv4.MessageTypeRelease) {
		t.Errorf("the RELEASE sent before the new DORA was sent again after it: the ISP frees the new lease of %v", m.ClientIPAddr)
	}
	if _, ok := p2.Lease(accPort, 0, 0x020000000101); !ok {
		t.Error("the new binding was not restored")
	}
}

// legacyReleaseBesideNewBinding leaves in r's store what an ispmux
// killed within 200 ms of a DORA that followed a RELEASE leaves: the
// RELEASE's intent pending beside the binding granted after it. With
// older true, the file is then made one an older ispmux wrote (no
// intents-ordered-from marker: that build did not complete the intent
// before committing the binding) and opened again. It returns the store
// to restart on.
func legacyReleaseBesideNewBinding(t *testing.T, r *prig, older bool) *subscribers.Store {
	t.Helper()
	now := time.Now()
	m := [6]byte(mac("02:00:00:00:01:01"))
	rel, _ := dhcpv4.New(dhcpv4.WithHwAddr(m[:]), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithClientIP(net.IPv4(100, 64, 0, 100)))
	if _, err := r.store.AddIntent(subscribers.Intent{Kind: subscribers.IntentRelease, ISP: "alpha", MAC: m, Access: "acc0",
		IP: netip.MustParseAddr("100.64.0.100"), Message: rel.ToBytes(), Created: now.Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := r.store.CommitBinding(subscribers.Binding{MAC: m, Access: "acc0", ISP: "alpha",
		IP: netip.MustParseAddr("100.64.0.100"), Expires: now.Add(time.Hour), Updated: now}); err != nil {
		t.Fatal(err)
	}
	if !older {
		return r.store
	}
	path := r.store.Path()
	if err := r.store.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Delete([]byte("intents-ordered-from")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	st, err := subscribers.Open(path, subscribers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r.tab.store = st
	return st
}

// An ispmux upgraded from a build that left a RELEASE pending beside the
// binding granted after it (it completed such an intent at its next start,
// by comparing the intent's Created with the binding's Updated): the first
// start of this build sent that RELEASE, and the ISP freed the new lease
// (phantom). The intents of an older build keep that build's rule.
func TestOlderBuildsReleaseBesideNewBindingNotReplayed(t *testing.T) {
	r := newPRig(t)
	st := legacyReleaseBesideNewBinding(t, r, true)
	p2 := New(r.p.config(), st, storeRegistry{st}, r.tab, r.snd, nil)
	if _, err := p2.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	p2.expire(time.Now())
	for _, m := range r.sentUp(dhcpv4.MessageTypeRelease) {
		t.Errorf("an older build's RELEASE sent before the new binding was sent again: the ISP frees the lease of %v", m.ClientIPAddr)
	}
	if ins, _ := st.Intents(); len(ins) != 0 || p2.Counters()["intent_superseded"] != 1 {
		t.Errorf("intents left %d, counters %v: want the older build's RELEASE completed", len(ins), p2.Counters())
	}
}

// The same store state written by this build (the intent not completed
// before the binding was committed cannot have preceded it: completeAnswered)
// is not judged by the clocks: the RELEASE is sent.
func TestThisBuildsPendingReleaseSentBesideBinding(t *testing.T) {
	r := newPRig(t)
	st := legacyReleaseBesideNewBinding(t, r, false)
	p2 := New(r.p.config(), st, storeRegistry{st}, r.tab, r.snd, nil)
	if _, err := p2.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	p2.expire(time.Now())
	released := len(r.sentUp(dhcpv4.MessageTypeRelease)) > 0
	if !released || p2.Counters()["intent_superseded"] != 0 {
		t.Errorf("released %v, counters %v: want this build's pending RELEASE sent", released, p2.Counters())
	}
}

// A device holds a binding at alpha on acc0 and one at alpha on a circuit
// removed while ispmux was stopped; the previous run wrote the acc0 one
// with its clock an hour ahead of the restart's (a box without an RTC
// starts with its clock behind until NTP). The restore ends the removed
// circuit's binding with a RELEASE intent, which waits for alpha's next
// hop (not resolved yet at a start). The restore then compared the acc0
// binding's Updated with that fresh intent's Created, took the binding
// for a newer exchange and completed the RELEASE unsent: alpha kept the
// removed circuit's lease until it ran out, counting its customer online.
func TestRestoreReleaseSentAfterClockStepBack(t *testing.T) {
	r := newPRig(t)
	now := time.Now()
	ahead := now.Add(time.Hour) // the previous run's clock
	m := [6]byte(mac("02:00:00:00:01:01"))
	for _, b := range []subscribers.Binding{
		{MAC: m, Access: "acc0", ISP: "alpha", IP: netip.MustParseAddr("100.64.0.100"), Expires: ahead.Add(time.Hour), Updated: ahead},
		{MAC: m, Access: "gone", ISP: "alpha", IP: netip.MustParseAddr("100.64.0.101"), Expires: ahead.Add(time.Hour), Updated: ahead.Add(-time.Minute)},
	} {
		if err := r.store.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	r.setUplinkDown(true) // the ISP's next hop is not resolved yet
	p2 := New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil)
	if _, err := p2.Restore(now); err != nil {
		t.Fatal(err)
	}
	r.setUplinkDown(false)
	p2.expire(now)
	released := false
	for _, s := range r.snd.take() {
		if m := dhcpOf(s.frame); s.port == upPort && m != nil && m.MessageType() == dhcpv4.MessageTypeRelease &&
			m.ClientIPAddr.Equal(net.IPv4(100, 64, 0, 101)) {
			released = true
		}
	}
	if !released {
		ins, _ := r.store.Intents()
		t.Errorf("alpha was never sent the RELEASE of the removed circuit's lease (intents left %d, counters %v)", len(ins), p2.Counters())
	}
	if _, ok := p2.Lease(accPort, 0, 0x020000000101); !ok {
		t.Error("the acc0 binding was not restored")
	}
}

// The other order of the same race: the ISP's ACK of a renewal is being
// committed (bindAndAck, on its own goroutine) when the subscriber's
// RELEASE ends the binding. Whichever runs second sees the other: an ACK
// of a transaction started before the end binds nothing.
func TestACKOfEarlierGenerationBindsNothing(t *testing.T) {
	r := newPRig(t)
	r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil)
	r.snd.take()
	r.pastT1(31 * time.Second) // the renewal goes to the ISP
	renew, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.IPv4(100, 64, 0, 100)))
	r.fromClient(renew)
	toISP := r.snd.take()
	req := dhcpOf(toISP[0].frame)
	ack := kea(t, time.Minute)(req)
	// The transaction as the ACK found it, taken before the RELEASE.
	t0 := r.p.tx.get(pendKey{req.TransactionID, 0x020000000101, 0})
	if t0 == nil {
		t.Fatal("no transaction for the renewal")
	}
	rel := releaseOf100(t)
	r.fromClient(rel)
	r.snd.take()
	payload := ack.ToBytes()
	r.p.bindAndAck(t0, ack, relayDown(payload, ourSID, time.Minute), ackOptions(payload), bootFields(payload), ispSID)
	if r.tab.isBound(0x020000000101) {
		t.Error("the renewal's ACK bound the subscriber after its RELEASE")
	}
	if c := r.p.Counters(); c["ack_after_end"] != 1 {
		t.Errorf("counters %v", c)
	}
}

const declineCrashEnv = "DHCPPROXY_DECLINE_CRASH_CHILD"

// inUse is the address the ISP ACKs in TestCrashDecliningAnAddressInUse,
// held at alpha by a static customer.
var inUse = binding.Binding{Port: accPort, MAC: 0x020000000199, IP: netip.MustParseAddr("100.64.0.100"), Static: true}

// The ISP ACKs an address a static customer holds: ispmux declines it on
// the subscriber's behalf through an intent (stored, the DECLINE sent and
// the subscriber NAKed, the intent completed by a later tick). ispmux is
// SIGKILLed at each step (the child, armed at the failpoint, runs the DORA
// and ticks past intentSettle), then restarted twice: the DECLINE not known
// to be on the wire is sent once after the restart, one completed is not
// sent again, and the address is never bound to the subscriber. Before,
// the DECLINE was sent directly and a crash before it left lost it: the
// ISP kept a lease of the address in conflict until it expired.
func TestCrashDecliningAnAddressInUse(t *testing.T) {
	if path := os.Getenv(declineCrashEnv); path != "" {
		r := switchRigAt(t, path)
		if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(s1)), CustomerID: "c-s1", ISP: "alpha", Source: "api"}); err != nil {
			t.Fatal(err)
		}
		r.tab.bound[inUse.MAC] = inUse
		r.dora(s1, kea(t, time.Hour), nil)
		r.p.expire(time.Now())
		r.p.expire(time.Now().Add(time.Second))
		t.Fatal("child: the failpoint was not hit")
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	for _, c := range endCrashPoints {
		t.Run(c.point, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			crashtest.KillAt(t, "TestCrashDecliningAnAddressInUse", declineCrashEnv+"="+path, c.point)
			for restart := 1; restart <= 2; restart++ {
				r := switchRigAt(t, path)
				r.tab.bound[inUse.MAC] = inUse
				wantIns, wantDeclines := 0, 0
				if c.pending && restart == 1 {
					wantIns, wantDeclines = 1, 1
				}
				if ins, _ := r.store.Intents(); len(ins) != wantIns {
					t.Fatalf("restart %d after a crash at %s: %d intents stored, want %d", restart, c.point, len(ins), wantIns)
				}
				if _, err := r.p.Restore(time.Now()); err != nil {
					t.Fatal(err)
				}
				r.p.expire(time.Now())
				r.p.expire(time.Now().Add(time.Second))
				decs := r.sentUp(dhcpv4.MessageTypeDecline)
				for _, m := range decs {
					if !m.RequestedIPAddress().Equal(net.IP(inUse.IP.AsSlice())) || !bytes.Equal(m.ClientHWAddr, mac(s1)) ||
						!m.Options.Has(dhcpv4.OptionRelayAgentInformation) {
						t.Errorf("restart %d: DECLINE %v, want %v of %s with our Option 82", restart, m, inUse.IP, s1)
					}
				}
				declines := len(decs)
				if declines != wantDeclines {
					t.Errorf("restart %d after a crash at %s: %d DECLINEs to alpha, want %d", restart, c.point, declines, wantDeclines)
				}
				if n := r.p.PendingIntents(); n != 0 {
					t.Errorf("restart %d: %d intents still pending after the tick", restart, n)
				}
				if _, ok := r.p.Lease(accPort, 0, s1MAC); ok {
					t.Errorf("restart %d: the subscriber holds the address in use", restart)
				}
				if _, err := r.store.Binding("acc0", 0, [6]byte(mac(s1))); !errors.Is(err, subscribers.ErrNotFound) {
					t.Errorf("restart %d: the subscriber's binding is stored: %v", restart, err)
				}
				if err := r.store.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

const refusedReleaseCrashEnv = "DHCPPROXY_REFUSED_RELEASE_CRASH_CHILD"

// refusedAddr is the address the ISP ACKs without a lease time in
// TestCrashReleasingRefusedAck.
var refusedAddr = netip.MustParseAddr("100.64.0.101")

// The ISP ACKs a REQUEST without a lease time: ispmux refuses the ACK
// (NAK) and releases the lease to the ISP's server through an intent
// (stored alone, the RELEASE sent, the intent completed by a later tick).
// ispmux is SIGKILLed at each step (the child, armed at the failpoint, runs
// the exchange and ticks past intentSettle), then restarted twice: the
// RELEASE not known to be on the wire is sent once after the restart, one
// completed is not sent again, and nothing is bound. Before, the RELEASE
// was sent directly and a crash before it left lost it: the ISP held the
// address for a client that never got it until its lease ran out.
func TestCrashReleasingRefusedAck(t *testing.T) {
	if path := os.Getenv(refusedReleaseCrashEnv); path != "" {
		r := switchRigAt(t, path)
		if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(s1)), CustomerID: "c-s1", ISP: "alpha", Source: "api"}); err != nil {
			t.Fatal(err)
		}
		r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(refusedAddr.AsSlice()))),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice())))))
		r.p.committing.Wait()
		r.serve(atAddr(kea(t, 0), refusedAddr))
		r.p.expire(time.Now())
		r.p.expire(time.Now().Add(time.Second))
		t.Fatal("child: the failpoint was not hit")
	}
	if !failpoint.Enabled {
		t.Skip("needs -tags failpoints")
	}
	for _, c := range endCrashPoints {
		t.Run(c.point, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			crashtest.KillAt(t, "TestCrashReleasingRefusedAck", refusedReleaseCrashEnv+"="+path, c.point)
			for restart := 1; restart <= 2; restart++ {
				r := switchRigAt(t, path)
				wantIns, wantReleases := 0, 0
				if c.pending && restart == 1 {
					wantIns, wantReleases = 1, 1
				}
				if ins, _ := r.store.Intents(); len(ins) != wantIns {
					t.Fatalf("restart %d after a crash at %s: %d intents stored, want %d", restart, c.point, len(ins), wantIns)
				}
				if _, err := r.p.Restore(time.Now()); err != nil {
					t.Fatal(err)
				}
				r.p.expire(time.Now())
				r.p.expire(time.Now().Add(time.Second))
				rels := r.sentUp(dhcpv4.MessageTypeRelease)
				for _, m := range rels {
					if !m.ClientIPAddr.Equal(net.IP(refusedAddr.AsSlice())) || !bytes.Equal(m.ClientHWAddr, mac(s1)) ||
						!m.ServerIdentifier().Equal(net.IP(ispSID.AsSlice())) || !m.Options.Has(dhcpv4.OptionRelayAgentInformation) {
						t.Errorf("restart %d: RELEASE %v, want %v of %s to %v with our Option 82", restart, m, refusedAddr, s1, ispSID)
					}
				}
				releases := len(rels)
				if releases != wantReleases {
					t.Errorf("restart %d after a crash at %s: %d RELEASEs to alpha, want %d", restart, c.point, releases, wantReleases)
				}
				if n := r.p.PendingIntents(); n != 0 {
					t.Errorf("restart %d: %d intents still pending after the tick", restart, n)
				}
				if _, err := r.store.Binding("acc0", 0, [6]byte(mac(s1))); !errors.Is(err, subscribers.ErrNotFound) {
					t.Errorf("restart %d: the subscriber's binding is stored: %v", restart, err)
				}
				if err := r.store.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// releaseOf100 is 02:00:00:00:01:01's RELEASE of 100.64.0.100 (the
// address kea gives it in these tests), naming our server identifier.
func releaseOf100(t *testing.T) *dhcpv4.DHCPv4 {
	t.Helper()
	rel, err := dhcpv4.New(dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithClientIP(net.IPv4(100, 64, 0, 100)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice()))))
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

// Close writes the summary of the refusals a budget held back since the
// last one: before, it was written only when due (once a noiseSummary,
// from the tick), so a shutdown within 10 s of a flood lost the count of
// every refusal held back (the appliance closes the store after the
// proxy), and the operator's log no longer accounted for them. Run wrote
// it on its way out then, which missed the refusals of the frames the
// control plane (stopped by the same cancel) handed the proxy after Run
// had returned: those made after Run returned are counted too.
func TestRefusalSummaryAtClose(t *testing.T) {
	r := newPRig(t)
	r.p.summarize(time.Now()) // the last summary: the next is not due for 10 s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.p.Run(ctx); close(done) }()
	const flood = 3 * noiseBurst
	refuse := func(from, to int) {
		for i := from; i < to; i++ {
			r.p.refuse(subscribers.EventUnknown, subject{mac: 0x026600000000 + uint64(i), access: "acc0"}, netip.Addr{}, "not registered")
		}
	}
	refuse(0, flood/2)
	cancel()
	<-done
	refuse(flood/2, flood)
	r.p.Close()
	evs, _ := r.store.Events(0, 1000)
	var recorded, counted int
	for _, e := range evs {
		switch e.Kind {
		case subscribers.EventUnknown:
			recorded++
		case subscribers.EventSuppressed:
			var n int
			fmt.Sscanf(e.Reason, "%d ", &n)
			counted += n
		}
	}
	if counted == 0 || recorded+counted != flood || counted != int(r.p.Counters()["events_suppressed"]) {
		t.Errorf("%d refusals, half of them after Run returned: %d recorded + %d counted in a summary (events_suppressed %d)",
			flood, recorded, counted, r.p.Counters()["events_suppressed"])
	}
}
