package tenants

import (
	"fmt"
	"sync"
	"time"
)

// importLogEvery is how often an import batch the store refused is logged
// at most: a full disk fails every batch of an import, and a field trial's
// 80k-line import logged 122 lines in 1.3 s (a million lines: 2000). The
// lines' results say each failure to the caller; the log says the store
// failed, and how many batches it left out since its last line.
// A variable for tests, whose steps on a loaded machine may take longer.
var importLogEvery = 10 * time.Second

// importLog limits the log lines of the import batches the store refused.
type importLog struct {
	mu      sync.Mutex
	last    time.Time
	skipped int         // batches not logged since last
	armed   *time.Timer // logs the batches left out, if no line does first
}

// logImportFailed logs that the store refused an import batch of n lines
// from line first (failed of them were to be written), at most once every
// importLogEvery; a line then counts the batches left out before it, of
// any ISP and actor.
func (t *Tenants) logImportFailed(what, isp string, first, n, failed int, a Actor, err error) {
	l := &t.importLog
	l.mu.Lock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < importLogEvery {
		l.skipped++
		if l.armed == nil {
			// The batches left out are said when the limit allows,
			// not only with the next failure, which may come hours
			// later or never (a review).
			l.armed = time.AfterFunc(importLogEvery-now.Sub(l.last), t.logImportSkipped)
		}
		l.mu.Unlock()
		return
	}
	skipped := l.skipped
	l.last, l.skipped = now, 0
	l.mu.Unlock()
	t.log.Error("tenants: import lines not stored", "import", what, "isp", isp, "lines", fmt.Sprintf("%d..%d", first, first+n-1),
		"failed", failed, "actor", a.Name, "request_id", a.RequestID, "err", err, "batches_not_logged_before", skipped)
}

// logImportSkipped logs the import batches the store refused that the
// limit left out since the last line, if any (every ISP's and actor's).
func (t *Tenants) logImportSkipped() {
	l := &t.importLog
	l.mu.Lock()
	skipped := l.skipped
	l.armed = nil
	if skipped > 0 {
		l.last, l.skipped = time.Now(), 0
	}
	l.mu.Unlock()
	if skipped > 0 {
		t.log.Error("tenants: import lines not stored", "batches_not_logged", skipped)
	}
}
