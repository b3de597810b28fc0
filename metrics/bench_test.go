package metrics

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/ispmux/ispmux/engine"
)

// box is a Source over a real engine (its control plane holding n
// bindings across nisp ISPs) and fake counters elsewhere: what the
// appliance's Source reads at scrape time, with the same cost per binding.
type box struct {
	*fake
	st  *engine.State
	ctl *engine.Control
}

func (b *box) Ports() []Port {
	pcs := b.st.Counters()
	out := b.fake.Ports()
	for i := range out {
		out[i].Engine = pcs[i]
	}
	return out
}

func (b *box) ISPs() []ISP {
	per := b.ctl.BindingsPerISP()
	out := b.fake.ISPs()
	for i := range out {
		n := per[uint8(i)]
		out[i].Bindings, out[i].StaticBindings = n.DHCP, n.Static
	}
	return out
}

func newBox(tb testing.TB, n, nisp int) *box {
	tb.Helper()
	ports := []engine.PortConfig{{Name: "acc0", AccessVLANs: []uint16{0}}, {Name: "acc1", AccessVLANs: []uint16{0}}}
	for i := range nisp {
		ports = append(ports, engine.PortConfig{Name: fmt.Sprintf("up%d", i), Uplinks: map[uint16]uint8{0: uint8(i)}})
	}
	st, err := engine.NewState(ports, n+n/4+16, 1)
	if err != nil {
		tb.Fatal(err)
	}
	ctl := engine.NewControl(st, nil, nil)
	for i := range n {
		ip := netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)})
		if err := ctl.Bind(engine.Binding{Port: uint8(i % 2), MAC: 0x020000000000 + uint64(i), ISP: uint8(i % nisp), IP: ip, Static: i%50 == 0}); err != nil {
			tb.Fatal(err)
		}
	}
	f := newFake(nisp)
	return &box{fake: f, st: st, ctl: ctl}
}

func scrapeBody(tb testing.TB, h http.Handler, gz bool) []byte {
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/metrics", nil)
	if gz {
		r.Header.Set("Accept-Encoding", "gzip")
	}
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		tb.Fatalf("GET /metrics: %d", w.Code)
	}
	return w.Body.Bytes()
}

// ispmuxOnly is the part of a scrape that is ispmux's (not go_, process_).
func ispmuxOnly(body []byte) (series int, size int) {
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "ispmux_") {
			series++
			size += len(l) + 1
		}
	}
	return series, size
}

// The scrape does not grow with the bindings: the same series at 1k and
// 20k bindings, and every binding counted.
func TestScrapeSizeIndependentOfBindings(t *testing.T) {
	var series [2]int
	for i, n := range []int{1000, 20000} {
		b := newBox(t, n, 8)
		body := scrapeBody(t, Handler(New(b)), false)
		series[i], _ = ispmuxOnly(body)
		var sum float64
		for k := range 8 {
			for _, kind := range []string{"dhcp", "static"} {
				v, ok := sampleValue(string(body), "ispmux_bindings", map[string]string{"isp": fmt.Sprintf("isp%d", k), "kind": kind})
				if !ok {
					t.Fatalf("no bindings of isp%d", k)
				}
				sum += v
			}
		}
		if int(sum) != n {
			t.Errorf("%d bindings, ispmux_bindings sums to %v", n, sum)
		}
	}
	if series[0] != series[1] {
		t.Errorf("series: %d at 1k bindings, %d at 20k", series[0], series[1])
	}
}

// BenchmarkScrape is one GET /metrics of a box with 1k and 100k bindings
// across 8 ISPs (10 ports): its time, and its size plain and gzipped.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("bindings=%d", n), func(b *testing.B) {
			bx := newBox(b, n, 8)
			h := Handler(New(bx))
			plain := scrapeBody(b, h, false)
			zipped := scrapeBody(b, h, true)
			series, own := ispmuxOnly(plain)
			if r, err := gzip.NewReader(bytes.NewReader(zipped)); err != nil {
				b.Fatalf("not gzip: %v", err)
			} else {
				r.Close()
			}
			for b.Loop() {
				scrapeBody(b, h, false)
			}
			b.ReportMetric(float64(len(plain)), "bytes/scrape")
			b.ReportMetric(float64(len(zipped)), "gzip-bytes/scrape")
			b.ReportMetric(float64(own), "ispmux-bytes/scrape")
			b.ReportMetric(float64(series), "ispmux-series")
		})
	}
}

// BenchmarkBindingsPerISP is the part of a scrape read under the control
// plane's lock (engine.Control.BindingsPerISP: counts kept by Bind and
// Unbind, O(ISPs), at 100k bindings).
func BenchmarkBindingsPerISP(b *testing.B) {
	bx := newBox(b, 100000, 8)
	for b.Loop() {
		bx.ctl.BindingsPerISP()
	}
}
