package configs

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Building blocks for test files. Each is valid on its own line range; the
// cases add the line under test, marked with a comment "#!X" so the
// expected line number is found in the text, not counted by hand.
const (
	head = "version = 1\n"
	acc0 = "[[access]]\ninterface = \"acc0\"\naddress = \"100.64.0.1\"\n"
	isp0 = "[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\ndhcp_servers = [\"192.0.2.1\"]\n"
	// isp0Bare is isp0 without dhcp_servers, for cases that set them.
	isp0Bare = "[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\n"
	isp1     = "[[isp]]\nname = \"beta\"\nuplink = \"upb\"\naddress = \"198.51.100.2/24\"\nnext_hop = \"198.51.100.1\"\ndhcp_servers = [\"198.51.100.1\"]\n"
	base     = head + acc0 + isp0
)

// markerLine returns the 1-based line of "#!m" in text.
func markerLine(t *testing.T, text, m string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "#!"+m) && !strings.Contains(l, "#!"+m+m) {
			return i + 1
		}
	}
	t.Fatalf("marker #!%s not in test text", m)
	return 0
}

// want is "M key: message prefix": M is a marker letter, or 0 for no line.
func expect(t *testing.T, text, want string) string {
	t.Helper()
	m, rest, _ := strings.Cut(want, " ")
	if m == "0" {
		return "t.toml: " + rest
	}
	return fmt.Sprintf("t.toml:%d: %s", markerLine(t, text, m), rest)
}

// wantParseErrors parses text as t.toml and checks that it fails, with no
// configuration, with exactly the errors want (each as expect reads it),
// in order: the error tables' one check.
func wantParseErrors(t *testing.T, text string, want []string) {
	t.Helper()
	cfg, err := Parse("t.toml", []byte(text))
	if err == nil {
		t.Fatalf("Parse succeeded, want errors %q", want)
	}
	if cfg != nil {
		t.Errorf("Parse returned a config with an error")
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %T is not Errors: %v", err, err)
	}
	if len(errs) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want {
		if i >= len(errs) {
			break
		}
		if want := expect(t, text, w); !strings.HasPrefix(errs[i].Error(), want) {
			t.Errorf("error %d:\n got %s\nwant %s…", i, errs[i].Error(), want)
		}
	}
}

