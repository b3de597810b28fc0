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
// original as it was (and a PATH.compact the next Compact removes);
// after it, the copy. opts are Open's (its lock timeout: ErrLocked while
// ispmux runs).
//
// Compact may run as root (ispmux compact switches to the owner of a
// state_dir that is not root's, and refuses one of root's that others may
// write), so it also keeps to what a root process needs where another user
// might have a hand in the directory: it follows no symbolic link it did
// not make itself, and sets owners and modes on the files it opened, never
// by name (a review: a link planted at PATH.journal.compact had root
// truncate and hand over the file it named). The store file itself must
// be a regular file, not a link.
func Compact(path string, opts Options) (res CompactResult, err error) {
	owner, err := os.Lstat(path)
	if err != nil {
		return res, fmt.Errorf("compact: %w", err)
	}
	if !owner.Mode().IsRegular() {
		return res, fmt.Errorf("compact %s: not a regular file (%v): compact the file itself", path, owner.Mode().Type())
	}
	// An empty or truncated store is refused before anything is made
	// beside it.
	if err := checkStoreFile(path); err != nil {
		return res, fmt.Errorf("compact %s: %w", path, err)
	}
	// Open makes the journal's files if they are missing (a restored
	// copy), as root's when root compacts the ispmux user's store, and
	// ispmux could not open them (a review; until Compact returned: a
	// crash test). The missing ones are made first, the store's owner's;
	// those Open finds are given its owner after, by descriptor.
	if err := makeJournalsLike(path, owner); err != nil {
		return res, fmt.Errorf("compact: %w", err)
	}
	defer func() {
		for _, j := range journalPaths(path) {
			if cerr := chownFileLike(j, owner); cerr != nil && err == nil {
				err = fmt.Errorf("compact: %w", cerr)
			}
		}
	}()
	opts.NoFollow = true
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
	src, err := openLocked(path, &bolt.Options{Timeout: opts.LockTimeout, FreelistType: bolt.FreelistMapType, OpenFile: openNoFollow})
	if errors.Is(err, berrors.ErrTimeout) {
		return res, fmt.Errorf("compact %s: %w (is ispmux running with this state_dir?)", path, ErrLocked)
	}
	if err != nil {
		return res, fmt.Errorf("compact %s: %w", path, err)
	}
	defer src.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		return res, fmt.Errorf("compact: %w", err)
	}
	res.Before = fi.Size()
	tmp := path + ".compact"
	// The copy's file is made here (never one left by a crash, nor a
	// link: O_EXCL), given the store's owner and mode on its
	// descriptor, and handed to bbolt as it is.
	_ = os.Remove(tmp) // one left by a crash (a link: the link)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err == nil {
		err = fchownLike(f, fi)
		if err == nil {
			err = f.Chmod(fi.Mode().Perm())
		}
		if err != nil {
			_ = f.Close()
		}
	}
	if err != nil {
		_ = os.Remove(tmp)
		return res, fmt.Errorf("compact %s: %w", tmp, err)
	}
	dst, err := bolt.Open(tmp, fi.Mode().Perm(), &bolt.Options{FreelistType: bolt.FreelistMapType, NoFreelistSync: false,
		OpenFile: func(string, int, os.FileMode) (*os.File, error) { return f, nil }})
	if err != nil {
		_ = os.Remove(tmp)
		return res, fmt.Errorf("compact %s: %w", tmp, err)
	}
	failpoint.Hit(failpoint.CompactBeforeCopy)
	err = guardRead(func() error { return bolt.Compact(dst, src, compactTxSize) })
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
	if fi, err := os.Lstat(path); err == nil {
		res.After = fi.Size()
	}
	return res, nil
}

// makeJournalsLike makes the journal files of the store at path that are
// missing, empty (Open takes an empty file for a new one), with like's
// owner: each made under another name (O_EXCL: not a link, nor one left
// by a crash, which is removed first), given the owner on its descriptor,
// and linked into place, so that a crash leaves it either missing or
// like's, and a journal made meanwhile (an ispmux starting) is left as it
// is: a link does not replace.
func makeJournalsLike(path string, like os.FileInfo) error {
	made := false
	for _, j := range journalPaths(path) {
		if _, err := os.Lstat(j); !errors.Is(err, os.ErrNotExist) {
			continue // there (or unreadable: Open says why)
		}
		tmp := j + ".compact"
		_ = os.Remove(tmp)
		f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		err = fchownLike(f, like)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			if err = os.Link(tmp, j); errors.Is(err, os.ErrExist) {
				err = nil // made meanwhile: Open takes that one
			}
		}
		_ = os.Remove(tmp)
		if err != nil {
			return err
		}
		made = true
	}
	if !made {
		return nil
	}
	return syncDir(filepath.Dir(path))
}

// fchownLike gives the open file f like's owner and group, where this
// process may (root; otherwise they are its own already).
func fchownLike(f *os.File, like os.FileInfo) error {
	sys, ok := like.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if err := f.Chown(int(sys.Uid), int(sys.Gid)); err != nil && os.Geteuid() == 0 {
		return err
	}
	return nil
}

// chownFileLike is fchownLike for the file at path, if it is there and a
// regular file (opened without following a link; a link is left alone:
// Open refused it).
func chownFileLike(path string, like os.FileInfo) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return err
	}
	return fchownLike(f, like)
}
