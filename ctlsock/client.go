package ctlsock

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/subscribers"
)

// FetchEvents asks the appliance for the events after seq (at most 1000:
// FetchEventPage says whether there are more).
func FetchEvents(ctx context.Context, path string, after uint64) ([]EventStatus, error) {
	p, err := FetchEventPage(ctx, path, after, 0)
	if err != nil {
		return nil, err
	}
	return p.Events, nil
}

// FetchEventPage asks for up to limit events (1..10000; 0 or less: 1000)
// after Seq after.
func FetchEventPage(ctx context.Context, path string, after uint64, limit int) (*EventPage, error) {
	q := fmt.Sprintf("/events?after=%d", after)
	if limit > 0 {
		q += fmt.Sprintf("&limit=%d", limit)
	}
	return fetchEvents(ctx, path, q)
}

// FetchNewestEvents asks for the newest n events (1..10000).
func FetchNewestEvents(ctx context.Context, path string, n int) (*EventPage, error) {
	return fetchEvents(ctx, path, fmt.Sprintf("/events?last=%d", n))
}

func fetchEvents(ctx context.Context, path, what string) (*EventPage, error) {
	p := &EventPage{}
	h, err := fetch(ctx, path, what, &p.Events)
	if err != nil {
		return nil, err
	}
	if p.Events == nil {
		p.Events = []EventStatus{}
	}
	p.Oldest, _ = strconv.ParseUint(h.Get(headerOldestSeq), 10, 64)
	p.Newest, _ = strconv.ParseUint(h.Get(headerNewestSeq), 10, 64)
	return p, nil
}

// FetchStatus asks the appliance whose control socket is at path for its
// status.
func FetchStatus(ctx context.Context, path string) (*Status, error) {
	var st Status
	if _, err := fetch(ctx, path, "/status", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Reload has the appliance whose control socket is at path reload its
// configuration file, as SIGHUP does, and returns its status once the
// reload is done: LastReloadAt, ReloadRefused, ReloadPartial and
// RestartPending say what it did.
func Reload(ctx context.Context, path string) (*Status, error) {
	var st Status
	if _, err := do(ctx, http.MethodPost, path, "/reload", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// fetch GETs what on the control socket at path into v and returns the
// response's headers.
func fetch(ctx context.Context, path, what string, v any) (http.Header, error) {
	return do(ctx, http.MethodGet, path, what, v)
}

// do makes a request of method for what on the control socket at path,
// reads its JSON answer into v and returns the response's headers.
func do(ctx context.Context, method, path, what string, v any) (http.Header, error) {
	// One request per client: no connection is kept (a kept one would
	// stay open on both sides, with a goroutine here, after the client is
	// gone).
	c := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, method, "http://ispmux"+what, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, unreachable(path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("control socket %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return resp.Header, nil
}

// BackupResult is what `ispmux ctl backup` reports.
type BackupResult struct {
	File   string `json:"file"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// ErrBackupExists is Backup's error for a file that exists, when it was
// not asked to replace it.
var ErrBackupExists = errors.New("exists: not replaced")

// Backup asks the appliance whose control socket is at sock for a
// consistent copy of its store, taken while it runs, and writes it to
// file: into a temporary file in file's directory, checked against the
// size and SHA-256 the appliance sent, fsynced, then renamed over file
// (and the directory fsynced). So file is either the whole copy or left as
// it was. An existing file is replaced only if replace is set; else Backup
// fails with ErrBackupExists, before the copy is asked for and again at
// the rename (which then replaces nothing: a file made meanwhile is kept),
// so an older copy is not lost to a name given twice (a review: ctl backup
// overwrote it without a word). The copy is a store file subscribers.Open
// opens. file must not
// be in the state directory (sock's): the copy would replace the running
// store, one of its journal files or the socket under the appliance
// (over a journal file, the appliance went on appending to the replaced
// file, and every binding acknowledged from then on was lost at the next
// start), or sit where a restore expects the live files.
func Backup(ctx context.Context, sock, file string, replace bool) (*BackupResult, error) {
	state := filepath.Dir(sock)
	live := filepath.Join(state, StoreName)
	for _, f := range subscribers.JournalFiles(live) {
		if same(f, file) {
			return nil, fmt.Errorf("backup: %s is the running appliance's journal; write the copy outside %s", file, state)
		}
	}
	switch {
	case same(live, file):
		return nil, fmt.Errorf("backup: %s is the running appliance's store; write the copy outside %s", file, state)
	case same(sock, file) || within(state, filepath.Dir(file)):
		return nil, fmt.Errorf("backup: %s is in the running appliance's state directory %s; write the copy elsewhere", file, state)
	}
	if st, err := os.Stat(file); err == nil && st.IsDir() {
		return nil, fmt.Errorf("backup: %s is a directory: name the file the copy is written to", file)
	}
	if _, err := os.Lstat(file); err == nil && !replace {
		return nil, fmt.Errorf("backup: %s %w", file, ErrBackupExists)
	}
	dir := filepath.Dir(file)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		// Named by file and its directory, not by the temporary
		// file's name, which the operator never gave.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("backup: cannot write %s: its directory %s: %w", file, dir, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	// One request per client: no connection is kept (a kept one would
	// stay open on both sides, with a goroutine here, after the client is
	// gone).
	c := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
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
		return nil, unreachable(sock, err)
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
	if err := renameInto(tmp.Name(), file, replace); err != nil {
		os.Remove(tmp.Name())
		done = true
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("backup: %s %w", file, ErrBackupExists)
		}
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

// renameInto renames from to to; unless replace, atomically only if to
// does not exist (renameat2's RENAME_NOREPLACE; on a file system without
// it, a hard link, which fails as well on a name taken, and from removed):
// an error satisfying errors.Is(err, fs.ErrExist) if it does.
func renameInto(from, to string, replace bool) error {
	if replace {
		return os.Rename(from, to)
	}
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		if err != nil {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
		}
		return nil
	}
	if err := os.Link(from, to); err != nil {
		return err
	}
	return os.Remove(from)
}

// same reports whether paths a and b name the same file (or, if b does
// not exist yet, the same path).
// within reports whether dir is the directory top or one below it,
// however either is named (each of dir's ancestors is compared with top
// as same compares files: symbolic links resolved).
func within(top, dir string) bool {
	d, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		if same(top, d) {
			return true
		}
		up := filepath.Dir(d)
		if up == d {
			return false
		}
		d = up
	}
}

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

// unreachable is the error of a request to the control socket at path
// that got no answer. A socket that cannot be dialled (no appliance) is
// named with the dial's own error, without the request's internal URL
// ("Get \"http://ispmux/status\": …"), as api/client's socket client
// does for the tenant commands.
func unreachable(path string, err error) error {
	var ue *url.Error
	var oe *net.OpError
	if errors.As(err, &ue) && errors.As(ue.Err, &oe) && oe.Op == "dial" {
		err = oe
	}
	return fmt.Errorf("control socket %s: %w (is ispmux running?)", path, err)
}
