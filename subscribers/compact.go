package subscribers

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/ispmux/ispmux/internal/failpoint"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// CompactResult is what Compact did: the file's size before and after.
type CompactResult struct {
	Before, After int64
}

// compactTxSize is how many bytes of keys and values one transaction of
// the copy carries (bbolt.Compact commits every so many). A transaction
// holds each key it put in a bbolt node entry of its own (~64 bytes and
// the key's copy, the nodes' slices grown by doubling) until it commits,
// and the store's keys and values are small (a registration is ~60
// bytes): at 64 MiB a transaction held over a million of them, and the
// compaction of a store of a million subscribers peaked at 520 MB of heap
// (550 MB of RssAnon) where 4 MiB peaks at ~60 MB, and is no slower
// (8.5 s against 10–12 s: a trial; ~100 commits of ~4 MiB instead of 6).
const compactTxSize = 4 << 20

// Compact rewrites the store file at path without its free pages, for a
// store that is not open (ispmux stopped): bbolt never gives pages back to
// the file system, so a store that once held a million customers (purged
// since, or expired) keeps its size for good. The store is first opened
// and closed as ispmux would (a migration, the binding journal's records
// checkpointed into the file), then copied bucket by bucket, sequences
// included, into PATH.compact (path's owner and mode), which is synced
// and renamed over path
// while the original is still locked. A crash before the rename leaves the
// original as it was (and a PATH.compact the next Compact overwrites);
// after it, the copy. opts are Open's (its lock timeout: ErrLocked while
// ispmux runs).
func Compact(path string, opts Options) (res CompactResult, err error) {
	owner, err := os.Stat(path)
	if err != nil {
		return res, fmt.Errorf("compact: %w", err)
	}
	// Open makes the journal's files if they are missing (a restored
	// copy): the store's owner's, as the store, whatever becomes of the
	// compaction (root compacting the ispmux user's store left them
	// root's, and ispmux could not open them: a review).
	defer func() {
		for _, j := range journalPaths(path) {
			if cerr := chownLike(j, owner); cerr != nil && err == nil {
				err = fmt.Errorf("compact: %w", cerr)
			}
		}
	}()
	// Made by Open, they were root's until Compact returned: a crash in
	// between left ispmux's user a store it could not open (a crash
	// test). The missing ones are made first, with the store's owner.
	if err := makeJournalsLike(path, owner); err != nil {
		return res, fmt.Errorf("compact: %w", err)
	}
	st, err := Open(path, opts)
	if err != nil {
		return res, fmt.Errorf("compact: %w", err)
	}
	if err := st.Close(); err != nil {
		return res, fmt.Errorf("compact: %w", err)
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	src, err := openLocked(path, &bolt.Options{Timeout: opts.LockTimeout, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, berrors.ErrTimeout) {
		return res, fmt.Errorf("compact %s: %w (is ispmux running with this state_dir?)", path, ErrLocked)
	}
	if err != nil {
		return res, fmt.Errorf("compact %s: %w", path, err)
	}
	defer src.Close()
	fi, err := os.Stat(path)
	if err != nil {
		return res, fmt.Errorf("compact: %w", err)
	}
	res.Before = fi.Size()
	tmp := path + ".compact"
	_ = os.Remove(tmp) // one left by a crash
	dst, err := bolt.Open(tmp, fi.Mode().Perm(), &bolt.Options{FreelistType: bolt.FreelistMapType, NoFreelistSync: false})
	if err != nil {
		return res, fmt.Errorf("compact %s: %w", tmp, err)
	}
	// The store's owner and mode (root compacting the store of
	// ispmux's user; bolt.Open's mode is the umask's).
	err = chownLike(tmp, fi)
	if err == nil {
		err = os.Chmod(tmp, fi.Mode().Perm())
	}
	if err == nil {
		failpoint.Hit(failpoint.CompactBeforeCopy)
		err = guardRead(func() error { return bolt.Compact(dst, src, compactTxSize) })
	}
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		failpoint.Hit(failpoint.CompactAfterCopy)
		err = os.Rename(tmp, path)
	}
	if err == nil {
		failpoint.Hit(failpoint.CompactAfterRename)
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return res, fmt.Errorf("compact %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil {
		res.After = fi.Size()
	}
	return res, nil
}

// makeJournalsLike makes the journal files of the store at path that are
// missing, empty (Open takes an empty file for a new one), with like's
// owner: each made under another name and renamed into place, so that a
// crash leaves it either missing or like's.
func makeJournalsLike(path string, like os.FileInfo) error {
	made := false
	for _, j := range journalPaths(path) {
		if _, err := os.Lstat(j); !errors.Is(err, os.ErrNotExist) {
			continue // there (or unreadable: Open says why)
		}
		tmp := j + ".compact"
		f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err == nil {
			err = f.Close()
		}
		if err == nil {
			err = chownLike(tmp, like)
		}
		if err == nil {
			err = os.Rename(tmp, j)
		}
		if err != nil {
			_ = os.Remove(tmp)
			return err
		}
		made = true
	}
	if !made {
		return nil
	}
	return syncDir(filepath.Dir(path))
}

// chownLike gives the file at path (if it exists) like's owner and group,
// where this process may (root; otherwise they are its own already).
func chownLike(path string, like os.FileInfo) error {
	sys, ok := like.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	err := os.Chown(path, int(sys.Uid), int(sys.Gid))
	if errors.Is(err, os.ErrNotExist) || err != nil && os.Geteuid() != 0 {
		return nil
	}
	return err
}
