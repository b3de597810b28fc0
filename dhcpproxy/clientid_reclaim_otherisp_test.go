package dhcpproxy

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/subscribers"
)

// betaDown is the rig's tables with beta's next hop unresolved.
type betaDown struct{ *fakeTables }

func (b betaDown) NextHopMAC(isp uint8) (uint64, bool) {
	if isp == 1 {
		return 0, false
	}
	return b.fakeTables.NextHopMAC(isp)
}

// The holder's pending RELEASE to another ISP (beta, unreachable) does not
// hold the owner's messages at alpha (a review: it held them for as long
// as beta was down).
func TestClientIDReclaimNotHeldByOtherISP(t *testing.T) {
	const s2 = "02:00:00:00:01:02"
	r, _ := newSRig(t)
	ownerID := squat(t, r, s2)
	r.snd.take()
	r.p.tables = betaDown{r.tab}
	// s2's RELEASE to beta, the ISP it left, not sent yet (beta's router unresolved).
	r.p.intents.add(subscribers.Intent{ID: 1 << 40, Kind: subscribers.IntentRelease, ISP: "beta", MAC: [6]byte(mac(s2)),
		Access: "acc0", IP: netip.MustParseAddr("100.64.9.9"), Message: []byte{1}}, false)
	relayed := 0
	for i := range 5 {
		r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, ownerID)))
		r.p.committing.Wait()
		r.p.flushIntents(time.Now().Add(time.Duration(i+1) * time.Second))
	}
	for _, s := range r.snd.take() {
		if s.port != upPort {
			continue
		}
		m := dhcpOf(s.frame)
		if m.MessageType() == dhcpv4.MessageTypeDiscover && net.HardwareAddr(m.ClientHWAddr).String() == s1 {
			relayed++
		}
	}
	if relayed == 0 {
		t.Errorf("s1's DISCOVERs at alpha never relayed while s2's RELEASE to beta waits (counters %v)", r.p.Counters())
	}
}
