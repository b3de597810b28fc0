package subscribers

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ispmux/ispmux/internal/failpoint"
)

// Backup writes a consistent copy of the whole store file to w, from one
// read transaction: writers go on meanwhile, and the copy is the store as
// of the moment Backup began. The copy is a store file Open opens. It
// returns the bytes written.
//
// The copy is marked as one (keyBackupCopy): the live store holds the
// mark for the moment of the copy's transaction, and Open of a marked
// file moves the event log's sequence numbers far ahead (openedCopy), so
// that a store restored from the copy never gives out again a number the
// store it was copied from gave out after the backup (webhook receivers
// drop an id they have seen; API pollers resume after their last number).
// The mark is a random value, written first to the file beside the store
// (backupPendingPath) and removed from it last: should ispmux stop before
// the mark is removed from the live store, or its removal fail, the live
// store's next Open finds its own mark there and removes it, without a
// jump. A copy never has that file beside it with its mark: Backup
// returns an error (the copy is not to be used) unless both the mark and
// the file are gone.
func (s *Store) Backup(w io.Writer) (int64, error) {
	s.backupMu.Lock()
	defer s.backupMu.Unlock()
	mark := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
	mark = append(mark, make([]byte, 8)...)
	if _, err := rand.Read(mark[8:]); err != nil {
		return 0, fmt.Errorf("backup %s: %w", s.path, err)
	}
	pending := backupPendingPath(s.path)
	if err := writeSynced(pending, mark); err != nil {
		return 0, fmt.Errorf("backup %s: record the backup in progress: %w", s.path, err)
	}
	if err := s.updateOwn(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyBackupCopy, mark)
	}); err != nil {
		return 0, fmt.Errorf("backup %s: mark the copy: %w", s.path, err)
	}
	failpoint.Hit(failpoint.BackupAfterMark)
	var n int64
	err := s.viewJournaled(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err == nil {
		failpoint.Hit(failpoint.BackupAfterCopy)
	}
	if uerr := s.updateOwn(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Delete(keyBackupCopy)
	}); uerr != nil {
		if err == nil {
			err = fmt.Errorf("unmark the store (its next Open removes the mark): %w", uerr)
		}
	} else if rerr := removeSynced(pending); rerr != nil && err == nil {
		err = fmt.Errorf("remove %s: %w", pending, rerr)
	}
	if err != nil {
		return n, fmt.Errorf("backup %s: %w", s.path, err)
	}
	return n, nil
}

// backupPendingPath is the file beside the store file path that holds the
// mark of a Backup in progress (Backup): a file marked with the same value
// is the live store, not a copy.
func backupPendingPath(path string) string { return path + ".backup-in-progress" }

