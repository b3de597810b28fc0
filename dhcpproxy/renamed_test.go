package dhcpproxy

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// keaNames is keaT1 echoing the client's names as Kea does: option 12 as
// sent, option 81 with the N flag (no DNS update), in the client's
// encoding, lower-cased, fully qualified (a partial name gets
// "isp.example") with a final dot.
func keaNames(t *testing.T) func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := keaT1(t, time.Hour, 30*time.Minute)(m)
		if rep == nil || rep.MessageType() == dhcpv4.MessageTypeNak {
			return rep
		}
		if h := m.Options.Get(dhcpv4.OptionHostName); len(h) > 0 {
			rep.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionHostName, h))
		}
		if f := m.Options.Get(dhcpv4.OptionFQDN); len(f) > 3 {
			name := strings.ToLower(fqdnName(f))
			if !strings.Contains(name, ".") {
				name += ".isp.example"
			}
			rep.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionFQDN, fqdnOpt(0x08|f[0]&fqdnEncoded, name+".")))
		}
		return rep
	}
}

// fqdnOpt is option 81 data: flags, RCODEs 0, name (ASCII, or DNS wire
// format with the E flag; a final dot ends it with the root label).
func fqdnOpt(flags byte, name string) []byte {
	out := []byte{flags, 0, 0}
	if flags&fqdnEncoded == 0 {
		return append(out, name...)
	}
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		out = append(out, byte(len(l)))
		out = append(out, l...)
	}
	if strings.HasSuffix(name, ".") {
		out = append(out, 0)
	}
	return out
}

// A renewal before the ISP's T1 naming the host otherwise than the ISP's
// ACK echoed (a device renamed: dhcpcd's option 12, Windows' option 81)
// is relayed, not answered with the old name from the binding; the ISP's
// ACK with the new name is committed and later renewals are local again.
// Letter case, the final dot and the domain (the ISP qualifying a
// partial name, or putting its own) are no rename. Seen in a field trial: a renamed dhcpcd host and a renamed
// Windows-like client were answered locally with their old names, and
// the ISP's Kea kept recording them.
func TestRenamedClientRenewalRelayed(t *testing.T) {
	for _, c := range []struct {
		name             string
		code             dhcpv4.OptionCode
		bound, same, new []byte
	}{
		{"host name (12)", dhcpv4.OptionHostName, []byte("rpi-trial"), []byte("RPI-Trial"), []byte("rpi-renamed")},
		{"FQDN (81) ASCII", dhcpv4.OptionFQDN, fqdnOpt(0, "DESKTOP-TRIAL.corp.example"), fqdnOpt(0, "desktop-trial.corp.example."),
			fqdnOpt(0, "RENAMED-PC.corp.example")},
		{"FQDN (81) partial, wire format", dhcpv4.OptionFQDN, fqdnOpt(fqdnEncoded, "laptop"), fqdnOpt(fqdnEncoded|0x01, "Laptop"),
			fqdnOpt(fqdnEncoded, "laptop2")},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, _ := newSRig(t)
			named := func(v []byte) dhcpv4.Modifier { return dhcpv4.WithGeneric(c.code, v) }
			r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), named(c.bound)))
			offer := r.serve(keaNames(t))
			if len(offer) != 1 || offer[0].MessageType() != dhcpv4.MessageTypeOffer {
				t.Fatalf("got %v, want an OFFER", offer)
			}
			req, _ := dhcpv4.NewRequestFromOffer(offer[0], named(c.bound))
			r.fromClient(req)
			if ack := r.serve(keaNames(t)); len(ack) != 1 || ack[0].MessageType() != dhcpv4.MessageTypeAck {
				t.Fatalf("got %v, want an ACK", ack)
			}
			renew := func(v []byte) *dhcpv4.DHCPv4 {
				return clientMsg(t, s1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(s1Addr)), named(v))
			}
			for _, v := range [][]byte{c.bound, c.same} {
				r.fromClient(renew(v))
				if sent := r.toPorts(); len(sent[upPort]) != 0 || len(sent[accPort]) != 1 {
					t.Fatalf("renewal naming %q: sent %v, want a local answer", v, sent)
				}
			}
			r.fromClient(renew(c.new))
			got := r.serve(keaNames(t))
			if cs := r.p.Counters(); cs["renewal_renamed"] != 1 || cs["relayed_request"] != 2 {
				t.Errorf("renamed renewal: counters %v, want it relayed (renewal_renamed 1)", cs)
			}
			if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
				t.Fatalf("renamed renewal: got %v, want the ISP's ACK", got)
			}
			if echoed := got[0].Options.Get(c.code); !sameName(nameOf(c.code, c.new), nameOf(c.code, echoed)) {
				t.Errorf("renamed renewal answered with %q, not the new name", echoed)
			}
			// The ISP's ACK of the new name committed: local again.
			r.fromClient(renew(c.new))
			if sent := r.toPorts(); len(sent[upPort]) != 0 || len(sent[accPort]) != 1 {
				t.Errorf("renewal under the new name after the ISP's ACK: sent %v, want a local answer", sent)
			}
		})
	}
}

func nameOf(code dhcpv4.OptionCode, v []byte) string {
	if code == dhcpv4.OptionFQDN {
		return fqdnName(v)
	}
	return string(v)
}

