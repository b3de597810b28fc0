package appliance

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/internal/privtest"
	"github.com/ispmux/ispmux/subscribers"
)

// TestCloseStoreOnFullDisk: a stop on a full disk with bindings pending in
// the binding journal is clean: the store's last checkpoint fails, which
// loses nothing, so closeStore logs a warning saying what the next start
// does and returns no error (Run's: ispmux exits 0). It returned the
// checkpoint's ENOSPC, and ispmux exited 1 (a field trial). The disk is a
// 32 MiB tmpfs (root), unmounted at the end whatever happens.
func TestCloseStoreOnFullDisk(t *testing.T) {
	privtest.Lab(t)
	disk := t.TempDir()
	if err := unix.Mount("tmpfs", disk, "tmpfs", 0, "size=32m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(disk, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", disk, err)
		}
	})
	path := filepath.Join(disk, StoreName)
	st, err := subscribers.Open(path, subscribers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 300 // more than the free pages of a new store file hold
	for i := range n {
		b := subscribers.Binding{MAC: subscribers.MAC{2, 0, 0, 0, byte(i >> 8), byte(i)}, Access: "acc0", ISP: "isp-a",
			IP: netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), Expires: time.Now().Add(time.Hour)}
		if err := st.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	fill, err := os.Create(filepath.Join(disk, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1 << 20, 4096} {
		for err == nil {
			_, err = fill.Write(make([]byte, size))
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("filling the disk: %v", err)
		}
		err = nil
	}
	fill.Close()

	var log bytes.Buffer
	if err := closeStore(st, slog.New(slog.NewTextHandler(&log, nil))); err != nil {
		t.Errorf("closeStore on the full disk: %v, want nil (nothing lost)", err)
	}
	for _, want := range []string{"level=WARN", "nothing is lost", "the next start replays the binding journal",
		"once the state directory's file system has room", fmt.Sprintf("records=%d", n), "no space left on device"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("closeStore's log does not say %q:\n%s", want, log.String())
		}
	}
	if err := os.Remove(fill.Name()); err != nil {
		t.Fatal(err)
	}
	st, err = subscribers.Open(path, subscribers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if all, err := st.Bindings(); err != nil || len(all) != n {
		t.Errorf("after the restart: %d bindings, %v; want %d", len(all), err, n)
	}
}

// TestCloseErr: what each of Close's errors makes of a stop. A journal
// kept for want of room (ENOSPC, EDQUOT) or only not emptied is a warning
// (exit 0); a checkpoint that failed for another cause (EIO) is Run's
// error (exit 1), saying nothing is lost; any other error is Run's as it
// is.
func TestCloseErr(t *testing.T) {
	other := errors.New("bolt: database not open")
	for _, tc := range []struct {
		name    string
		err     error
		wantErr bool
		log     string
	}{
		{"nil", nil, false, ""},
		{"other", other, true, ""},
		{"not emptied", &subscribers.JournalKeptError{Err: syscall.EIO}, false, "skips its records"},
		{"full disk", &subscribers.JournalKeptError{Replay: true, Pending: 3, Err: fmt.Errorf("checkpoint: %w", syscall.ENOSPC)}, false, "records=3"},
		{"quota", &subscribers.JournalKeptError{Replay: true, Pending: 2, Err: fmt.Errorf("checkpoint: %w", syscall.EDQUOT)}, false, "records=2"},
		{"failing disk", &subscribers.JournalKeptError{Replay: true, Pending: 4, Err: fmt.Errorf("checkpoint: %w", syscall.EIO)}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log bytes.Buffer
			err := closeErr(tc.err, slog.New(slog.NewTextHandler(&log, nil)))
			if (err != nil) != tc.wantErr {
				t.Fatalf("closeErr(%v) = %v, want an error: %v", tc.err, err, tc.wantErr)
			}
			if tc.wantErr && tc.err != nil && !errors.Is(err, tc.err) && !strings.Contains(err.Error(), tc.err.Error()) {
				t.Errorf("closeErr(%v) = %v: does not carry the cause", tc.err, err)
			}
			if tc.name == "failing disk" && !strings.Contains(err.Error(), "nothing is lost") {
				t.Errorf("closeErr on EIO: %q does not say nothing is lost", err)
			}
			if tc.log != "" && (!strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), tc.log)) {
				t.Errorf("closeErr's log does not warn %q:\n%s", tc.log, log.String())
			}
			if tc.log == "" && log.Len() != 0 {
				t.Errorf("closeErr logged:\n%s", log.String())
			}
		})
	}
}
