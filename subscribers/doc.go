// Package subscribers is ispmux's embedded durable store: the subscriber
// registry (which MAC may get service, from which ISP), the bindings (the
// leases the ISPs granted), the intents (messages that end a binding, about
// to be sent to an ISP), and the events the management API reports to the
// operator and the ISPs. It is one bbolt file in the appliance's state_dir.
//
// # Durability
//
// Every write method (PutRegistration, DeleteRegistration,
// SyncRegistrations, CommitBinding, CommitBindingEvent, DeleteBinding,
// EndBinding, CompleteIntent, AddEvent) returns only after its bbolt
// transaction has committed and the file has been fsynced (fdatasync on
// Linux), unless Options.NoSync was set, which is for tests and benchmarks
// only. A nil error therefore means the change survives a process
// crash and a power loss. The DHCP engine relies on this: it calls
// CommitBinding before it sends the ACK, so a lease a subscriber was told
// about is never lost. A non-nil error means the change may or may not be on
// disk, and the caller must not act as if it were (no ACK).
//
// # State changes and their events
//
// CommitBindingEvent (for bound, renewed) and EndBinding (for released,
// declined, revoked, expired) write a change of a binding in one
// transaction with the event that records it, so that the log neither
// lacks an event for a change that happened nor holds one for a change that
// did not.
//
// # Intents
//
// A transition that tells an ISP something and ends a binding (release,
// decline, revocation) must survive a crash at any instant without leaving
// a binding the ISP has freed (ispmux would forward for it) or a lease at
// the ISP that nobody uses. So it is three steps: EndBinding removes the
// binding and stores an Intent holding the DHCP message to send, in one
// transaction; the caller sends the message; CompleteIntent deletes the
// intent. At start the caller replays Intents: each pending one is sent
// again and completed. A crash before EndBinding leaves the binding and the
// ISP's lease as they were (they agree, and run out together); a crash
// after it leaves the intent, so the message is sent at least once (a
// server ignores a RELEASE for a lease it no longer holds).
//
// # Group commit
//
// One fsync costs far more than the write it protects, so concurrent
// writers share one. Each write is a closure over a bbolt transaction,
// queued in Store.update. The writer that finds no commit running becomes
// the leader: it takes every queued closure (up to Options.MaxBatchSize),
// runs them all in one DB.Update (one transaction, one fsync), and releases
// each waiter with the result. Writers arriving meanwhile queue up; when the
// leader is done it hands the leadership to the oldest of them, which
// commits the whole queue at once. So a lone writer commits at once and
// pays one fsync, and under load the batch grows to whatever arrived during
// the previous fsync: the fsync rate stays flat while commits per second
// grow with the number of committers (BenchmarkCommitBinding).
//
// bbolt's own DB.Batch does the same grouping but starts a batch only when
// a timer (MaxBatchDelay, 10ms by default) fires or the batch is full, so
// every commit waits for the timer even when nothing else is coming. On the
// development VM that made a lone committer about 25 times slower and 64
// committers about 4 times slower than this queue (compare the parallel64
// and parallel64-dbbatch benchmarks), so it is not used.
//
// A closure may run more than once: if one closure of a batch fails, the
// batch is retried without it and the failed one is re-run alone in its
// own transaction, as DB.Batch does. So the closures are idempotent: they
// recompute everything they report (a "found" flag, an event's sequence
// number) on every run, and validation happens before a closure is queued.
//
// # Lifetime
//
// A Store is safe for concurrent use. Close waits for the writes and reads
// in flight, then closes the file; calls after Close return ErrClosed. bbolt
// holds an exclusive flock on the file, so a second Open of the same file,
// from this or another process, fails after Options.LockTimeout with
// ErrLocked.
//
// # Layout and encoding
//
// Buckets: "meta" (schema version), "registrations" (key: the 6-byte MAC),
// "bindings" (key: access port name, 0x00, VLAN big-endian, MAC),
// "binding-expiry" (an index: sortable lease end, then the binding key; lets
// ExpiredBindings read only what has expired), "intents" (key: the
// big-endian intent ID, from the bucket's persistent sequence), and
// "events" (key: the big-endian sequence number, from the bucket's
// persistent sequence, so it keeps increasing across restarts).
//
// Events are trimmed from the front of the log in the transaction that
// appends one: to the newest Options.EventRetention, and those more than
// Options.EventMaxAge older than the appended event. Trimming looks only at
// the front, so an append costs O(1 + events trimmed). EventBounds tells a
// reader the oldest sequence number still kept, so it can tell it missed
// some.
//
// Values are a compact binary encoding whose first byte is a format version
// (currently 2), followed by the fields in a fixed order: strings, byte
// fields and addresses are uvarint-length-prefixed, times are varint seconds
// plus uvarint nanoseconds, durations varint nanoseconds. Version 1 values
// (schema 1: bindings and events without the fields version 2 appended)
// still decode. Decoding checks every length, the version, trailing bytes
// and that the value agrees with its key; a bad value yields a
// *CorruptError (errors.Is ErrCorrupt) that names the bucket and the key,
// never a panic. List methods return every value that decoded together with
// the joined errors of those that did not, so one damaged record does not
// keep the appliance from reloading the others.
//
// # Schema versions
//
// The meta bucket's schema byte is the version of the whole file (2 now;
// see schemaVersion). Open migrates an older file in place, in one
// transaction (all or nothing: schema 1 to 2 re-encodes every value and
// adds the intents bucket), and refuses a newer one with ErrSchema: an
// older ispmux never writes a file it cannot fully read. Open of a current
// file writes nothing. Backup writes a consistent copy of the file while
// the store is in use (`ispmux ctl backup FILE`).
package subscribers
