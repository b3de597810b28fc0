package e2e

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/internal/privtest"
	"github.com/ispmux/ispmux/lab"
)

// nakLease is Kea's lease time and ispmux's client_lease_max (its
// shortest) in TestDhcpcdRenewalNaked: dhcpcd renews at 15 s (T1) and
// rebinds at 26.25 s (T2), and every renewal is relayed to Kea (the ISP's
// lease never has client_lease_max left to answer it locally).
const nakLease = 30 * time.Second

// nakRebindWithin is how soon after a renewal's NAK dhcpcd must be bound
// again (ispmux's bound event: dhcpcd's REQUEST ACKed; dhcpcd then probes
// the address by ARP for about 5 s before it configures it): a NAK it
// does not read leaves it renewing unanswered until T2, 11.25 s later.
const nakRebindWithin = 3 * time.Second

// TestDhcpcdRenewalNaked: dhcpcd 9.4 (Debian 12) reads a RENEWING
// exchange's answers on a socket bound to its leased address only, so a
// NAK broadcast to 255.255.255.255 (RFC 2131 §4.1) went unread and it
// renewed unanswered until T2. ispmux's own NAK (the store restored from
// a copy made before the client bound: its renewal finds no binding) and
// an ISP's NAK relayed (Kea finds the leased address another client's)
// go to the REQUEST's ciaddr: dhcpcd starts over and is bound again
// within nakRebindWithin of each NAK.
func TestDhcpcdRenewalNaked(t *testing.T) {
	t.Parallel()
	privtest.Lab(t)
	privtest.Tool(t, "dhcpcd") // Debian's dhcpcd-base (lab/deps.sh)
	r := newRig(t, lab.Options{Subscribers: 1, DHCP: true, LeaseTime: nakLease, ClientLeaseMax: nakLease})
	r.start()
	ctx := context.Background()
	s1 := r.sub("s1")
	before := filepath.Join(r.dir, "before-s1.db")
	if _, err := ctlsock.Backup(ctx, r.sock(), before, false); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd := r.dhcpcdCmd(s1)
	cmd.Stdout, cmd.Stderr = out, out
	startClientKeepOut(t, cmd)
	if _, ok := r.waitAddr(s1, 20*time.Second); !ok {
		t.Fatalf("dhcpcd got no address\n%s\nispmux:\n%s", out.String(), r.log.String())
	}
	if !eventually(5*time.Second, func() bool { _, ok := r.bound(s1.MAC); return ok }) {
		t.Fatalf("s1 not bound\n%s", out.String())
	}

	// ispmux's own NAK: the store as it was before s1 bound (a restore
	// from a backup), so its renewal at T1 is "not your lease".
	r.stop()
	if err := copyFile(before, filepath.Join(r.dir, "state", appliance.StoreName)); err != nil {
		t.Fatal(err)
	}
	r.start()
	if _, ok := r.bound(s1.MAC); ok {
		t.Fatalf("s1 bound in the store restored from before it bound")
	}
	r.reboundAfterNak(t, "ispmux's NAK", s1, "request_nak", out)

	// The ISP's NAK: Kea's lease of s1's address given to another client
	// behind ispmux's back, so Kea NAKs s1's next renewal (relayed).
	b, _ := r.bound(s1.MAC)
	isp := r.isp(s1.ISP)
	if _, err := isp.KeaCommand(ctx, "lease4-del", map[string]string{"ip-address": b.IP}); err != nil {
		t.Fatal(err)
	}
	if _, err := isp.KeaCommand(ctx, "lease4-add", map[string]any{"ip-address": b.IP, "hw-address": "02:00:00:00:ee:01",
		"subnet-id": lab.DHCPSubnetID, "valid-lft": 3600}); err != nil {
		t.Fatal(err)
	}
	r.reboundAfterNak(t, "the ISP's NAK", s1, "nak", out)
	if b2, ok := r.bound(s1.MAC); ok && b2.IP == b.IP {
		t.Errorf("after the ISP's NAK s1 is bound to %s, the address Kea gave another client", b2.IP)
	}
}

// reboundAfterNak waits (a lease at most) for ispmux's DHCP counter
// naks to count a NAK to sub, then for sub's next bound event, and fails
// unless it came within nakRebindWithin of the NAK.
func (r *rig) reboundAfterNak(t *testing.T, what string, sub lab.Sub, naks string, out *syncBuffer) {
	t.Helper()
	base := r.mustStatus().DHCP[naks]
	// The events before the NAK: sub's rebinding may follow the NAK by
	// less than a poll, so they are taken now, not once it is seen.
	evs := r.events()
	var after uint64
	if len(evs) > 0 {
		after = evs[len(evs)-1].Seq
	}
	start := time.Now()
	var nakAt time.Time
	for deadline := start.Add(nakLease + 5*time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if st, err := r.status(); err == nil && st.DHCP[naks] > base {
			nakAt = time.Now()
			break
		}
	}
	if nakAt.IsZero() {
		t.Fatalf("%s: no NAK (%s) within %v\ndhcpcd:\n%s\nispmux:\n%s", what, naks, nakLease+5*time.Second, out.String(), r.log.String())
	}
	for deadline := nakAt.Add(nakLease); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, e := range r.events() {
			if e.Seq > after && e.MAC == sub.MAC && e.Kind == "bound" {
				// From the NAK as seen (polled) to the bound event as
				// stamped: at most a poll short.
				took := max(e.Time.Sub(nakAt), 0)
				t.Logf("%s: the NAK %v into the wait, dhcpcd bound again %v after it (%s)", what,
					nakAt.Sub(start).Round(10*time.Millisecond), took.Round(10*time.Millisecond), e.IP)
				if took > nakRebindWithin {
					t.Errorf("%s: dhcpcd bound again %v after the renewal's NAK, want within %v (the NAK unread: renewing until T2)\ndhcpcd:\n%s",
						what, took.Round(10*time.Millisecond), nakRebindWithin, out.String())
				}
				return
			}
		}
	}
	t.Fatalf("%s: not bound again within %v of the NAK\ndhcpcd:\n%s\nispmux:\n%s", what, nakLease, out.String(), r.log.String())
}

// copyFile copies the file src to dst, replacing it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	o, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(o, in); err != nil {
		o.Close()
		return err
	}
	return o.Close()
}