func repeat(n int, f func(i int) string) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(f(i))
	}
	return b.String()
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string // in order; the count must match too
	}{
		// Decoding.
		{"unknown top-level key", head + "colour = 1 #!A\n" + acc0 + isp0,
			[]string{"A colour: unknown key"}},
		{"unknown key in second isp", base + isp1 + "foo = 1 #!A\n",
			[]string{"A isp[1].foo: unknown key"}},
		{"unknown key with hint", base + "[datapath]\nqueue = 2 #!A\n",
			[]string{`A datapath.queue: unknown key (did you mean "queues"?)`}},
		{"unknown nested table", base + "[appliance.extra] #!A\nx = 1\n",
			[]string{"A appliance.extra: unknown key"}},
		{"quoted unknown key", head + "\"weird key\" = 1 #!A\n" + acc0 + isp0,
			[]string{`A "weird key": unknown key`}},
		{"wrong type", base + "[datapath]\nqueues = \"two\" #!A\n",
			[]string{`A datapath.queues: expected an integer, got string "two"`}},
		{"all type errors collected", base + "[datapath]\nqueues = \"two\" #!A\nbatch = 1.5 #!B\n[api]\nlisten = 8080 #!C\n",
			[]string{
				`A datapath.queues: expected an integer, got string "two"`,
				"B datapath.batch: expected an integer, got float 1.5",
				"C api.listen: expected a string, got integer 8080",
			}},
		{"wrong element type in multi-line array", head + acc0 + isp0Bare + "dhcp_servers = [\n  \"192.0.2.1\",\n  7, #!A\n]\n",
			[]string{"A isp[0].dhcp_servers[1]: expected a string, got integer 7"}},
		{"table instead of array of tables", head + "[access] #!A\ninterface = \"acc0\"\n" + isp0,
			[]string{"A access: expected an array of tables (write [[access]], not [access])"}},
		{"inline array of tables", head + "isp = [{name = \"alpha\", uplink = \"upa\", address = \"192.0.2.2/24\", next_hop = \"192.0.2.1\", foo = 1}] #!A\n" + acc0,
			[]string{"A isp[0].foo: unknown key"}},
		{"line after multi-line string", base + "[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\ncustomer_id = \"\"\" #!B\n[[isp]]\n# not a comment\n\"\"\"\nbogus = 1 #!A\n",
			[]string{"B subscriber[0].customer_id: has a space or control character", "A subscriber[0].bogus: unknown key"}},

		// Version and syntax.
		{"bad version", "version = 2 #!A\n" + acc0 + isp0 + "junk = 1\n",
			[]string{"A version: unsupported version 2 (this build reads version 1)"}},
		{"version wrong type", "version = \"1\" #!A\n" + acc0 + isp0,
			[]string{`A version: expected an integer, got string "1"`}},
		{"missing version", acc0 + isp0,
			[]string{"0 version: missing"}},
		{"syntax error", base + "[datapath]\nqueues = #!A\n",
			[]string{"A datapath.queues: "}},
		{"duplicate key", base + "[datapath]\nqueues = 1\nqueues = 2 #!A\n",
			[]string{"A "}},

		// Values.
		{"appliance values", base + "[appliance]\nstate_dir = \"var/lib\" #!A\nlog_level = \"loud\" #!B\n",
			[]string{
				`A appliance.state_dir: must be an absolute path, got "var/lib"`,
				`B appliance.log_level: must be one of debug, info, warn, error; got "loud"`,
			}},
		{"datapath values", base + "[datapath] #!A\nqueues = 0 #!B\nframe_size = 1000 #!C\nframes = 100 #!D\nbatch = 0 #!E\nattach_mode = \"xdp\" #!F\nbind_mode = \"fast\" #!G\npoll_timeout = \"20s\" #!H\nmac_table_size = 0 #!I\n",
			[]string{
				"B datapath.queues: must be 1..64, got 0",
				"C datapath.frame_size: must be 2048 or 4096, got 1000",
				"D datapath.frames: must be a power of two in 64..262144, got 100",
				"E datapath.batch: must be 1..256, got 0",
				`F datapath.attach_mode: must be native or skb, got "xdp"`,
				`G datapath.bind_mode: must be auto, zerocopy or copy, got "fast"`,
				"H datapath.poll_timeout: must be 1ms..10s, got 20s",
				"I datapath.mac_table_size: must be 1..16777216, got 0",
			}},
		{"poll timeout not a duration", base + "[datapath]\npoll_timeout = \"soon\" #!A\n",
			[]string{`A datapath.poll_timeout: not a duration`}},
		{"ring not a power of two", base + "[datapath]\nrx_ring = 3000 #!A\n",
			[]string{"A datapath.rx_ring: must be a power of two in 64..16384, got 3000"}},
		{"rings larger than frames", base + "[datapath] #!A\nframes = 1024\nrx_ring = 2048 #!B\ncompletion_ring = 512\n",
			[]string{
				// Absent keys (defaults) point at their table.
				"A datapath.tx_ring: 2048 is more than datapath.frames (1024)",
				"A datapath.fill_ring: 2048 is more than datapath.frames (1024)",
				"B datapath.rx_ring: 2048 is more than datapath.frames (1024)",
			}},
		{"api listen without port", base + "[api]\nlisten = \"localhost\" #!A\n",
			[]string{`A api.listen: must be host:port`}},
		{"api listen bad port", base + "[api]\nlisten = \":99999\" #!A\n",
			[]string{`A api.listen: port must be a number in 1..65535, got "99999"`}},
		{"api listen not loopback without tls", base + "[api]\nlisten = \"0.0.0.0:8443\" #!A\n",
			[]string{`A api.listen: "0.0.0.0:8443" is not a loopback address: serving the API there needs tls_cert and tls_key (or insecure = true`}},
		{"api listen all addresses without tls", base + "[api]\nlisten = \":8443\" #!A\n",
			[]string{`A api.listen: ":8443" is not a loopback address`}},
		{"api listen by name without tls", base + "[api]\nlisten = \"mgmt.example:8443\" #!A\n",
			[]string{`A api.listen: "mgmt.example:8443" is not a loopback address`}},
		{"api tls half and relative", base + "[api] #!B\nlisten = \"192.0.2.9:8443\"\ntls_cert = \"cert.pem\" #!A\n",
			[]string{
				"B api.tls_key: missing: tls_cert is set, tls_key must be too",
				`A api.tls_cert: must be an absolute path, got "cert.pem"`,
			}},
		{"api key without cert", base + "[api] #!A\ntls_key = \"/k.pem\"\n",
			[]string{"A api.tls_cert: missing: tls_key is set, tls_cert must be too"}},
		{"api limits", base + "[api]\nmax_connections = 0 #!A\nmax_streams_per_token = 2000 #!B\n",
			[]string{
				"A api.max_connections: must be 1..65536, got 0",
				"B api.max_streams_per_token: must be 1..1024, got 2000",
			}},
		{"api token files", base + isp1 + "token_files = [\"/t/b1\", \"/t/b2\", \"/t/b3\"] #!A\n[api]\noperator_token_file = \"op\" #!B\nclaim_token_files = [\n \"/t/c1\",\n \"/t/b1\", #!C\n \"\", #!D\n]\n",
			[]string{
				"A isp[1].token_files: at most two token files per ISP",
				`B api.operator_token_file: must be an absolute path, got "op"`,
				"C api.claim_token_files[1]: /t/b1 is already named by isp[1].token_files[0]",
				"D api.claim_token_files[2]: empty path",
			}},
		// A token's name (its file's base name without the extension) is
		// the actor of its changes: an ISP's two files (rotation) or two
		// claim files of one name would make them one actor in the events.
		{"api token names", base + isp1 + "token_files = [\"/etc/ispmux/beta-1.token\", \"/etc/ispmux/next/beta-1.token\"] #!A\n[api]\nclaim_token_files = [\n \"/t/installer.token\",\n \"/u/installer\", #!B\n]\n",
			[]string{
				`A isp[1].token_files[1]: /etc/ispmux/next/beta-1.token has the name "beta-1" of isp[1].token_files[0]`,
				`B api.claim_token_files[1]: /u/installer has the name "installer" of api.claim_token_files[0]`,
			}},
		{"api token type", base + "token_files = \"/t/a\" #!A\n",
			[]string{`A isp[0].token_files: expected an array, got string "/t/a"`}},
		{"access values", head + "[[access]]\ninterface = \"a/b\" #!A\nvlan = 4095 #!B\naddress = \"224.0.0.1\" #!C\n" + isp0,
			[]string{
				`A access[0].interface: bad interface name "a/b"`,
				"B access[0].vlan: must be 0 (untagged) or 1..4094, got 4095",
				"C access[0].address: 224.0.0.1 is a multicast address",
			}},
		{"interface name too long", head + "[[access]]\ninterface = \"abcdefghijklmnop\" #!A\n" + isp0,
			[]string{`A access[0].interface: interface name "abcdefghijklmnop" is longer than 15 bytes`}},
		{"missing isp keys point at the header", head + acc0 + "[[isp]] #!A\nname = \"alpha\"\n",
			[]string{
				"A isp[0].uplink: missing",
				"A isp[0].address: missing",
				"A isp[0].next_hop: missing",
			}},
		{"no access, no isp", head,
			[]string{"0 access: at least one [[access]] is required", "0 isp: at least one [[isp]] is required"}},
		{"isp values", head + acc0 + "[[isp]]\nname = \"Alpha\" #!A\nuplink = \"upa\"\nvlan = -1 #!B\naddress = \"192.0.2.0/24\" #!C\nnext_hop = \"192.0.2.1\"\n",
			[]string{
				`A isp[0].name: must match [a-z0-9][a-z0-9-]{0,31}, got "Alpha"`,
				"B isp[0].vlan: must be 0 (untagged) or 1..4094, got -1",
				"C isp[0].address: 192.0.2.0 is the network address of 192.0.2.0/24",
			}},
		{"isp address not a prefix", head + acc0 + "[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2\" #!A\nnext_hop = \"192.0.2.1\"\n",
			[]string{`A isp[0].address: not an IPv4 prefix`}},
		{"next hop outside subnet", head + acc0 + "[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.3.1\" #!A\n",
			[]string{"A isp[0].next_hop: 192.0.3.1 is outside 192.0.2.0/24"}},
		{"next hop is our address", head + acc0 + "[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.2\" #!A\n",
			[]string{"A isp[0].next_hop: 192.0.2.2 is our own address"}},
		{"next hop is broadcast", head + acc0 + "[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.255\" #!A\n",
			[]string{"A isp[0].next_hop: 192.0.2.255 is the broadcast address of 192.0.2.0/24"}},
		{"bad dhcp servers", head + acc0 + isp0Bare + "dhcp_servers = [\"192.0.2.1\", \"192.0.2.1\", \"x\"] #!A\n",
			[]string{
				"A isp[0].dhcp_servers[1]: duplicate dhcp server 192.0.2.1 (also dhcp_servers[0])",
				`A isp[0].dhcp_servers[2]: not an IPv4 address: "x"`,
			}},
		{"ipv6 next hop", head + acc0 + "[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"2001:db8::1\" #!A\n",
			[]string{`A isp[0].next_hop: not an IPv4 address: "2001:db8::1"`}},

		// Cross checks.
		{"duplicate access names", head + acc0 + "[[access]]\nname = \"acc0\" #!A\ninterface = \"acc1\"\n" + isp0,
			[]string{`A access[1].name: duplicate access name "acc0" (also access[0])`}},
		{"same access port twice", head + acc0 + "[[access]]\nname = \"other\"\ninterface = \"acc0\" #!A\n" + isp0,
			[]string{"A access[1].interface: acc0 (untagged) is already access[0]"}},
		{"access vlans are distinct ports", head + acc0 + "[[access]]\ninterface = \"acc0\"\nvlan = 7\n[[access]]\nname = \"x\"\ninterface = \"acc0\" #!A\nvlan = 7\n[[access]] #!B\ninterface = \"acc0\" #!C\nvlan = 7\n" + isp0,
			[]string{
				"A access[2].interface: acc0 vlan 7 is already access[1]",
				`B access[3].name: duplicate access name "acc0.7" (also access[1])`,
				"C access[3].interface: acc0 vlan 7 is already access[1]",
			}},
		{"uplink is an access port", head + "[[access]]\ninterface = \"eth0\"\nvlan = 10\n" + "[[isp]]\nname = \"alpha\"\nuplink = \"eth0\" #!A\nvlan = 10\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\n",
			[]string{"A isp[0].uplink: eth0 vlan 10 is already access[0]"}},
		{"isps share an uplink without vlans", base + "[[isp]]\nname = \"beta\"\nuplink = \"upa\" #!A\naddress = \"198.51.100.2/24\"\nnext_hop = \"198.51.100.1\"\n",
			[]string{"A isp[1].uplink: upa (untagged) is already the uplink of isp[0]"}},
		{"duplicate isp names", base + "[[isp]]\nname = \"alpha\" #!A\nuplink = \"upb\"\naddress = \"198.51.100.2/24\"\nnext_hop = \"198.51.100.1\"\n",
			[]string{`A isp[1].name: duplicate isp name "alpha" (also isp[0])`}},
		{"too many access entries", head + repeat(17, func(i int) string {
			m, n := "", ""
			if i == 16 {
				m, n = " #!A", " #!B"
			}
			return fmt.Sprintf("[[access]]%s\ninterface = \"acc%d\"%s\n", m, i, n)
		}) + isp0,
			// One problem, one error (17 distinct interfaces are also
			// too many interfaces).
			[]string{"A access[16]: too many [[access]] entries: 17, at most 16"}},
		{"too many isps", head + acc0 + repeat(251, func(i int) string {
			m := ""
			if i == 250 {
				m = " #!A"
			}
			return fmt.Sprintf("[[isp]]%s\nname = \"i%d\"\nuplink = \"upa\"\nvlan = %d\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\n", m, i, i+1)
		}),
			[]string{"A isp[250]: too many [[isp]] entries: 251, at most 250"}},
		{"subscriber values", base + "[[subscriber]] #!A\nmac = \"01:00:5e:00:00:01\" #!B\nisp = \"gamma\" #!C\naccess = \"nope\" #!D\n[[subscriber]] #!E\nmac = \"00:00:00:00:00:00\" #!F\n[[subscriber]]\nmac = \"zz\" #!G\nisp = \"alpha\"\n",
			[]string{
				"B subscriber[0].mac: 01:00:5e:00:00:01 is a multicast/broadcast address",
				`C subscriber[0].isp: no [[isp]] is named "gamma"`,
				`D subscriber[0].access: no [[access]] is named "nope"`,
				"E subscriber[1].isp: missing",
				"F subscriber[1].mac: the all-zero MAC address is not a subscriber",
				`G subscriber[2].mac: not an Ethernet MAC address: "zz"`,
			}},
		// An access given a vlan and no name is named interface.vlan: a
		// subscriber still naming the interface is told so.
		{"subscriber access named after a tagged interface", head + "[[access]]\ninterface = \"acc0\"\nvlan = 5\naddress = \"100.64.0.1\"\n" + isp0 +
			"[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\naccess = \"acc0\" #!A\n",
			[]string{`A subscriber[0].access: no [[access]] is named "acc0" (access[0] on interface "acc0" vlan 5 is named "acc0.5": an entry with a vlan and no name is named interface.vlan)`}},
		{"dhcp values", base + "[dhcp]\ntimeout = \"90s\" #!A\nmax_pending = 0 #!B\nmac_rate = \"x\" #!C\n",
			[]string{
				"A dhcp.timeout: must be 1s..60s, got 1m30s",
				"B dhcp.max_pending: must be 1..1048576, got 0",
				`C dhcp.mac_rate: expected an integer, got string "x"`,
			}},
		{"event retention", base + "[appliance]\nevent_retention = 10 #!A\n",
			[]string{"A appliance.event_retention: must be 1000..10000000 events, got 10"}},
		{"client lease too short", base + "[dhcp]\nclient_lease_max = \"20s\" #!A\n",
			[]string{"A dhcp.client_lease_max: must be whole seconds, 30s..24h, got 20s"}},
		{"client lease too long", base + "[dhcp]\nclient_lease_max = \"25h\" #!A\n",
			[]string{"A dhcp.client_lease_max: must be whole seconds, 30s..24h, got 25h0m0s"}},
		{"client lease not whole seconds", base + "[dhcp]\nclient_lease_max = \"90.5s\" #!A\n",
			[]string{"A dhcp.client_lease_max: must be whole seconds, 30s..24h, got 1m30.5s"}},
		{"client lease not a duration", base + "[dhcp]\nclient_lease_max = \"soon\" #!A\n",
			[]string{`A dhcp.client_lease_max: not a duration (e.g. "10m"): "soon"`}},
		{"client lease not a string", base + "[dhcp]\nclient_lease_max = 600 #!A\n",
			[]string{`A dhcp.client_lease_max: expected a string, got integer 600`}},
		{"isp dhcp options", base + "circuit_id = \"{port}\" #!A\nlink_selection = \"100.64.0\" #!B\nvss = \"\" #!C\nserver_id_override = \"yes\" #!D\n",
			[]string{
				`A isp[0].circuit_id: unknown placeholder {port} in "{port}" (known: {interface} {vlan} {access} {mac})`,
				`B isp[0].link_selection: not an IPv4 address: "100.64.0"`,
				`C isp[0].vss: must be 1..250 printable ASCII characters (RFC 6607 NVT ASCII VPN id), got ""`,
				`D isp[0].server_id_override: expected a boolean, got string "yes"`,
			}},
		{"dhcp subscriber on an access without address", head + "[[access]]\ninterface = \"acc0\"\n" + isp0 + "[[subscriber]] #!A\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\n",
			[]string{`A subscriber[0].ip: missing, and access "acc0" has no address`}},
		{"blocked is a boolean", base + "[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\nblocked = 1 #!A\n",
			[]string{"A subscriber[0].blocked: expected a boolean, got integer 1"}},
		{"duplicate mac on one access", base + "[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\n[[subscriber]]\nmac = \"02-00-00-00-00-01\" #!A\nisp = \"alpha\"\n",
			[]string{`A subscriber[1].mac: duplicate mac 02:00:00:00:00:01 (also subscriber[0]): a MAC has one entry, on one access and one ISP`}},
		{"same mac on two access ports", head + "[[access]]\ninterface = \"acc0\"\naddress = \"100.64.0.1\"\n" +
			"[[access]]\ninterface = \"acc1\"\nvlan = 5\naddress = \"100.64.0.1\"\n" + isp0 +
			"[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\n" +
			"[[subscriber]]\nmac = \"02:00:00:00:00:01\" #!A\nisp = \"alpha\"\naccess = \"acc1.5\"\n",
			[]string{`A subscriber[1].mac: duplicate mac 02:00:00:00:00:01 (also subscriber[0]): a MAC has one entry, on one access and one ISP`}},
		{"duplicate ip at one isp", base + "[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\nip = \"100.64.0.11\"\n[[subscriber]]\nmac = \"02:00:00:00:00:02\"\nisp = \"alpha\"\nip = \"100.64.0.11\" #!A\n",
			[]string{`A subscriber[1].ip: duplicate ip 100.64.0.11 at isp "alpha" (also subscriber[0])`}},
		{"subscriber ip is the isp's address", base + "[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\nip = \"192.0.2.2\" #!A\n",
			[]string{`A subscriber[0].ip: 192.0.2.2 is isp "alpha"'s own address`}},
		{"subscriber ip is the next hop", base + "[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\nip = \"192.0.2.1\" #!A\n",
			[]string{`A subscriber[0].ip: 192.0.2.1 is isp "alpha"'s next hop`}},
		{"subscriber ip is the access address", head + "[[access]]\ninterface = \"acc0\"\naddress = \"100.64.0.1\"\n" + isp0 + "[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\nip = \"100.64.0.1\" #!A\n",
			[]string{`A subscriber[0].ip: 100.64.0.1 is the address of access "acc0"`}},
		{"subscriber ip special addresses", base + repeat(6, func(i int) string {
			ip := []string{"192.0.2.0", "192.0.2.255", "224.0.0.5", "127.0.0.1", "0.0.0.0", "255.255.255.255"}[i]
			return fmt.Sprintf("[[subscriber]]\nmac = \"02:00:00:00:00:%02x\"\nisp = \"alpha\"\nip = %q #!%c\n", i+1, ip, 'A'+i)
		}),
			[]string{
				"A subscriber[0].ip: 192.0.2.0 is the network address of 192.0.2.0/24",
				"B subscriber[1].ip: 192.0.2.255 is the broadcast address of 192.0.2.0/24",
				"C subscriber[2].ip: 224.0.0.5 is a multicast address",
				"D subscriber[3].ip: 127.0.0.1 is a loopback address",
				"E subscriber[4].ip: 0.0.0.0 is an unspecified",
				"F subscriber[5].ip: 255.255.255.255 is the broadcast address",
			}},
		// Option 82 (RFC 3046): every sub-option and the whole option fit
		// 255 bytes. base's ISP sends circuit-id "acc0:0" (2+6),
		// remote-id (2+6) and, when the client unicasts, relay flags
		// (2+1): 19 bytes, which would leave 255-19-2 = 234 for
		// customer_id, but a customer ID is at most 64 bytes (the API's
		// rule too). A circuit-id of 180 bytes leaves 240-180 = 60.
		{"customer_id longer than 64 bytes", base + "[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\ncustomer_id = \"" + strings.Repeat("c", 300) + "\" #!A\n",
			[]string{`A subscriber[0].customer_id: must be 1..64 bytes`}},
		{"customer_id one byte over", base + "circuit_id = \"" + strings.Repeat("x", 180) + "\"\n[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\ncustomer_id = \"" + strings.Repeat("c", 61) + "\" #!A\n",
			[]string{`A subscriber[0].customer_id: 61 bytes do not fit Option 82: isp "alpha"'s other sub-options on access "acc0" leave 60 bytes for it (the whole option holds 255, RFC 3046)`}},
		// server-id override (2+4), link selection (2+4), vss
		// "vpn-alpha" (2+1+9) and its VSS-Control (2) take 26 more:
		// with a circuit-id of 154 bytes, 60 left.
		{"customer_id with every sub-option", base + "server_id_override = true\nlink_selection = \"100.64.0.1\"\nvss = \"vpn-alpha\"\ncircuit_id = \"" + strings.Repeat("x", 154) + "\"\n" +
			"[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\ncustomer_id = \"" + strings.Repeat("c", 61) + "\" #!A\n",
			[]string{`A subscriber[0].customer_id: 61 bytes do not fit Option 82: isp "alpha"'s other sub-options on access "acc0" leave 60 bytes`}},
		// Circuit-id 160 x + "{access}/{mac}": 160 + "acc0/" + 17 = 182
		// bytes on acc0 (58 left), 160 + "longinterface1.4000/" + 17 =
		// 197 on the other port (43 left). Without an access the
		// subscriber may ask on either: the longer circuit-id counts.
		{"customer_id on the access with the longest circuit-id", head + acc0 + "[[access]]\ninterface = \"longinterface1\"\nvlan = 4000\naddress = \"100.64.0.1\"\n" +
			isp0 + "circuit_id = \"" + strings.Repeat("x", 160) + "{access}/{mac}\"\n" +
			"[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\ncustomer_id = \"" + strings.Repeat("c", 44) + "\" #!A\n" +
			"[[subscriber]]\nmac = \"02:00:00:00:00:02\"\nisp = \"alpha\"\naccess = \"acc0\"\ncustomer_id = \"" + strings.Repeat("c", 59) + "\" #!B\n",
			[]string{
				`A subscriber[0].customer_id: 44 bytes do not fit Option 82: isp "alpha"'s other sub-options on access "longinterface1.4000" leave 43 bytes`,
				`B subscriber[1].customer_id: 59 bytes do not fit Option 82: isp "alpha"'s other sub-options on access "acc0" leave 58 bytes`,
			}},
		{"customer_id with a space, a control character, NUL", base +
			"[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\nip = \"100.64.0.9\"\ncustomer_id = \"c 1001\" #!A\n" +
			"[[subscriber]]\nmac = \"02:00:00:00:00:02\"\nisp = \"alpha\"\nip = \"100.64.0.10\"\ncustomer_id = \"tab\\there\" #!B\n" +
			"[[subscriber]]\nmac = \"02:00:00:00:00:03\"\nisp = \"alpha\"\nip = \"100.64.0.11\"\ncustomer_id = \"c\\u0000x\" #!C\n",
			[]string{
				"A subscriber[0].customer_id: has a space or control character",
				"B subscriber[1].customer_id: has a space or control character",
				"C subscriber[2].customer_id: has a space or control character",
			}},
		{"DHCP subscriber of an isp without dhcp_servers", head + acc0 + isp0Bare +
			"[[subscriber]] #!A\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\ncustomer_id = \"c-1\"\n" +
			"[[subscriber]]\nmac = \"02:00:00:00:00:02\"\nisp = \"alpha\"\nblocked = true\n" +
			"[[subscriber]]\nmac = \"02:00:00:00:00:03\"\nisp = \"alpha\"\nip = \"100.64.0.9\"\n",
			[]string{`A subscriber[0].ip: missing, and isp "alpha" has no dhcp_servers`}},
		// One fault of an [[isp]] or [[access]] (a dhcp_servers misspelt,
		// an address left out) is one error, not one per subscriber of
		// it: a trial's misspelt dhcp_servers gave 2003 lines (2000
		// subscribers), the one line to fix first among them.
		{"dhcp_servers misspelt, many DHCP subscribers", head + acc0 + isp0Bare + "dhcp_server = \"192.0.2.1\" #!A\n" +
			"[[subscriber]] #!B\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\n" +
			"[[subscriber]]\nmac = \"02:00:00:00:00:02\"\nisp = \"alpha\"\n" +
			"[[subscriber]]\nmac = \"02:00:00:00:00:03\"\nisp = \"alpha\"\n",
			[]string{
				`A isp[0].dhcp_server: unknown key (did you mean "dhcp_servers"?)`,
				`B subscriber[0].ip: missing, and isp "alpha" has no dhcp_servers: a DHCP subscriber's requests are relayed to them (give the subscriber an ip, or the isp dhcp_servers; so do 2 more [[subscriber]] entries of isp "alpha", up to subscriber[2])`,
			}},
		{"access without address, many DHCP subscribers", head + "[[access]]\ninterface = \"acc0\"\n" + isp0 +
			"[[subscriber]] #!A\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\n" +
			"[[subscriber]]\nmac = \"02:00:00:00:00:02\"\nisp = \"alpha\"\n",
			[]string{
				`A subscriber[0].ip: missing, and access "acc0" has no address: a DHCP subscriber needs the access port's address (ispmux's server identifier; so does 1 more [[subscriber]] entry on access "acc0", subscriber[1])`,
			}},
		{"circuit-id expands beyond a sub-option", head + "[[access]]\ninterface = \"abcdefghijklmno\"\naddress = \"100.64.0.1\"\n" +
			"[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\ncircuit_id = \"" + strings.Repeat("{interface}", 18) + "\" #!A\n",
			[]string{`A isp[0].circuit_id: expands to 270 bytes on access "abcdefghijklmno", more than the 255 a sub-option holds`}},
		// vss of 250 (2+1+250) and VSS-Control (2) with the 19 bytes of
		// base: 274. Its
		// subscriber's customer_id is not reported again.
		{"isp sub-options beyond one option", head + acc0 + "[[isp]] #!A\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\ndhcp_servers = [\"192.0.2.1\"]\nvss = \"" + strings.Repeat("v", 250) + "\"\n" +
			"[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\ncustomer_id = \"c-1\"\n",
			[]string{`A isp[0]: Option 82 would be 274 bytes on access "acc0" (circuit-id 6 bytes;`}},
		{"mac table smaller than subscribers", base + "[datapath]\nmac_table_size = 1 #!A\n[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\n[[subscriber]]\nmac = \"02:00:00:00:00:02\"\nisp = \"alpha\"\n",
			[]string{"A datapath.mac_table_size: 1 is less than the 2 [[subscriber]] entries"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantParseErrors(t, tt.text, tt.want) })
	}
}

