package configs

import (
	"strings"
	"testing"
)

func TestMetricsConfig(t *testing.T) {
	ok := []struct {
		name, text string
		want       Metrics
	}{
		{"off by default", base, Metrics{}},
		{"loopback", base + "[metrics]\nlisten = \"127.0.0.1:9400\"\n", Metrics{Listen: "127.0.0.1:9400"}},
		{"localhost v6", base + "[metrics]\nlisten = \"[::1]:9400\"\n", Metrics{Listen: "[::1]:9400"}},
		{"tls", base + "[metrics]\nlisten = \":9400\"\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n",
			Metrics{Listen: ":9400", TLSCert: "/c.pem", TLSKey: "/k.pem"}},
		{"insecure", base + "[metrics]\nlisten = \"192.0.2.9:9400\"\ninsecure = true\n", Metrics{Listen: "192.0.2.9:9400", Insecure: true}},
		{"api's certificate", base + "[api]\nlisten = \"192.0.2.9:8443\"\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n" +
			"[metrics]\nlisten = \"192.0.2.9:9400\"\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n",
			Metrics{Listen: "192.0.2.9:9400", TLSCert: "/c.pem", TLSKey: "/k.pem"}},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("t.toml", []byte(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Metrics != tt.want {
				t.Fatalf("got %+v, want %+v", cfg.Metrics, tt.want)
			}
			if cfg.Metrics.Enabled() != (tt.want.Listen != "") {
				t.Fatal("Enabled")
			}
		})
	}
	bad := []struct {
		name, text string
		want       []string
	}{
		{"not loopback without tls", base + "[metrics]\nlisten = \"0.0.0.0:9400\" #!A\n",
			[]string{`A metrics.listen: "0.0.0.0:9400" is not a loopback address: serving metrics there needs tls_cert and tls_key`}},
		{"all addresses without tls", base + "[metrics]\nlisten = \":9400\" #!A\n",
			[]string{`A metrics.listen: ":9400" is not a loopback address`}},
		{"no port", base + "[metrics]\nlisten = \"localhost\" #!A\n",
			[]string{`A metrics.listen: must be host:port`}},
		{"bad port", base + "[metrics]\nlisten = \":0\" #!A\n",
			[]string{`A metrics.listen: port must be a number in 1..65535, got "0"`}},
		{"the api's port", base + "[metrics]\nlisten = \"127.0.0.1:8080\" #!A\n",
			[]string{`A metrics.listen: "127.0.0.1:8080" is the API's address too`}},
		{"tls half and relative", base + "[metrics] #!B\nlisten = \"192.0.2.9:9400\"\ntls_cert = \"cert.pem\" #!A\n",
			[]string{"B metrics.tls_key: missing: tls_cert is set, tls_key must be too", `A metrics.tls_cert: must be an absolute path, got "cert.pem"`}},
		{"unknown key", base + "[metrics]\nlisten_addr = \"127.0.0.1:9400\" #!A\n",
			[]string{`A metrics.listen_addr: unknown key`}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tt.text))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if e := expect(t, tt.text, w); !strings.Contains(err.Error(), e) {
					t.Errorf("error %q\nlacks %q", err, e)
				}
			}
		})
	}
}
