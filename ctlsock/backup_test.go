package ctlsock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ispmux/ispmux/subscribers"
)

// TestBackup: `ctl backup` while the appliance writes gives a store file
// that subscribers.Open opens, consistent (every binding with its event),
// replaces an existing file whole when asked to (and refuses to without),
// and refuses to overwrite the live store.
func TestBackup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	store, err := subscribers.Open(filepath.Join(dir, StoreName), subscribers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	commit := func(i int) error {
		b := subscribers.Binding{MAC: subscribers.MAC{2, 0, 0, 0, byte(i >> 8), byte(i)}, Access: "acc0", VLAN: 100,
			ISP: "alpha", IP: netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), Expires: time.Now().Add(time.Hour),
			ClientID: []byte{1, 2, 0, 0, 0, byte(i >> 8), byte(i)}, Customer: fmt.Sprint("c", i)}
		_, err := store.CommitBindingEvent(b, subscribers.Event{Kind: subscribers.EventBound, MAC: b.MAC, ISP: b.ISP, IP: b.IP})
		return err
	}
	for i := range 100 {
		if err := commit(i); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "ispmux.sock")
	srv, err := Serve(sock, &Server{Store: store, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 100; i < 60000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := commit(i); err != nil {
				t.Error(err)
				return
			}
		}
	})
	out := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(out, []byte("an older file, replaced whole"), 0o600); err != nil {
		t.Fatal(err)
	}
	for k := range 3 {
		res, err := Backup(ctx, sock, out, true)
		if err != nil {
			t.Fatalf("Backup %d: %v", k, err)
		}
		fi, err := os.Stat(out)
		if err != nil || fi.Size() != res.Bytes || len(res.SHA256) != 64 {
			t.Fatalf("Backup %d: %+v; file %v, %v", k, res, fi, err)
		}
		c, err := subscribers.Open(out, subscribers.Options{NoSync: true})
		if err != nil {
			t.Fatalf("Open of backup %d: %v", k, err)
		}
		bs, err := c.Bindings()
		if err != nil {
			t.Fatal(err)
		}
		evs, err := c.Events(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) < 100 || len(bs) != len(evs) {
			t.Errorf("backup %d: %d bindings, %d events; want >= 100, one event per binding", k, len(bs), len(evs))
		}
		for _, b := range bs {
			if b.Customer == "" || len(b.ClientID) != 7 {
				t.Errorf("backup %d: binding %+v lost its fields", k, b)
				break
			}
		}
		c.Close()
		t.Logf("backup %d: %d bytes, %d bindings", k, res.Bytes, len(bs))
	}
	// Without replace, an existing file is refused and kept: ctl backup
	// wrote over an older copy given the same name without a word.
	before, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Backup(ctx, sock, out, false); !errors.Is(err, ErrBackupExists) || !strings.Contains(err.Error(), out+" exists") {
		t.Errorf("backup over an existing file without replace: %v", err)
	}
	if after, err := os.ReadFile(out); err != nil || !bytes.Equal(after, before) {
		t.Errorf("the existing file was changed (%d bytes, was %d): %v", len(after), len(before), err)
	}
	close(stop)
	wg.Wait()
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left: %q", left)
	}

	// The live store is not a backup target.
	if _, err := Backup(ctx, sock, filepath.Join(dir, ".", StoreName), true); err == nil || !strings.Contains(err.Error(), "running appliance's store") {
		t.Errorf("backup over the live store: %v", err)
	}
	// Nor its journal files (the appliance would go on appending to the
	// replaced file: every later binding lost at the next start), nor
	// anything else in the state directory.
	for _, f := range []string{StoreName + ".journal", StoreName + ".journal.1", "ispmux.sock", "copy.db"} {
		if _, err := Backup(ctx, sock, filepath.Join(dir, f), true); err == nil {
			t.Errorf("backup to %s in the state directory accepted", f)
		}
	}
	// Nor a directory below it (run's package purge removes it).
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Backup(ctx, sock, filepath.Join(dir, "sub", "x.db"), false); err == nil || !strings.Contains(err.Error(), "state directory") {
		t.Errorf("backup under the state directory: %v", err)
	}
	// A directory is not the copy's file: refused before the copy is made
	// (it was made, then the rename failed naming a temporary file).
	od := t.TempDir()
	if _, err := Backup(ctx, sock, od, false); err == nil || !strings.Contains(err.Error(), od+" is a directory") {
		t.Errorf("backup to a directory: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(od), ".*tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left: %q", left)
	}
	if _, err := store.Bindings(); err != nil {
		t.Errorf("live store after the refused backup: %v", err)
	}
	// No appliance: a clear error, no file.
	if _, err := Backup(ctx, filepath.Join(t.TempDir(), "ispmux.sock"), filepath.Join(t.TempDir(), "x.db"), false); err == nil || !strings.Contains(err.Error(), "is ispmux running?") {
		t.Errorf("backup without an appliance: %v", err)
	}
}

// TestRenameIntoNoReplace: the rename that ends a backup without replace
// keeps a file made at its name meanwhile (after Backup's first check,
// while the copy was being received), and says so.
func TestRenameIntoNoReplace(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, ".copy.tmp"), filepath.Join(dir, "copy.db")
	for _, f := range []string{from, to} {
		if err := os.WriteFile(f, []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := renameInto(from, to, false); !errors.Is(err, fs.ErrExist) {
		t.Errorf("renameInto over an existing file: %v, want an fs.ErrExist", err)
	}
	if b, err := os.ReadFile(to); err != nil || string(b) != to {
		t.Errorf("the existing file: %q, %v", b, err)
	}
	if err := renameInto(from, to, true); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(to); err != nil || string(b) != from {
		t.Errorf("replaced: %q, %v", b, err)
	}
	if err := os.Remove(to); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(from, []byte(from), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := renameInto(from, to, false); err != nil {
		t.Fatalf("renameInto to a new name: %v", err)
	}
	if _, err := os.Stat(from); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the temporary file is left: %v", err)
	}
}