func TestParseOK(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		check func(t *testing.T, c *Config)
	}{
		{"api insecure on all addresses", base + "[api]\nlisten = \"0.0.0.0:8080\"\ninsecure = true\n", nil},
		{"api loopback names", base + "[api]\nlisten = \"[::1]:8080\"\n", nil},
		{"api localhost", base + "[api]\nlisten = \"localhost:8080\"\n", nil},
		{"api tls and tokens", base + isp1 + "token_files = [\"/etc/ispmux/beta-1.token\", \"/etc/ispmux/beta-2.token\"]\n" +
			"[api]\nlisten = \"192.0.2.9:8443\"\ntls_cert = \"/etc/ispmux/api.crt\"\ntls_key = \"/etc/ispmux/api.key\"\n" +
			"operator_token_file = \"/etc/ispmux/operator.token\"\nclaim_token_files = [\"/etc/ispmux/installer.token\"]\nmax_connections = 64\nmax_streams_per_token = 2\n",
			func(t *testing.T, c *Config) {
				a := c.API
				if a.TLSCert != "/etc/ispmux/api.crt" || a.TLSKey != "/etc/ispmux/api.key" || a.OperatorTokenFile != "/etc/ispmux/operator.token" ||
					len(a.ClaimTokenFiles) != 1 || a.MaxConnections != 64 || a.MaxStreamsPerToken != 2 {
					t.Errorf("api: %+v", a)
				}
				if len(c.ISPs[1].TokenFiles) != 2 || len(c.ISPs[0].TokenFiles) != 0 {
					t.Errorf("token files: %v %v", c.ISPs[0].TokenFiles, c.ISPs[1].TokenFiles)
				}
			}},
		{"defaults applied", base, func(t *testing.T, c *Config) {
			d := Default()
			d.Datapath.PollTimeoutDur = 100 * time.Millisecond
			if c.Datapath != d.Datapath || c.Appliance != d.Appliance || !reflect.DeepEqual(c.API, d.API) {
				t.Errorf("defaults not applied:\n got %+v %+v %+v\nwant %+v %+v %+v",
					c.Datapath, c.Appliance, c.API, d.Datapath, d.Appliance, d.API)
			}
			if a := c.Access[0]; a.Name != "acc0" || a.VLAN != 0 {
				t.Errorf("access defaults: %+v", a)
			}
			dd := d.DHCP
			dd.TimeoutDur = 4 * time.Second
			dd.ClientLeaseMaxDur = 10 * time.Minute
			if c.DHCP != dd {
				t.Errorf("dhcp defaults: got %+v want %+v", c.DHCP, dd)
			}
			if i := c.ISPs[0]; i.CircuitID != "{interface}:{vlan}" || i.ServerIDOverride || i.LinkSelectionAddr.IsValid() || i.VSS != "" {
				t.Errorf("isp dhcp defaults: %+v", i)
			}
		}},
		{"dhcp options", base + "[dhcp]\ntimeout = \"2s\"\nmac_rate = 10\nclient_lease_max = \"30s\"\n", func(t *testing.T, c *Config) {
			if c.DHCP.TimeoutDur != 2*time.Second || c.DHCP.MACRate != 10 || c.DHCP.MACBurst != 8 || c.DHCP.ClientLeaseMaxDur != 30*time.Second {
				t.Errorf("dhcp %+v", c.DHCP)
			}
		}},
		{"set values override defaults", base + "[datapath]\nqueues = 4\npoll_timeout = \"5ms\"\n", func(t *testing.T, c *Config) {
			if c.Datapath.Queues != 4 || c.Datapath.PollTimeoutDur != 5*time.Millisecond || c.Datapath.Batch != 64 {
				t.Errorf("datapath %+v", c.Datapath)
			}
		}},
		{"same ip at two isps", head + acc0 + isp0 + isp1 +
			"[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\nip = \"100.64.0.11\"\n" +
			"[[subscriber]]\nmac = \"02:00:00:00:00:02\"\nisp = \"beta\"\nip = \"100.64.0.11\"\n", func(t *testing.T, c *Config) {
			ip := netip.MustParseAddr("100.64.0.11")
			s := c.Subscribers
			if s[0].Addr != ip || s[1].Addr != ip || s[0].ISPIndex != 0 || s[1].ISPIndex != 1 {
				t.Errorf("subscribers %+v", s)
			}
		}},
		{"one mac per access, two access ports", head + "[[access]]\ninterface = \"acc0\"\naddress = \"100.64.0.1\"\n" +
			"[[access]]\ninterface = \"acc1\"\nvlan = 5\naddress = \"100.64.0.1\"\n" + isp0 +
			"[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\n" +
			"[[subscriber]]\nmac = \"02:00:00:00:00:02\"\nisp = \"alpha\"\naccess = \"acc1.5\"\n", func(t *testing.T, c *Config) {
			if c.Access[1].Name != "acc1.5" || c.Subscribers[0].AccessIndex != 0 || c.Subscribers[1].AccessIndex != 1 {
				t.Errorf("access %+v subscribers %+v", c.Access, c.Subscribers)
			}
			if c.Subscribers[0].HWAddr != [6]byte{2, 0, 0, 0, 0, 1} || c.Subscribers[0].Addr.IsValid() {
				t.Errorf("subscriber %+v", c.Subscribers[0])
			}
		}},
		{"isps share an uplink on distinct vlans", head + acc0 +
			"[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\nvlan = 1\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\n" +
			"[[isp]]\nname = \"beta\"\nuplink = \"upa\"\nvlan = 2\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\ndhcp_servers = [\"192.0.2.7\"]\n", func(t *testing.T, c *Config) {
			b := c.ISPs[1]
			if b.Index != 1 || b.Prefix != netip.MustParsePrefix("192.0.2.2/24") || b.NextHopAddr != netip.MustParseAddr("192.0.2.1") ||
				len(b.DHCPServerAddrs) != 1 || b.DHCPServerAddrs[0] != netip.MustParseAddr("192.0.2.7") {
				t.Errorf("isp %+v", b)
			}
		}},
		{"customer_id that exactly fills Option 82", base + "circuit_id = \"" + strings.Repeat("x", 180) + "\"\n[[subscriber]]\nmac = \"02:00:00:00:00:01\"\nisp = \"alpha\"\ncustomer_id = \"" + strings.Repeat("c", 60) + "\"\n", func(t *testing.T, c *Config) {
			if len(c.Subscribers[0].CustomerID) != 60 {
				t.Errorf("customer_id %d bytes", len(c.Subscribers[0].CustomerID))
			}
		}},
		{"point-to-point /31 uplink", head + acc0 + "[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.0/31\"\nnext_hop = \"192.0.2.1\"\n", nil},
		{"inline tables and quoted keys", head + "access = [{ interface = \"acc0\" }]\n[[isp]]\n\"name\" = 'alpha'\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.toml", []byte(tt.text))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// TestExampleFiles parses every *.toml file shipped in this directory.
func TestExampleFiles(t *testing.T) {
	files, err := filepath.Glob("*.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("found %d example files, want at least example.toml and minimal.toml", len(files))
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			c, err := Load(f)
			if err != nil {
				t.Fatalf("Load:\n%v", err)
			}
			if c.Summary() == "" {
				t.Error("empty summary")
			}
		})
	}
}

