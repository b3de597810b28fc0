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
	// WindowWaits counts the times a leader waited a commit window
	// (Options.CommitWindow) for more writes.
	WindowWaits uint64
	// JournalSync is how the binding journal's appends are made durable
	// (Store.JournalSync's via).
	JournalSync string
}

// CommitStats returns the group commit's statistics (package metrics).
func (s *Store) CommitStats() CommitStats {
	via, _ := s.JournalSync()
	return CommitStats{Transactions: s.writeTxs.Load(), Writes: s.writes.Load(), Latency: s.commitTime.Snapshot(), WindowWaits: s.windowWaits.Load(), JournalSync: via}
}
