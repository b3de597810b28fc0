package api

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/ispmux/ispmux/auth"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
	"github.com/ispmux/ispmux/tenants"
)

type countingEvents struct {
	tenants.Service
	reads atomic.Int64
}

func (c *countingEvents) Events(ctx context.Context, isp string, after uint64, limit int) (tenants.EventPage, error) {
	c.reads.Add(1)
	return c.Service.Events(ctx, isp, after, limit)
}

// The operator's event stream, resumed (Last-Event-ID) at the newest event
// of a store restored from a backup copy, with nothing new yet: the log's
// newest number is past the jump (2^32+) with no event there, so
// WaitEvents(after) returned at once, the read found nothing, and the
// handler looped: a CPU spun per such stream until the next event.
func TestOperatorStreamNoSpinAfterRestore(t *testing.T) {
	dir := t.TempDir()
	orig, err := subscribers.Open(filepath.Join(dir, "orig.db"), subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var last subscribers.Event
	for i := range 3 {
		if last, err = orig.AddEvent(subscribers.Event{Kind: subscribers.EventBound, ISP: "alpha", MAC: subscribers.MAC{2, 0, 0, 0, 0, byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(dir, "copy.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := orig.Backup(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	orig.Close()
	st, err := subscribers.Open(filepath.Join(dir, "copy.db"), subscribers.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.OpenedFromCopy() == 0 {
		t.Fatal("not taken for a copy")
	}
	ten := tenants.New(tenants.Config{ISPs: []string{"alpha", "beta"}, MaxDevices: 100}, st, registry.New(), realNopProxy{}, nil, nil)
	if err := ten.Load(); err != nil {
		t.Fatal(err)
	}
	svc := &countingEvents{Service: ten}
	fx := newFixture(t)
	toks, err := auth.LoadTokens(auth.TokenFilesFromConfig(fx.cfg))
	if err != nil {
		t.Fatal(err)
	}
	fx.srv = New(fx.cfg.API, svc, toks, nil)
	fx.h = fx.srv.Handler()
	w := fx.do("GET", "/v1/events/stream", "operator", "", "Last-Event-ID", strconv.FormatUint(last.Seq, 10)) // runs 100 ms
	if w.Code != 200 || last.Seq != orig.EventBase()+3 {
		t.Fatalf("stream: %d %s (last seq %d)", w.Code, w.Body, last.Seq)
	}
	if n := svc.reads.Load(); n > 5 {
		t.Errorf("operator stream resumed at the copy's newest event read the log %d times in 100 ms with nothing new (busy loop)", n)
	}
}
