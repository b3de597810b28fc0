package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
)

// TestKill9CheckFindsViolations feeds bench kill9's check listings that
// break the rule (an acknowledged binding lost or moved, a revoked or
// released one back, one never bound) and listings that do not (a release
// within the grace of the kill, an outcome unknown at the kill).
func TestKill9CheckFindsViolations(t *testing.T) {
	const n = 8
	newModel := func() *k9Model {
		m := newK9Model(n)
		for i := range n {
			m.seeded[scaleMAC(i)] = i
		}
		return m
	}
	seededOK := func() map[subscribers.MAC]netip.Addr {
		got := map[subscribers.MAC]netip.Addr{}
		for i := range n {
			got[scaleMAC(i)] = scaleIP(i)
		}
		return got
	}
	gen := subscribers.MAC(genMAC(0))
	genIP := netip.MustParseAddr("100.64.9.9")
	kill := time.Now().Add(time.Hour) // every note is long before it

	t.Run("clean", func(t *testing.T) {
		m := newModel()
		m.note(gen, k9Bound, genIP, "ack")
		got := seededOK()
		got[gen] = genIP
		if c := m.check(got, kill, time.Second); c.Bad() != 0 || c.Expected != n+1 {
			t.Fatalf("check = %+v, want no violation and %d expected", c, n+1)
		}
	})
	t.Run("seeded lost and moved", func(t *testing.T) {
		got := seededOK()
		delete(got, scaleMAC(3))
		got[scaleMAC(4)] = netip.MustParseAddr("10.9.9.9")
		if c := newModel().check(got, kill, time.Second); c.Lost != 1 || c.WrongIP != 1 || c.Bad() != 2 {
			t.Fatalf("check = %+v, want 1 lost and 1 wrong", c)
		}
	})
	t.Run("acked lost", func(t *testing.T) {
		m := newModel()
		m.note(gen, k9Bound, genIP, "ack")
		if c := m.check(seededOK(), kill, time.Second); c.Lost != 1 || c.Bad() != 1 {
			t.Fatalf("check = %+v, want 1 lost", c)
		}
	})
	t.Run("revoked back", func(t *testing.T) {
		m := newModel()
		if !m.revoking(scaleMAC(2)) {
			t.Fatal("revoking a seeded bound MAC refused")
		}
		m.revoked(scaleMAC(2), true, "device-del")
		if c := m.check(seededOK(), kill, time.Second); c.Resurrected != 1 || c.Bad() != 1 {
			t.Fatalf("check = %+v, want 1 resurrected", c)
		}
	})
	t.Run("released back", func(t *testing.T) {
		m := newModel()
		m.note(scaleMAC(5), k9Released, scaleIP(5), "release")
		if c := m.check(seededOK(), kill, time.Second); c.Resurrected != 1 || c.Bad() != 1 {
			t.Fatalf("check = %+v, want 1 resurrected", c)
		}
	})
	t.Run("released ended, probed", func(t *testing.T) {
		// Releases ended (not found) serve as probes of the store's
		// check: those within probeWindow of the kill, at most
		// maxProbes; one longer before, or found bound, is none.
		m := newModel()
		now := time.Now()
		for i := range 5 {
			m.note(scaleMAC(i), k9Released, scaleIP(i), "release")
			m.e[scaleMAC(i)].at = now.Add(-10 * time.Second)
		}
		m.e[scaleMAC(0)].at = now.Add(-2 * probeWindow)
		got := seededOK()
		for i := range 5 {
			delete(got, scaleMAC(i))
		}
		c := m.check(got, now, time.Second)
		if c.Bad() != 0 || len(c.probes) != maxProbes {
			t.Fatalf("check = %+v, probes %v, want %d probes and no violation", c, c.probes, maxProbes)
		}
		for _, r := range c.probes {
			if i, ok := m.seeded[r.mac]; !ok || i == 0 || r.ip != scaleIP(i) {
				t.Fatalf("probe %v: outside the window, or its address wrong", r)
			}
		}
		// No kill: no probes (no grace to be beyond).
		m = newModel()
		m.note(scaleMAC(1), k9Released, scaleIP(1), "release")
		got = seededOK()
		delete(got, scaleMAC(1))
		if c := m.check(got, time.Time{}, time.Second); len(c.probes) != 0 {
			t.Fatalf("probes without a kill: %v", c.probes)
		}
	})
	t.Run("released within the grace", func(t *testing.T) {
		m := newModel()
		m.note(scaleMAC(5), k9Released, scaleIP(5), "release")
		c := m.check(seededOK(), time.Now(), time.Second)
		if c.Bad() != 0 || c.ReleasedNew != 1 || c.ReleasedNewFound != 1 {
			t.Fatalf("check = %+v, want the release taken as found", c)
		}
		// The log check looks for the released address: the release
		// found must carry it.
		if len(c.foundInGrace) != 1 || c.foundInGrace[0].mac != scaleMAC(5) || c.foundInGrace[0].ip != scaleIP(5) || len(c.FoundInGrace) != 1 {
			t.Fatalf("found within the grace: %v %q, want %s with %s", c.foundInGrace, c.FoundInGrace, macText(scaleMAC(5)), scaleIP(5))
		}
		// And a log line of its release is found by it.
		log := "time=" + time.Now().UTC().Format(time.RFC3339Nano) + " level=INFO msg=\"dhcp released\" mac=" + macText(scaleMAC(5)) + " isp=alpha ip=" + scaleIP(5).String() + " reason=x\n"
		path := filepath.Join(t.TempDir(), "ispmux.log")
		if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := releasesLogged(path, c.foundInGrace); len(got) != 1 {
			t.Fatalf("releasesLogged = %v, want the release", got)
		}
		// Taken as found: bound from now on, so losing it is a loss.
		got := seededOK()
		delete(got, scaleMAC(5))
		if c := m.check(got, kill, time.Second); c.Lost != 1 {
			t.Fatalf("second check = %+v, want 1 lost", c)
		}
	})
	t.Run("unknown outcome adopted", func(t *testing.T) {
		m := newModel()
		m.note(gen, k9Pending, netip.Addr{}, "dora")
		got := seededOK()
		got[gen] = genIP
		if c := m.check(got, kill, time.Second); c.Bad() != 0 || c.Adopted != 1 {
			t.Fatalf("check = %+v, want the DORA adopted", c)
		}
		if ip, ok := m.bound(gen); !ok || ip != genIP {
			t.Fatalf("after the check bound(gen) = %v %v, want %v", ip, ok, genIP)
		}
	})
	t.Run("never bound", func(t *testing.T) {
		got := seededOK()
		got[gen] = genIP
		got[subscribers.MAC{2, 0x77, 0, 0, 0, 1}] = genIP
		m := newModel()
		m.idle(gen) // touched, holding nothing
		if c := m.check(got, kill, time.Second); c.Unexpected != 2 || c.Bad() != 2 {
			t.Fatalf("check = %+v, want 2 unexpected", c)
		}
	})
}

