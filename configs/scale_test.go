package configs

import (
	"fmt"
	"strings"
	"testing"
)

// manySubscribers is a configuration with n [[subscriber]] entries; with
// broken set, every entry has an error of its own (a customer_id with a
// space; an access without an address is one error for all its
// subscribers).
func manySubscribers(n int, broken bool) []byte {
	var b strings.Builder
	b.WriteString("version = 1\n\n[[access]]\ninterface = \"acc0\"\naddress = \"100.64.0.1\"\n")
	b.WriteString("\n[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\ndhcp_servers = [\"192.0.2.1\"]\n")
	sep := "-"
	if broken {
		sep = " "
	}
	for i := range n {
		fmt.Fprintf(&b, "\n[[subscriber]]\nmac = \"02:%02x:%02x:%02x:00:01\"\nisp = \"alpha\"\ncustomer_id = \"c%s%d\"\n", i>>16&0xff, i>>8&0xff, i&0xff, sep, i)
	}
	return []byte(b.String())
}

// TestManyErrorsReported: every broken entry gets its error (and the
// bookkeeping of which keys failed is not a walk of all errors per check:
// BenchmarkParseSubscribers shows it linear).
func TestManyErrorsReported(t *testing.T) {
	_, err := Parse("big.toml", manySubscribers(2000, true))
	errs, ok := err.(Errors)
	if !ok || len(errs) != 2000 {
		t.Fatalf("got %d errors (%T), want 2000", len(errs), err)
	}
}

// BenchmarkParseSubscribers parses files of 5k and 20k subscribers, valid
// and with an error per entry: the time per entry must not grow with the
// file (it grew with the errors before: 20k broken entries took 17 s).
func BenchmarkParseSubscribers(b *testing.B) {
	for _, broken := range []bool{false, true} {
		for _, n := range []int{5000, 20000} {
			data := manySubscribers(n, broken)
			b.Run(fmt.Sprintf("n=%d/broken=%v", n, broken), func(b *testing.B) {
				for b.Loop() {
					_, _ = Parse("big.toml", data)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/subscriber")
			})
		}
	}
}

// TestManySubscribersValid: the file of BenchmarkParseSubscribers'
// valid runs parses (its ISP had no dhcp_servers, so each of its DHCP
// subscribers was an error: the "valid" runs timed the error path).
func TestManySubscribersValid(t *testing.T) {
	if _, err := Parse("big.toml", manySubscribers(100, false)); err != nil {
		t.Fatal(err)
	}
}
