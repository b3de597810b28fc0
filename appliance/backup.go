package appliance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The control socket's backup request: GET /backup streams a consistent
// copy of the store (subscribers.Store.Backup, one read transaction) and
// ends with the trailers below. A failure in mid-copy aborts the response,
// so a client that checks the trailers never takes a partial copy for a
// whole one.
const (
	headerBackupSize   = "Ispmux-Backup-Size"
	headerBackupSHA256 = "Ispmux-Backup-Sha256"
	// backupStall bounds how long one write to a backup client may block:
	// the copy holds a read transaction (and Close waits for it), so a
	// client that stops reading must not hold it for ever.
	backupStall = 30 * time.Second
)

func (a *Appliance) serveBackup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Trailer", headerBackupSize+", "+headerBackupSHA256)
	h := sha256.New()
	rc := http.NewResponseController(w)
	n, err := a.store.Backup(writerFunc(func(p []byte) (int, error) {
		_ = rc.SetWriteDeadline(time.Now().Add(backupStall))
		h.Write(p)
		return w.Write(p)
	}))
	if err != nil {
		a.log.Warn("control socket: backup failed", "err", err, "bytes", n)
		if n == 0 {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		panic(http.ErrAbortHandler) // the client sees a truncated response
	}
	w.Header().Set(headerBackupSize, strconv.FormatInt(n, 10))
	w.Header().Set(headerBackupSHA256, hex.EncodeToString(h.Sum(nil)))
	a.log.Info("control socket: backup sent", "bytes", n)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// BackupResult is what `ispmux ctl backup` reports.
type BackupResult struct {
	File   string `json:"file"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Backup asks the appliance whose control socket is at sock for a
// consistent copy of its store, taken while it runs, and writes it to
// file: into a temporary file in file's directory, checked against the
// size and SHA-256 the appliance sent, fsynced, then renamed over file
// (and the directory fsynced). So file is either the whole copy or left as
// it was. The copy is a store file subscribers.Open opens. file must not
// be the running store itself (state_dir's StoreName, next to sock):
// replacing it under the appliance would lose every later write.
func Backup(ctx context.Context, sock, file string) (*BackupResult, error) {
	live := filepath.Join(filepath.Dir(sock), StoreName)
	if same(live, file) {
		return nil, fmt.Errorf("backup: %s is the running appliance's store; write the copy elsewhere", file)
	}
	dir := filepath.Dir(file)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://ispmux/backup", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w (is ispmux running?)", sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("control socket %s: backup: %s: %s", sock, resp.Status, body)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), resp.Body)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: backup cut short after %d bytes: %w", sock, n, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	wantN, wantSum := resp.Trailer.Get(headerBackupSize), resp.Trailer.Get(headerBackupSHA256)
	if wantN != strconv.FormatInt(n, 10) || wantSum != sum {
		return nil, fmt.Errorf("control socket %s: backup incomplete: received %d bytes (SHA-256 %s), the appliance sent %q bytes (SHA-256 %q)", sock, n, sum, wantN, wantSum)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		os.Remove(tmp.Name())
		done = true
		return nil, fmt.Errorf("backup: %w", err)
	}
	done = true
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return nil, fmt.Errorf("backup: sync %s: %w", dir, err)
		}
	}
	return &BackupResult{File: file, Bytes: n, SHA256: sum}, nil
}

// same reports whether paths a and b name the same file (or, if b does
// not exist yet, the same path).
func same(a, b string) bool {
	ia, errA := os.Stat(a)
	ib, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(ia, ib)
	}
	aa, errA := filepath.Abs(a)
	ab, errB := filepath.Abs(b)
	return errA == nil && errB == nil && aa == ab
}