func TestExampleContents(t *testing.T) {
	c, err := Load("example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Access) != 2 || len(c.ISPs) != 2 || len(c.Subscribers) != 3 {
		t.Fatalf("got %d access, %d isps, %d subscribers", len(c.Access), len(c.ISPs), len(c.Subscribers))
	}
	s := c.Subscribers
	if s[0].Addr != s[1].Addr || s[0].ISPIndex == s[1].ISPIndex {
		t.Errorf("example should show one IP at two ISPs: %+v %+v", s[0], s[1])
	}
	if s[2].AccessIndex != 1 || s[2].Addr.IsValid() {
		t.Errorf("subscriber[2] %+v", s[2])
	}
	sum := c.Summary()
	for _, want := range []string{
		"access acc0: interface acc0 untagged, address 100.64.0.1, 2 subscriber(s)",
		"access acc1.100: interface acc1 vlan 100, address 100.64.0.1, 1 subscriber(s)",
		`isp alpha (vrf 0): uplink upa vlan 201, address 192.0.2.2/24, next hop 192.0.2.1, dhcp servers [192.0.2.1 192.0.2.10], circuit-id "{interface}:{vlan}", server-id override, link selection 100.64.0.1, vss "vpn-alpha", 1 subscriber(s)`,
		`isp beta (vrf 1): uplink upa vlan 202, address 198.51.100.2/24, next hop 198.51.100.1, dhcp servers [198.51.100.1], circuit-id "{interface}:{vlan}", 2 subscriber(s)`,
		"subscribers: 3 registered, 2 with a static ip",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
}

// TestSummaryAnyAccess: a DHCP subscriber without an access key is served
// on every access, and the summary says so, where it counted it under the
// first access (a trial took that, and the example's comment, for pinned);
// a static one is bound on the first access and counted there.
func TestSummaryAnyAccess(t *testing.T) {
	c, err := Load("example.toml")
	if err != nil {
		t.Fatal(err)
	}
	c.Subscribers = append(c.Subscribers, Subscriber{MAC: "02:00:00:00:00:09", ISP: "alpha", AccessIndex: 0})
	sum := c.Summary()
	for _, want := range []string{
		"access acc0: interface acc0 untagged, address 100.64.0.1, 2 subscriber(s)",
		"any access: 1 DHCP subscriber(s) without an access key, served on every access",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
}

// TestExampleCommands: the commands the example files show use flags that
// exist (ispmux check -c FILE).
func TestExampleCommands(t *testing.T) {
	files, err := filepath.Glob("*.toml")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("`ispmux ([a-z]+)([^`]*)`")
	seen := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(data), -1) {
			seen++
			for _, arg := range strings.Fields(m[2]) {
				if strings.HasPrefix(arg, "-") && arg != "-c" {
					t.Errorf("%s: %q: ispmux %s has no flag %s (the configuration flag is -c)", f, m[0], m[1], arg)
				}
			}
		}
	}
	if seen == 0 {
		t.Error("no `ispmux ...` command found in the example files")
	}
}

