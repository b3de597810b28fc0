package webhooks

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
)

// benchReceiver acknowledges every message at once and records, per
// event, the delay from the event's time to its receipt.
type benchReceiver struct {
	srv    *httptest.Server
	n      atomic.Int64
	mu     sync.Mutex
	delays []time.Duration
	done   chan struct{}
	want   int64
}

func newBenchReceiver(b *testing.B, want int) *benchReceiver {
	rc := &benchReceiver{done: make(chan struct{}), want: int64(want)}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		now := time.Now()
		var e tenants.Event
		if err := json.Unmarshal(body, &e); err == nil {
			rc.mu.Lock()
			rc.delays = append(rc.delays, now.Sub(e.Time))
			rc.mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
		if rc.n.Add(1) == rc.want {
			close(rc.done)
		}
	}))
	b.Cleanup(rc.srv.Close)
	return rc
}

func (rc *benchReceiver) percentiles(b *testing.B) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	ds := slices.Clone(rc.delays)
	slices.Sort(ds)
	if len(ds) == 0 {
		return
	}
	p := func(q float64) float64 {
		return float64(ds[min(len(ds)-1, int(q*float64(len(ds))))].Microseconds()) / 1000
	}
	b.ReportMetric(p(0.50), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
}

// BenchmarkThroughput: b.N events of one ISP already in the store (fsynced
// store, as in production), delivered to a local receiver that answers
// 204 at once; events/s is the delivery rate.
func BenchmarkThroughput(b *testing.B) {
	s := openStore(b, "", subscribers.Options{})
	sec := writeSecret(b, specSecret)
	rc := newBenchReceiver(b, b.N)
	m, err := New(&configs.Config{ISPs: []configs.ISP{isp("beta", rc.srv.URL, sec)}}, s, nil)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < b.N; i += 16 {
				addEvent(b, s, "beta", subscribers.EventBound, i)
			}
		}()
	}
	wg.Wait()
	b.ResetTimer()
	start := time.Now()
	r := run(b, m)
	<-rc.done
	el := time.Since(start)
	b.StopTimer()
	r.stop()
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
}

// BenchmarkDelay: one producer adds b.N events back to back (each
// AddEvent an fsynced commit) while the webhook delivers them: the delay
// from an event's time (set when it is added, before its commit) to its
// receipt, p50 and p99.
func BenchmarkDelay(b *testing.B) {
	s := openStore(b, "", subscribers.Options{})
	sec := writeSecret(b, specSecret)
	rc := newBenchReceiver(b, b.N)
	r := start(b, &configs.Config{ISPs: []configs.ISP{isp("beta", rc.srv.URL, sec)}}, s)
	b.ResetTimer()
	for i := range b.N {
		addEvent(b, s, "beta", subscribers.EventBound, i)
	}
	<-rc.done
	b.StopTimer()
	r.stop()
	rc.percentiles(b)
}

// BenchmarkDelayPaced is BenchmarkDelay with the events 5 ms apart (200
// events/s: a busy appliance), so the delay is not queueing behind a
// back-to-back producer.
func BenchmarkDelayPaced(b *testing.B) {
	s := openStore(b, "", subscribers.Options{})
	sec := writeSecret(b, specSecret)
	rc := newBenchReceiver(b, b.N)
	r := start(b, &configs.Config{ISPs: []configs.ISP{isp("beta", rc.srv.URL, sec)}}, s)
	b.ResetTimer()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for i := range b.N {
		<-tick.C
		addEvent(b, s, "beta", subscribers.EventBound, i)
	}
	<-rc.done
	b.StopTimer()
	r.stop()
	rc.percentiles(b)
}
