package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/lab"
	"github.com/ispmux/ispmux/subscribers"
)

// backupCrashCovers are the failpoints TestCrashBackup crashes at
// (TestCrashMatrixCoversEveryPoint).
var backupCrashCovers = []string{failpoint.BackupAfterMark, failpoint.BackupAfterCopy}

// copyLogLine is what ispmux logs when it opens a store from a backup copy
// (appliance.go).
const copyLogLine = "store opened from a backup copy"

// TestCrashBackup: `ctl backup` against an ispmux SIGKILLed in the middle
// of it, once the live store's mark for the copy is durable (nothing of
// the copy sent yet) and once the whole copy was written (the mark not yet
// removed). ctl must fail and leave no copy (a copy cut short carries
// nothing the operator can restore); the restarted ispmux must not take
// its own store for a copy (no jump in the event numbers, no log line).
// Then a backup that completes gives a marked copy.
func TestCrashBackup(t *testing.T) {
	t.Parallel()
	r := newRig(t, lab.Options{Subscribers: 1, DHCP: true, LeaseTime: time.Hour})
	fp := failpointBinary(t)
	r.start()
	ctx := context.Background()
	newest := func() uint64 {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		p, err := ctlsock.FetchNewestEvents(c, r.sock(), 1)
		if err != nil {
			t.Fatal(err)
		}
		return p.Newest
	}
	for _, point := range backupCrashCovers {
		t.Run(point, func(t *testing.T) {
			r.t = t
			r.stop()
			p := r.launch(fp, "ISPMUX_FAILPOINT="+point)
			t.Cleanup(p.kill9)
			if _, err := r.waitReady(p, 15*time.Second); err != nil {
				t.Fatal(err)
			}
			before := newest()
			file := filepath.Join(r.dir, "crashed-"+strings.ReplaceAll(point, "/", "-")+".db")
			c, cancel := context.WithTimeout(ctx, 20*time.Second)
			res, err := ctlsock.Backup(c, r.sock(), file, false)
			cancel()
			if err == nil {
				t.Errorf("ctl backup succeeded (%d bytes) though ispmux was killed in mid-backup", res.Bytes)
			}
			if !p.wait(10 * time.Second) {
				t.Fatal("ispmux did not crash at the failpoint")
			}
			if err := diedAt(p, point); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a copy was left at %s after the crash: %v", file, err)
			}
			r.start()
			if after := newest(); after != before {
				t.Errorf("after a crash at %s the live store's newest event number went from %d to %d (taken for a backup copy)", point, before, after)
			}
			if strings.Contains(r.log.String(), copyLogLine) {
				t.Errorf("after a crash at %s ispmux logged %q for its own store", point, copyLogLine)
			}
		})
	}
	r.t = t
	file := filepath.Join(r.dir, "whole.db")
	res, err := ctlsock.Backup(ctx, r.sock(), file, false)
	if err != nil {
		t.Fatalf("ctl backup after the crashes: %v", err)
	}
	c, err := subscribers.Open(file, subscribers.Options{})
	if err != nil {
		t.Fatalf("open the copy (%d bytes): %v", res.Bytes, err)
	}
	defer c.Close()
	if c.OpenedFromCopy() == 0 {
		t.Error("the copy of a backup that completed is not marked")
	}
}