// writeSynced writes b to a new file path (replacing one left by a
// crash), durably: the file and its directory are fsynced. What is at
// path is removed, not written through: a link planted there (the state
// directory may be another user's) names no file of root's.
func writeSynced(path string, b []byte) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := openNoFollow(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// readMark reads the backup mark in the file at path (backupPendingPath):
// a regular file, not through a link, at most a mark's 16 bytes read (a
// longer file is no mark of ours).
func readMark(path string) ([]byte, error) {
	f, err := openNoFollow(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	var b [17]byte
	n, err := io.ReadFull(f, b[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:n], nil
}

// removeSynced removes path (none: nothing to do) and fsyncs its
// directory.
func removeSynced(path string) error {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return syncDir(filepath.Dir(path))
}

var (
	// keyBackupCopy marks a copy written by Backup; its value is the
	// time of the backup (Unix nanoseconds) and 8 random bytes (an older
	// ispmux wrote the time only).
	keyBackupCopy = []byte("backup-copy")
	// keyEventGaps lists the jumps openedCopy made in the event log's
	// sequence numbers, 16 bytes each: the newest number before the
	// jump, and the jump (the next number given out is newest+jump+1).
	keyEventGaps = []byte("event-seq-gaps")
)

// Jumps in the event numbers of a restored copy: at least minCopyJump,
// and copyEventRate numbers for every second since the backup, far more
// than the events any store writes in that time (each one is a durable
// write; a DHCP burst at the box's capacity is a few thousand a second),
// so that the copy's new numbers begin past every number the original
// store may have given out since. At that rate the numbers stay below
// 2^53 (exact in JSON numbers) for over a century of backup age.
const (
	minCopyJump   = 1 << 32
	copyEventRate = 1_000_000
)

// seqGap is a jump in the event log's numbers: the numbers after
// Newest up to Newest+Jump were never given out.
type seqGap struct{ Newest, Jump uint64 }

// readGaps decodes keyEventGaps (a damaged value: no gaps, which only
// makes the log's trimming count the jump as events).
func readGaps(tx *bolt.Tx) []seqGap {
	return decodeGaps(tx.Bucket(bucketMeta).Get(keyEventGaps))
}

// decodeGaps decodes a list of gaps, 16 bytes each (keyEventGaps, and an
// ISP's sequence after its last number); a short tail is ignored.
func decodeGaps(v []byte) []seqGap {
	var gaps []seqGap
	for ; len(v) >= 16; v = v[16:] {
		gaps = append(gaps, seqGap{binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])})
	}
	return gaps
}

// appendGaps appends gaps to b as decodeGaps reads them.
func appendGaps(b []byte, gaps []seqGap) []byte {
	for _, g := range gaps {
		b = binary.BigEndian.AppendUint64(b, g.Newest)
		b = binary.BigEndian.AppendUint64(b, g.Jump)
	}
	return b
}

// openedCopy runs at Open, after the journal's replay: if the file is a
// Backup copy, it moves the event log's next number, and every ISP's
// (jumpISPSeqs), ahead (copyJump),
// records the gap, and removes the mark, in one transaction. A file whose
// mark is the one in backupPendingPath is the live store of a Backup that
// did not finish: the mark is removed, with no jump. It loads the gaps
// either way; a file that is not marked is only read (a backupPendingPath
// left by a Backup that stopped before or after its mark is removed). It
// returns the jump made (0: not a copy).
func (s *Store) openedCopy(now time.Time) (uint64, error) {
	var mark []byte
	err := s.view(func(tx *bolt.Tx) error {
		s.gaps, s.base = logGaps(tx), eventBase(tx)
		mark = bytes.Clone(tx.Bucket(bucketMeta).Get(keyBackupCopy))
		return nil
	})
	pending := backupPendingPath(s.path)
	own, perr := readMark(pending)
	if perr != nil && !errors.Is(perr, fs.ErrNotExist) {
		return 0, fmt.Errorf("read %s: %w", pending, perr)
	}
	if err != nil {
		return 0, err
	}
	if perr == nil && len(mark) > 0 && bytes.Equal(own, mark) {
		err = s.boltUpdate(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyBackupCopy) })
		if err != nil {
			return 0, fmt.Errorf("unmark the store after an unfinished backup: %w", err)
		}
		mark = nil
	}
	if perr == nil {
		if err := removeSynced(pending); err != nil {
			return 0, fmt.Errorf("remove %s: %w", pending, err)
		}
	}
	if mark == nil { // a file that is not a copy is only read
		return 0, nil
	}
	var jump, next uint64
	err = s.boltUpdate(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		v := meta.Get(keyBackupCopy)
		var at time.Time
		if len(v) >= 8 {
			at = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
		}
		jump = copyJump(at, now)
		evs := tx.Bucket(bucketEvents)
		newest := evs.Sequence()
		next = newest + jump
		if err := evs.SetSequence(next); err != nil {
			return err
		}
		gaps := append(readGaps(tx), seqGap{newest, jump})
		if err := meta.Put(keyEventGaps, appendGaps(nil, gaps)); err != nil {
			return err
		}
		if err := jumpISPSeqs(tx, jump); err != nil {
			return err
		}
		s.gaps = logGaps(tx)
		return meta.Delete(keyBackupCopy)
	})
	if err != nil {
		s.gaps = nil
		return 0, fmt.Errorf("restored copy: %w", err)
	}
	if jump > 0 {
		s.evSeq.Store(next)
	}
	return jump, nil
}

// copyJump is how far openedCopy moves the numbers of a copy taken at
// backup (zero: unknown) and opened at now.
func copyJump(backup, now time.Time) uint64 {
	jump := uint64(minCopyJump)
	if !backup.IsZero() && now.After(backup) {
		jump += uint64(now.Sub(backup)/time.Second+1) * copyEventRate
	}
	return jump
}

// virtual is seq less the gaps below it (a new store's base, a restored
// copy's jumps: s.gaps): the count of numbers given out up to seq, for
// the trimming of the log by count (the identity on a store created
// without a base and never restored from a copy).
func (s *Store) virtual(seq uint64) uint64 { return virtualSeq(s.gaps, seq) }

// virtualSeq is seq less the jumps of gaps below it (Store.virtual).
func virtualSeq(gaps []seqGap, seq uint64) uint64 {
	// Newest first: each gap's Newest is a real number, compared with
	// seq before the jumps below it are taken off.
	for i := len(gaps) - 1; i >= 0; i-- {
		if g := gaps[i]; seq > g.Newest {
			seq -= min(g.Jump, seq-g.Newest)
		}
	}
	return seq
}

// SeqBefore returns the number n events before seq: the after for a read
// of the newest n events up to seq (0 if fewer than n were given out), the
// numbers a restored copy skipped not counted.
func (s *Store) SeqBefore(seq, n uint64) uint64 {
	v := s.virtual(seq)
	if v <= n {
		return 0
	}
	r := v - n
	for _, g := range s.gaps {
		if r > g.Newest {
			r += g.Jump
		}
	}
	return r
}

// gapOldest is the log's oldest number as its readers see it: a log whose
// oldest event follows a jump (the events before it trimmed) begins, for
// a reader's n+1 < oldest, right after the jump's Newest, the numbers in
// the jump never having been events.
//
// The base of a new store (eventbase.go), the first of s.gaps, is not
// folded back: a reader whose number is below it read another store, and
// is told it missed events (after+1 < oldest); a new reader asks after 0,
// which misses nothing.
func (s *Store) gapOldest(oldest uint64) uint64 {
	gaps := s.gaps
	if s.base > 0 && len(gaps) > 0 {
		gaps = gaps[1:]
	}
	return gapOldestOf(gaps, oldest)
}