// TestKill9Lab runs bench kill9 at 100k seeded subscribers, one crash of
// each kind (a random instant, right after an ACK, a RELEASE, an API
// revocation, and during a restart) with one clean restart: no
// acknowledged binding lost, none released or revoked back, and the churn
// did reach ispmux (bindings made, released and revoked between crashes).
func TestKill9Lab(t *testing.T) {
	dir, exe, labID := newBenchLab(t, "k9")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := Main(ctx, []string{"kill9", "--subscribers", "100000", "--crashes", "5", "--clean-every", "5", "--json",
		"--id", labID, "--out", filepath.Join(dir, "out"), "--exe", exe}, &stdout, &stderr)
	t.Logf("stderr:\n%s", stderr.String())
	if err != nil {
		t.Fatalf("bench kill9: %v", err)
	}
	var r Kill9Result
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Crashes) != 5 || r.Violations != 0 {
		t.Fatalf("%d crashes, %d violations, want 5 and 0", len(r.Crashes), r.Violations)
	}
	for _, c := range r.Crashes {
		if c.Ops == 0 || c.Check.Expected < 90000 || c.RestartS <= 0 {
			t.Errorf("crash %d (%s): %d operations, %d bindings expected, restart %v s", c.N, c.Kind, c.Ops, c.Check.Expected, c.RestartS)
		}
	}
	// The check of releases found bound against the store, checked: ends
	// known committed were looked up the same way and found (a miss
	// fails the run).
	probes := 0
	for _, c := range r.Crashes {
		probes += c.Check.ProbesFound
	}
	if probes == 0 {
		t.Errorf("no stored release end probed in %d crashes", len(r.Crashes))
	}
	if r.Crashes[4].CleanRestartS <= 0 {
		t.Errorf("no clean restart after crash 5")
	}
	for _, what := range []string{"ack", "release", "block", "device-del"} {
		if r.Counts[what] == 0 {
			t.Errorf("no %s in the churn: %v", what, r.Counts)
		}
	}
}

