package webhooks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/subscribers"
)

// A webhook worker whose ISP is quiet while other ISPs' events are
// trimmed from the log moves its cursor past them and tells its receiver
// of no loss (before, it sent one events-lost message per trimmed event of
// the others).
func TestQuietISPNothingLost(t *testing.T) {
	st, err := subscribers.Open(filepath.Join(t.TempDir(), "s.db"), subscribers.Options{NoSync: true, EventRetention: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var mu sync.Mutex
	var ids []string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ids = append(ids, r.Header.Get("webhook-id"))
		mu.Unlock()
	}))
	defer rcv.Close()
	sec := filepath.Join(t.TempDir(), "whsec")
	if err := os.WriteFile(sec, []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &configs.Config{ISPs: []configs.ISP{{Name: "alpha"},
		{Name: "beta", WebhookURL: rcv.URL, WebhookSecretFile: sec, WebhookRetryMaxDur: 100 * time.Millisecond}}}
	m, err := New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	add := func(isp string) uint64 {
		e, err := st.AddEvent(subscribers.Event{Kind: subscribers.EventBound, ISP: isp, MAC: subscribers.MAC{2, 0, 0, 0, 0, 1}, Reason: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return e.ISPSeq
	}
	first := add("beta")
	for range 20 {
		add("alpha") // beta is quiet; the log keeps the newest 5
		time.Sleep(2 * time.Millisecond)
	}
	last := add("beta")
	want := []string{strconv.FormatUint(first, 10), strconv.FormatUint(last, 10)}
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		got := append([]string(nil), ids...)
		mu.Unlock()
		if len(got) > 0 && got[len(got)-1] == want[1] || time.Now().After(deadline) {
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("beta's receiver got %v, want %v (no beta event was ever trimmed)", got, want)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