func TestExpandCircuitID(t *testing.T) {
	a := &Access{Name: "acc1.100", Interface: "acc1", VLAN: 100}
	mac := "02:00:00:00:00:01"
	for _, tt := range []struct{ tmpl, want string }{
		{"{interface}:{vlan}", "acc1:100"},
		{"{access}/{mac}", "acc1.100/02:00:00:00:00:01"},
		{"plain", "plain"},
		// As dhcpproxy's circuitID: a '}' before the next '{' ends the
		// expansion, the rest is sent as written.
		{"x}{interface}", "x}{interface}"},
		{"{vlan}x}{vlan}", "100x}{vlan}"},
	} {
		if got := expandCircuitID(tt.tmpl, a, mac); got != tt.want {
			t.Errorf("expandCircuitID(%q) = %q, want %q", tt.tmpl, got, tt.want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{"f.toml", 3, "isp[1].next_hop", "bad"}, "f.toml:3: isp[1].next_hop: bad"},
		{Error{"f.toml", 0, "access", "missing"}, "f.toml: access: missing"},
		{Error{"f.toml", 7, "", "syntax"}, "f.toml:7: syntax"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	es := Errors{{"a", 1, "k", "m1"}, {"a", 2, "j", "m2"}}
	if got := es.Error(); got != "a:1: k: m1\na:2: j: m2" {
		t.Errorf("Errors: %q", got)
	}
	var one *Error
	if !errors.As(error(es), &one) || one.Key != "k" {
		t.Errorf("errors.As(*Error) = %v", one)
	}
}

// TestDefaultUsedByExample keeps example.toml honest: the values it shows
// as defaults are Default's.
func TestDefaultUsedByExample(t *testing.T) {
	data, err := os.ReadFile("example.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("example.toml", data)
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	d.Datapath.PollTimeoutDur = 100 * time.Millisecond
	if c.Datapath != d.Datapath || c.Appliance != d.Appliance || !reflect.DeepEqual(c.API, d.API) {
		t.Errorf("example.toml shows values other than the defaults")
	}
}

// TestSyntaxErrorLine: a [table] header cut by its newline is reported on
// its own line and with no key (the parser says the line after, and its
// last key is the table before).
func TestSyntaxErrorLine(t *testing.T) {
	text := base + "[[isp]]\nname = \"beta\"\n[dhcp\ntimeout = \"4s\"\n"
	line := strings.Count(text[:strings.Index(text, "[dhcp")], "\n") + 1
	_, err := Parse("t.toml", []byte(text))
	want := fmt.Sprintf("t.toml:%d: expected '.' or ']' to end table name", line)
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want %s…", err, want)
	}
}

// check's summary named the API's listener but not the metrics': an
// operator who set [metrics] listen saw nothing of it. It names it
// (with TLS or in clear text), or says metrics are off.
func TestSummaryNamesMetrics(t *testing.T) {
	const base = "version = 1\n[[access]]\ninterface = \"acc0\"\n[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\n"
	for _, tt := range []struct{ metrics, want string }{
		{"", "metrics off"},
		{"[metrics]\nlisten = \"127.0.0.1:9400\"\n", "metrics on 127.0.0.1:9400 (http)"},
		{"[metrics]\nlisten = \"192.0.2.9:9400\"\ninsecure = true\n", "metrics on 192.0.2.9:9400 (http)"},
		{"[metrics]\nlisten = \"192.0.2.9:9400\"\ntls_cert = \"/etc/ispmux/m.crt\"\ntls_key = \"/etc/ispmux/m.key\"\n", "metrics on 192.0.2.9:9400 (https)"},
	} {
		c, err := Parse("t.toml", []byte(base+tt.metrics))
		if err != nil {
			t.Fatal(err)
		}
		if first, _, _ := strings.Cut(c.Summary(), "\n"); !strings.HasSuffix(first, ", "+tt.want) {
			t.Errorf("%q: summary's first line %q, want it to end with %q", tt.metrics, first, tt.want)
		}
	}
}

// TestMisspeltVersion: a misspelt version key is named at its line as an
// unknown key (a docs trial's "versoin = 1" got "version: missing" alone,
// with no line), beside the missing version.
func TestMisspeltVersion(t *testing.T) {
	_, err := Parse("mis.toml", []byte("# ispmux\nversoin = 1\n[[access]]\ninterface = \"a\"\n"))
	if err == nil {
		t.Fatal("parsed")
	}
	for _, want := range []string{`mis.toml:2: versoin: unknown key (did you mean "version"?)`, "version: missing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// Other top-level keys are not checked against a schema the file
	// did not ask for.
	if _, err := Parse("x.toml", []byte("datapth = 1\n")); err == nil || strings.Contains(err.Error(), "datapth") {
		t.Errorf("without a version: %v", err)
	}
}

// StateDirOf reads a file that is not TOML by its [appliance] table
// alone (a header with a comment included), and refuses one whose
// [appliance] table is not TOML, or that has none.
func TestStateDirOfBrokenFile(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, text, want string }{
		{"typo elsewhere", "[appliance] # the box\nstate_dir = \"/srv/ispmux\"\n\n[dhcp]\ntimeout = \"4s\n", "/srv/ispmux"},
		{"typo in appliance", "[appliance]\nstate_dir = \"/srv/ispmux\n[dhcp]\n", ""},
		{"no appliance", "[dhcp\n", ""},
	} {
		p := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(p, []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := StateDirOf(p)
		if c.want == "" {
			if err == nil {
				t.Errorf("%s: %q, want an error", c.name, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		}
	}
}
