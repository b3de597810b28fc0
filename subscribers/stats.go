package subscribers

import "github.com/ispmux/ispmux/internal/histo"

// CommitStats is the group commit's statistics.
type CommitStats struct {
	// Transactions counts the write transactions run (committed or not),
	// appends to the binding journal included.
	Transactions uint64
	// Writes counts the writes those transactions carried (a write
	// retried alone after its batch failed counts twice): Writes ÷
	// Transactions is how many writes share a commit's fsyncs.
	Writes uint64
	// Latency is the time of each write transaction or journal append,
	// fsync included.
	Latency histo.Snapshot
	// WriteErrors counts the writes the store failed (their change not
	// made): a full disk, an I/O error, a damaged file; not a write that
	// refused its own change (ErrInvalid, ErrNotFound). DHCP's are
	// store_error decisions as well; the API's are errors of their
	// requests, an import's of its lines (before, those left no operator
	// signal: a trial's import on a full disk).
	WriteErrors uint64
	// WindowWaits counts the times a leader waited a commit window
	// (Options.CommitWindow) for more writes.
	WindowWaits uint64
	// JournalSync is how the binding journal's appends are made durable
	// (Store.JournalSync's via).
	JournalSync string
	// HeldEvents is how many events the event log keeps past its
	// retention for webhook receivers that have not acknowledged them
	// (HoldEventsFor).
	HeldEvents uint64
}

// CommitStats returns the group commit's statistics (package metrics).
func (s *Store) CommitStats() CommitStats {
	via, _ := s.JournalSync()
	return CommitStats{Transactions: s.writeTxs.Load(), Writes: s.writes.Load(), WriteErrors: s.writeErrors.Load(), Latency: s.commitTime.Snapshot(),
		WindowWaits: s.windowWaits.Load(), JournalSync: via, HeldEvents: s.HeldEvents()}
}