// TestKill9ReleasesLogged: a RELEASE found bound after the restart is
// told from one ispmux never handled by the killed process's log line
// for that MAC and address, stamped after the RELEASE was sent (in its
// millisecond at the earliest).
func TestKill9ReleasesLogged(t *testing.T) {
	at := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	a := k9Release{scaleMAC(1), scaleIP(1), at}
	b := k9Release{scaleMAC(2), scaleIP(2), at}
	c := k9Release{scaleMAC(3), scaleIP(3), at}
	// d: sent 0.7 ms into a millisecond, logged in that millisecond
	// (the stamp cut below the send); e: an earlier release of the
	// same MAC and address, 0.5 s before this RELEASE.
	d := k9Release{scaleMAC(4), scaleIP(4), at.Add(5*time.Second + 700*time.Microsecond)}
	e := k9Release{scaleMAC(5), scaleIP(5), at.Add(10 * time.Second)}
	log := "time=2026-12-07T04:00:00.120Z level=INFO msg=\"dhcp released\" mac=" + macText(a.mac) + " isp=alpha ip=" + a.ip.String() + " reason=\"the subscriber released its lease\"\n" +
		// b: another address; c: released long before this RELEASE.
		"time=2026-12-07T04:00:00.130Z level=INFO msg=\"dhcp released\" mac=" + macText(b.mac) + " isp=alpha ip=10.99.0.1 reason=x\n" +
		"time=2026-12-07T03:50:00.000Z level=INFO msg=\"dhcp released\" mac=" + macText(c.mac) + " isp=alpha ip=" + c.ip.String() + " reason=x\n" +
		"time=2026-12-07T04:00:05.000Z level=INFO msg=\"dhcp released\" mac=" + macText(d.mac) + " isp=alpha ip=" + d.ip.String() + " reason=x\n" +
		"time=2026-12-07T04:00:09.500Z level=INFO msg=\"dhcp released\" mac=" + macText(e.mac) + " isp=alpha ip=" + e.ip.String() + " reason=x\n"
	path := filepath.Join(t.TempDir(), "ispmux.log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	got := releasesLogged(path, []k9Release{a, b, c, d, e})
	if len(got) != 2 || got[0] != a || got[1] != d {
		t.Fatalf("releasesLogged = %v, want only %v and %v", got, a, d)
	}
	if got := releasesLogged(filepath.Join(t.TempDir(), "none"), []k9Release{a}); got != nil {
		t.Fatalf("no log: %v", got)
	}
}

// TestKill9ReleasedIn: a release's end is told from the MAC's stored
// events by a "released" event of its address stamped at or after the
// RELEASE was sent; an earlier one (a release before it), another
// address, or another kind is not it.
func TestKill9ReleasedIn(t *testing.T) {
	at := time.Date(2026, 12, 7, 4, 0, 0, 500, time.UTC)
	r := k9Release{scaleMAC(1), scaleIP(1), at}
	ev := func(kind, ip string, t time.Time) tenants.Event {
		return tenants.Event{Kind: kind, MAC: macText(r.mac), IP: ip, Time: t}
	}
	for _, tc := range []struct {
		name string
		evs  []tenants.Event
		want bool
	}{
		{"none", nil, false},
		{"released after", []tenants.Event{ev("bound", r.ip.String(), at.Add(-time.Minute)), ev("released", r.ip.String(), at.Add(time.Millisecond))}, true},
		{"released in the same nanosecond", []tenants.Event{ev("released", r.ip.String(), at)}, true},
		{"released before it", []tenants.Event{ev("released", r.ip.String(), at.Add(-time.Nanosecond))}, false},
		{"another address", []tenants.Event{ev("released", "10.99.0.1", at.Add(time.Second))}, false},
		{"another kind", []tenants.Event{ev("expired", r.ip.String(), at.Add(time.Second))}, false},
	} {
		if got := releasedIn(tc.evs, r); got != tc.want {
			t.Errorf("%s: releasedIn = %v, want %v", tc.name, got, tc.want)
		}
	}
}