func TestSameNameAndFQDN(t *testing.T) {
	for _, c := range []struct {
		c, s string
		want bool
	}{
		{"host", "HOST", true}, {"host.", "host", true}, {"host", "host.isp.example.", true},
		{"host.corp.example", "host.isp.example.", true}, {"a.b", "a.b.c", true},
		{"host", "hostname", false}, {"host", "other.host", false}, {"host.a", "hostb.a", false}, {"", "host", false},
	} {
		if got := sameName(c.c, c.s); got != c.want {
			t.Errorf("sameName(%q, %q) = %v, want %v", c.c, c.s, got, c.want)
		}
	}
	for _, c := range []struct {
		v    []byte
		want string
	}{
		{fqdnOpt(0, "a.example"), "a.example"},
		{fqdnOpt(fqdnEncoded, "a.example."), "a.example"},
		{[]byte{fqdnEncoded, 0, 0, 5, 'a'}, ""}, // label overruns
		{[]byte{0, 0, 0}, ""},
		{nil, ""},
	} {
		if got := fqdnName(c.v); got != c.want {
			t.Errorf("fqdnName(%x) = %q, want %q", c.v, got, c.want)
		}
	}
}

// An ISP's server that names the client itself (a reservation's host
// name, Kea's ddns-replace-client-name, a name made from the address) in
// option 12 or 81 of its ACK, whatever the client calls itself: the
// client's renewals, under the name it always had, are no rename, and are
// answered locally (once the ISP's ACK to a REQUEST under that name is
// known). They were relayed, every one (renewal_renamed), since the
// ACK's name never became the client's: the ISP heard each client's
// renewals at the client lease's pace instead of its own T1's.
func TestServerNamedClientRenewalLocal(t *testing.T) {
	for _, c := range []struct {
		name           string
		code           dhcpv4.OptionCode
		client, server []byte
	}{
		{"host name (12)", dhcpv4.OptionHostName, []byte("raspberrypi"), []byte("cpe-100-64-0-5")},
		{"FQDN (81)", dhcpv4.OptionFQDN, fqdnOpt(fqdnEncoded, "DESKTOP-1"), fqdnOpt(fqdnEncoded|0x08, "dyn-100-64-0-5.isp.example.")},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, _ := newSRig(t)
			named := dhcpv4.WithGeneric(c.code, c.client)
			serverNames := func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
				rep := keaT1(t, time.Hour, 30*time.Minute)(m)
				if rep != nil && rep.MessageType() != dhcpv4.MessageTypeNak {
					rep.UpdateOption(dhcpv4.OptGeneric(c.code, c.server))
				}
				return rep
			}
			r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), named))
			offer := r.serve(serverNames)
			if len(offer) != 1 || offer[0].MessageType() != dhcpv4.MessageTypeOffer {
				t.Fatalf("got %v, want an OFFER", offer)
			}
			req, _ := dhcpv4.NewRequestFromOffer(offer[0], named)
			r.fromClient(req)
			if ack := r.serve(serverNames); len(ack) != 1 || ack[0].MessageType() != dhcpv4.MessageTypeAck {
				t.Fatalf("got %v, want an ACK", ack)
			}
			for i := range 3 {
				r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.ParseIP(s1Addr)), named))
				if sent := r.toPorts(); len(sent[upPort]) != 0 || len(sent[accPort]) != 1 {
					r.serve(serverNames)
					t.Fatalf("renewal %d under the client's own name: sent %v, want a local answer (counters %v)", i, sent, r.p.Counters())
				}
			}
		})
	}
}

// The keys of the names a REQUEST gave compare as sameName does (first
// label, letter case folded), and malformed option 81 data is no name.
func TestNameKeys(t *testing.T) {
	for _, c := range []struct {
		v    []byte
		want string
	}{
		{fqdnOpt(fqdnEncoded, "Host.example."), "Host"}, {fqdnOpt(0, "host.example"), "host"},
		{[]byte{fqdnEncoded, 0, 0, 5, 'a'}, ""}, {[]byte{fqdnEncoded, 0, 0, 0}, ""}, {[]byte{fqdnEncoded, 0, 0, 64}, ""}, {[]byte{0, 0, 0}, ""}, {nil, ""},
	} {
		if got := string(fqdnLabel(c.v)); got != c.want {
			t.Errorf("fqdnLabel(%x) = %q, want %q", c.v, got, c.want)
		}
	}
	ack := func(host, fqdn []byte) []byte {
		out := append([]byte{optHostName, byte(len(host))}, host...)
		return append(append(out, optFQDN, byte(len(fqdn))), fqdn...)
	}
	sent := nameKeys{labelKey([]byte("RPi")), labelKey([]byte("laptop"))}
	for _, c := range []struct {
		opts []byte
		want bool
	}{
		{ack([]byte("rpi.isp.example"), fqdnOpt(fqdnEncoded, "LAPTOP.isp.example.")), true},
		{ack([]byte("cpe-1"), fqdnOpt(0, "laptop")), false},
		{ack([]byte("rpi"), fqdnOpt(0, "dyn-1.isp.example")), false},
		{nil, true},
	} {
		if got := namesEchoed(sent, c.opts); got != c.want {
			t.Errorf("namesEchoed(%x) = %v, want %v", c.opts, got, c.want)
		}
	}
	if labelKey(nil) != 0 || labelKey([]byte("a")) == 0 {
		t.Error("labelKey: 0 is for no name only")
	}
}
