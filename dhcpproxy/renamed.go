package dhcpproxy

import (
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// The names a client gives itself (RFC 2132 §3.14 host name, RFC 4702
// client FQDN). The ISP's server records them with the lease (Kea's
// hostname column, its DNS updates) and echoes them in its ACK, which the
// binding stores; a local renewal repeats that ACK's options. A client
// renamed since (a laptop renamed, a Raspberry Pi's hostname changed and
// dhcpcd restarted) would otherwise be answered with its old name until
// the ISP's T1 — up to half the ISP's lease — and the ISP would go on
// recording the old one: seen in a field trial with dhcpcd (option 12)
// and a Windows-like client (option 81).
const (
	optHostName = 12
	optFQDN     = 81
)

// fqdnEncoded is option 81's E flag (RFC 4702 §2.1): the name is in DNS
// wire format, else ASCII.
const fqdnEncoded = 0x04

// Not every ISP's server echoes the client's names: one that names the
// client itself (a reservation's host name, Kea's
// ddns-replace-client-name, a name made from the address) answers with its
// own whatever the client calls itself, and the client's renewals under
// its one name would each look renamed. The names a client sent with the
// REQUEST the ISP ACKed are kept with its transaction (txn.names,
// nameKeys); when the ACK does not echo them (namesEchoed) the lease is
// marked leaseOwnNames and its renewals are not compared: a rename is then
// not told from the ISP's echo, and goes to the ISP at its T1, as before
// the rule. The mark is in RAM: after a restart such a client's first
// renewal is relayed once (renewal_renamed), and the ISP's ACK marks its
// lease again.

// renamed reports whether the client message raw names its host (option
// 12) or its FQDN (option 81) otherwise than the ISP's stored ACK options
// opts echoed: another host (first label, sameName), not another domain.
// A name the client or the ISP's ACK leaves out is no change.
func renamed(opts, raw []byte) bool {
	if c, s := clientOption(raw, optHostName), storedOption(opts, optHostName); len(c) > 0 && len(s) > 0 && !sameName(string(c), string(s)) {
		return true
	}
	c, s := fqdnName(clientOption(raw, optFQDN)), fqdnName(storedOption(opts, optFQDN))
	return c != "" && s != "" && !sameName(c, s)
}

// storedOption is option code of stored ACK options opts (TLVs), its
// instances concatenated (RFC 3396); nil when opts have none.
func storedOption(opts []byte, code byte) []byte {
	var v []byte
	forEachTLV(opts, func(c byte, data []byte) {
		if c == code {
			v = append(v, data...)
		}
	})
	return v
}

// fqdnName is the domain name of option 81 data v (flags, two RCODEs,
// then the name: ASCII, or DNS wire format with the E flag) in dotted
// form; "" when v holds none or a malformed one.
func fqdnName(v []byte) string {
	if len(v) < 4 {
		return ""
	}
	name := v[3:]
	if v[0]&fqdnEncoded == 0 {
		return string(name)
	}
	var b strings.Builder
	for len(name) > 0 {
		n := int(name[0])
		if n == 0 {
			break
		}
		if n > 63 || n >= len(name) {
			return ""
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.Write(name[1 : 1+n])
		name = name[1+n:]
	}
	return b.String()
}

// sameName reports whether the client's name c and the ISP's s name the
// same host: their first labels (up to the first dot) equal but for letter
// case. The rest is the domain, which ISP servers qualify a partial name
// with or replace by their own (dnsmasq's domain), and is no rename.
func sameName(c, s string) bool {
	return strings.EqualFold(firstLabel(c), firstLabel(s))
}

func firstLabel(name string) string {
	if i := strings.IndexByte(name, '.'); i >= 0 {
		return name[:i]
	}
	return name
}

// nameKeys are a client's names as its message gave them, option 12's
// and option 81's first labels hashed (labelKey; 0: none given).
type nameKeys [2]uint32

// clientNames are the nameKeys of client message m.
func clientNames(m *dhcpv4.DHCPv4) nameKeys {
	return nameKeys{labelKey(hostLabel(m.Options.Get(dhcpv4.OptionHostName))), labelKey(fqdnLabel(m.Options.Get(dhcpv4.OptionFQDN)))}
}

// namesEchoed reports whether the ISP's ACK options opts (TLVs) name the
// client as it named itself in the REQUEST they answer (sent): each name
// both carry has the same first label (sameName), as renamed compares
// them.
func namesEchoed(sent nameKeys, opts []byte) bool {
	acked := nameKeys{labelKey(hostLabel(storedOption(opts, optHostName))), labelKey(fqdnLabel(storedOption(opts, optFQDN)))}
	for i := range sent {
		if sent[i] != 0 && acked[i] != 0 && sent[i] != acked[i] {
			return false
		}
	}
	return true
}

// hostLabel is the first label of option 12 data v.
func hostLabel(v []byte) []byte {
	for i, c := range v {
		if c == '.' {
			return v[:i]
		}
	}
	return v
}

// fqdnLabel is the first label of option 81 data v (fqdnName's first
// label); nil when v holds no name or a malformed first label.
func fqdnLabel(v []byte) []byte {
	if len(v) < 4 {
		return nil
	}
	name := v[3:]
	if v[0]&fqdnEncoded == 0 {
		return hostLabel(name)
	}
	n := int(name[0])
	if n == 0 || n > 63 || n >= len(name) {
		return nil
	}
	return name[1 : 1+n]
}

// labelKey is label's FNV-1a hash, letter case folded (ASCII, as
// strings.EqualFold folds a DNS label); 0 for an empty one, never for
// another.
func labelKey(label []byte) uint32 {
	if len(label) == 0 {
		return 0
	}
	h := uint32(2166136261)
	for _, c := range label {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = (h ^ uint32(c)) * 16777619
	}
	return max(h, 1)
}
