// Package subscribers is ispmux's embedded durable store: the tenant model
// (the ISPs' customers, and the subscriber registry: which MAC — device —
// may get service, from which ISP, as which customer), the bindings (the
// leases the ISPs granted), the onboarding leases (those ispmux granted
// itself to MACs without a device record, for the walled garden), the intents (messages that end a binding, about
// to be sent to an ISP), the events the management API reports to the
// operator and the ISPs, and a change feed of the tenant model for a
// follower. It is one bbolt file in the appliance's state_dir.
//
// # Durability
//
// Every write method (PutRegistration, DeleteRegistration,
// SyncRegistrations, ApplyTenant, CommitBinding, CommitBindingEvent,
// DeleteBinding, EndBinding, CommitOnboarding, EndOnboarding,
// CompleteIntent, CompleteIntents, AddEvent, SetWebhookCursor)
// returns only after its bbolt transaction has committed and the file has
// been fsynced (fdatasync on Linux), or, for CommitBinding and
// CommitBindingEvent, after its record is in the binding journal and that
// file is fdatasynced (see "Binding journal"), unless Options.NoSync was
// set, which is for tests and benchmarks only. A nil error therefore
// means the change survives a process crash and a power loss. The DHCP engine relies on this: it calls
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
// did not. CommitOnboarding (onboarded; a renewal writes no event) and
// EndOnboarding (onboarding-ended) do the same for the onboarding leases.
//
// # The tenant model
//
// Customers (key: ISP, customer ID) and registrations (devices, key: MAC)
// are written by one writer, the tenants service, which serialises its own
// read-check-write sequences; the store gives it reads (Customer,
// Customers, AllCustomers, Registration, DevicesOf, Devices) and one
// atomic write, ApplyTenant: customers and registrations put and deleted,
// bindings ended with their intents (as EndBinding) and the events that
// record it all (with the actor and the request id), in one transaction.
// The older registration writes (PutRegistration, DeleteRegistration,
// SyncRegistrations for the config's [[subscriber]] entries) keep the same
// indexes and feed. Paged lists take and return opaque cursors (the last
// key of a page): a page starts after the previous one's last item even if
// that item was deleted meanwhile, so a walk through the pages returns
// every item present (and not moved within the order) throughout exactly
// once.
//
// # Events
//
// The event log holds the DHCP path's facts (bound, released, refused...)
// and the tenant model's changes (customer-created, claimed, moved...),
// the latter with the Actor that made them and the API RequestID. Events
// reads the whole log, EventsOf one ISP's part of it (an index, so an
// ISP's page does not read the other ISPs' events), EventsOfMAC and
// NewestEventsOfMAC one device's (another index), and WaitEvents blocks
// until a newer event is committed, woken in-process by the commit (any
// writer), for the live streams.
//
// # Change feed
//
// Every put and delete of a customer or registration appends an entry
// (kind, op, key; not the value) to the change feed in the same
// transaction: Changes reads it from a sequence number, ChangeSeq gives
// the newest, Watch follows it in-process (woken by the commit). It is
// trimmed like the event log (Options.ChangeRetention,
// Options.ChangeMaxAge); a follower that fell further behind sees a gap in
// the sequence numbers and reloads the records. It is the hook for a
// future multi-appliance backend.
//
// # Intents
//
// A transition that tells an ISP something and ends a binding (release,
// decline, revocation) must survive a crash at any instant without leaving
// a binding the ISP has freed (ispmux would forward for it) or a lease at
// the ISP that nobody uses. So it is three steps: EndBinding removes the
// binding and stores an Intent holding the DHCP message to send, in one
// transaction; the caller sends the message; CompleteIntent deletes the
// intent (CompleteIntents many at once, in one transaction: a backlog
// settled after an ISP's outage). At start the caller replays Intents: each pending one is sent
// again and completed. A crash before EndBinding leaves the binding and the
// ISP's lease as they were (they agree, and run out together); a crash
// after it leaves the intent, so the message is sent at least once (a
// server ignores a RELEASE for a lease it no longer holds). AddIntent stores
// an intent alone, for a message about an address never bound (the DECLINE
// of an address the ISP ACKed in conflict). ApplyTenant's
// EndBindings are the same first step, taken in the transaction of the
// tenant change that ends the service (suspend, delete, block, move,
// detach).
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
// Options.CommitWindow adds a short wait under concurrency only: a leader
// with fewer than 8 writes queued, less than a window after a commit of
// more than one, waits one window for more (TestCommitWindow). A lone
// writer never waits; ispmux uses 2 ms (appliance.commitWindow says what
// 1 and 4 ms did), which at 2000 DHCP ACKs a second makes batches larger
// and the CPU per ACK smaller.
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
// # Binding journal
//
// A bbolt commit costs two fdatasyncs (data pages, then the meta page)
// and writes every page it dirtied: a binding's leaf, the event log's and
// its index's last leaves, the branch pages above them, the freelist. The
// binding commits of the DHCP path (CommitBinding, CommitBindingEvent)
// are the store's hot write, so they go to a write-ahead log instead: the
// file STATE.journal beside the store (journal.go), reserved ahead in
// 1 MiB steps, at most 8 MiB: allocated (fallocate) and zero-filled, so
// that an append needs no block (a full disk does not fail it, on ext4,
// xfs and tmpfs; on a copy-on-write file system every overwrite takes a
// new one) and its fdatasync writes no metadata. Open reserves both files
// again: a sparse copy of the state directory (cp --sparse=always, rsync
// -S) made their zeros holes, which Open allocates and fills (with what
// they read as: reserve). A group commit whose
// writes are all journal records appends them, one write and one
// fdatasync, and releases the writers; the
// records are then pending: durable, not yet in bbolt. Each record holds
// its generation's tag, its LSN (a counter that only grows), the
// binding's key and value and the event with the sequence number the
// leader gave it (the in-memory event counter, evSeq), framed by its
// length and a CRC-32C. A generation is the run of records from the
// start of a file since Open, the last checkpoint or the last swap; its
// tag is random. A file's directory is fsynced when the file is created.
//
// The append's fdatasync goes through io_uring where the kernel offers it
// (internal/uring: IORING_OP_FSYNC with IORING_FSYNC_DATASYNC, the same
// flush as fdatasync(2), run by the kernel's io-wq worker), and the
// leader waits for its completion in the netpoller: it holds no P
// meanwhile, so the datapath worker and the DHCP relay run on a process
// pinned to one CPU, which Go runs with one P (docs/DEPLOY.md, GOMAXPROCS).
// Where io_uring is refused (kernel.io_uring_disabled, a container's
// seccomp profile, Linux < 5.4) it calls fdatasync(2); JournalSync says
// which, and ispmux logs it at start ("store open", journal_sync).
//
// A checkpoint writes the pending records into bbolt. Every bbolt write
// transaction of the group commit is one: it applies the pending records
// the file does not hold yet (past its journal-lsn), in order, then its
// own writes, and stores the last LSN handed out in the meta bucket
// (journal-lsn), in the same transaction. So a DeleteBinding or
// EndBinding can never be overtaken by an older put in the journal, and
// once that transaction is committed the journal starts over at the first
// byte of its current file (reset: nothing written). Such a checkpoint is
// also run when a batch does not fit in the journal (those writes go
// through bbolt), and for Backup (viewJournaled), so the copy holds every
// write that returned. The other readers see every write that returned
// without one: Binding reads a pending record itself (the DHCP path's
// renewals), LastEventSeq answers from evSeq, the listings of bindings
// (Bindings, ForEachBinding, BindingsPage) merge the pending records'
// values with bbolt's in key order (pendingbindings.go), and the event
// log's followers (Events, EventsOf, WebhookEvents: an event stream, a
// webhook worker, reading in a loop), EventBounds (every page of the
// events API) and CountEventsOf (a webhook's lag, at every metrics
// scrape) merge the pending records' events with bbolt's
// (pendingevents.go), so none of them checkpoints. Such a reader copies
// the pending state and begins its read transaction with no bbolt write
// of those buckets in between (snapshotView: a lock the writers hold
// across their transaction), so what it sees is the store at one
// instant. Close checkpoints and zeroes both files' first headers (in
// their reserved blocks). Neither is needed to keep a write: if the
// checkpoint fails (a full disk refuses the bbolt transaction's pages) the
// records stay in the journal, the next Open replays them, and Close's
// error is a JournalKeptError saying so; the same, with nothing to
// replay, if the zeroing fails.
//
// When 4096 records are pending, a background checkpoint starts: the
// journal swaps files (a new generation at the start of the other file,
// whose records are all checkpointed), and a transaction of its own,
// outside the group commit, writes the records of the file just left
// into bbolt with their last LSN as journal-lsn, skipping those the file
// holds already (a group commit transaction that ran first). Appends go
// on in the other file meanwhile, and the checkpoint's pages and fsyncs
// only slow their fdatasyncs instead of stopping them (before, the
// appends queued behind a checkpoint in the group commit waited for all
// of it): BenchmarkCommitTail, 2000 commits/s over 50k bindings, p99.9
// 14–17 ms and max 20 ms against 26–30 and 65 ms with stop 20's
// checkpoint every 1024 records in the group commit; p99 2.5–4.1 against
// 1.9–3.4 ms (with 1024 records in the background it was 6–8 ms: the
// slowed fdatasyncs came often; 4096 random records dirty less than
// twice the leaf pages 1024 do). An append still waits for a checkpoint
// when a group commit bbolt transaction (a release, an AddEvent, a
// reader's checkpoint) comes meanwhile: that one waits for bbolt's writer
// lock (one writer at a time), and the appends queued behind it wait with
// it. Once it has committed, the leader drops those records from the
// pending ones. The next swap waits until the other file is free again:
// checkpointed by this transaction or by a group commit one.
//
// Open replays: it reads, in each file, the run of whole records from its
// start of one tag whose LSNs follow one another (it ends at the first
// record cut short, damaged, or left from an earlier generation: another
// tag, even where its LSN would follow, as after a power loss that kept a
// later record of a batch and lost an earlier one, whose LSNs the next
// generation hands out again), merges the two runs' records past the
// stored journal-lsn in LSN order up to the first missing LSN, and writes
// them into bbolt in one transaction. Records up to journal-lsn are
// already in the file (a crash between a checkpoint's commit and the
// next append), and are skipped: the release that deleted a journaled
// binding is not undone. Records that start after journal-lsn + 1
// (records lost: a file restored from a backup under a newer journal),
// or an LSN in both files, are refused with ErrCorrupt. An append whose
// write or fdatasync failed burns its LSNs (the next checkpoint stores
// them as applied, so what reached the file never replays) and the
// writes go through bbolt until that checkpoint.
//
// The crash points of the journal are failpoints (journal/after-write,
// journal/after-sync, journal/checkpoint-after-commit) in the appliance's
// crash matrix; TestJournal* crash a copy of the files at the same
// instants, and at a background checkpoint's (before its transaction,
// after it, with appends going on in the other file).
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
// Buckets: "meta" (schema version; journal-lsn, the last LSN of the
// binding journal the file holds), "registrations" (key: the 6-byte MAC),
// "customers" (key: ISP, 0x00, customer ID), "devices-by-customer" (an
// index: ISP, 0x00, customer ID, 0x00, MAC → nil; DevicesOf and an ISP's
// Devices read it instead of every registration), "bindings" (key: access
// port name, 0x00, VLAN big-endian, MAC; schemas before 6 also had a
// "binding-expiry" index, which nothing read), "intents" (key: the big-endian intent ID, from the
// bucket's persistent sequence), "events" (key: the big-endian sequence
// number, from the bucket's persistent sequence, so it keeps increasing
// across restarts; a new file's starts at the clock's microseconds, the
// meta bucket's event-seq-base: eventbase.go), "events-by-isp" (an index: ISP, 0x00, the event's number in its
// ISP's own sequence → the event's sequence number; entries of schema 8
// and older: ISP, 0x00, sequence number → nil; EventsOf reads one ISP's
// events without looking at the others'; events without an ISP, such as
// the onboarding ones, are not indexed), "event-isp-seqs" (per ISP: its
// last number given out and its gaps; eventseq.go), "events-by-mac" (an
// index: the event's sequence number >> 12, the 6-byte MAC, the event's
// ISP and 0x00 (just 0x00 for none), the sequence number's low 12 bits →
// its number in its ISP's own sequence, or nil for an event without an
// ISP; events without a MAC, or whose ISP name is too long for a bbolt
// key (macKeyFits), are not indexed; eventsmac.go),
// "changes" (the change feed; key: the big-endian sequence number) and
// "onboarding" (the onboarding leases; key: the 6-byte MAC). The
// indexes are written in the transactions that write what they index; an
// index entry whose record no longer matches it (left behind when a
// corrupt value was overwritten) is skipped by the readers. Customer IDs,
// ISP names and access port names contain no NUL (the writers refuse
// them), so the 0x00-separated keys are unambiguous. "webhook-cursors"
// (key: ISP → the big-endian Seq its webhook receiver acknowledged last;
// SetWebhookCursor, durable like the other writes, moves it forward only)
// is created by its first write, so it needs no schema version.
//
// Events are trimmed from the front of the log in the transaction that
// appends one: to the newest Options.EventRetention once the log runs
// retention/64 (at most 256) past it, so that most appends rewrite no page
// at its front, and those more than Options.EventMaxAge older than the
// appended event. Trimming looks only at
// the front, so an append costs O(1 + events trimmed). EventBounds tells a
// reader the oldest sequence number still kept, so it can tell it missed
// some. The change feed is trimmed the same way.
//
// A large write (SyncRegistrations of 100k MACs, an ApplyTenant import
// batch) writes each bucket in key order: bbolt splits a node only at
// commit, so keys put in random order into one transaction would each
// copy a node's growing key list (quadratic).
//
// Values are a compact binary encoding whose first byte is a format version
// (currently 6), followed by the fields in a fixed order: strings, byte
// fields and addresses are uvarint-length-prefixed, times are varint seconds
// plus uvarint nanoseconds, durations varint nanoseconds. Older values
// still decode, the fields added since reading as empty: version 1
// (schema 1: bindings and events without the fields version 2 appended),
// version 2 (registrations without Created, events without Actor and
// RequestID), version 4 (bindings without the ACK's boot fields) and
// version 5 (bindings without Since, which reads as zero: not known; no
// migration rewrites them, a renewal carries the zero over). A
// binary older than a value's version finds it corrupt: a store a newer
// ispmux wrote is not for an older one (OPERATIONS.md, "Backup and
// restore"). Decoding checks every length, the version, trailing bytes
// and that the value agrees with its key; a bad value yields a
// *CorruptError (errors.Is ErrCorrupt) that names the bucket and the key,
// never a panic. List methods return every value that decoded together with
// the joined errors of those that did not, so one damaged record does not
// keep the appliance from reloading the others.
//
// # Schema versions
//
// The meta bucket's schema byte is the version of the whole file (12 now;
// see schemaVersion). Open migrates an older file in place, in one
// transaction (all or nothing: schema 1 to 2 re-encodes every value and
// adds the intents bucket; 2 to 3 adds the customers bucket and the change
// feed and builds the two new indexes from the registrations and events
// already stored; 3 to 4 only moves the byte (events may carry a lease
// end); 4 to 5 adds the onboarding bucket; 5 to 6 deletes the
// binding-expiry index; 6 to 7 and 7 to 8 only move the byte, for the
// binding journal and its second file; 8 to 9 adds the event-isp-seqs
// bucket, whose sequences start in the transaction that replays the
// binding journal, past that journal's events: eventseq.go; 9 to 10
// builds the events-by-mac index from the events stored: eventsmac.go;
// 10 to 11 builds it again with the ISP in its keys; 11 to 12 only moves
// the byte, so that the ispmux of schema 11 refuses a file whose index is
// in the middle of its build; that index alone is
// built after the transaction, in transactions of 16 spans of the log
// each, from a marker the migration leaves and a crash resumes from:
// migratemac.go),
// and refuses a newer one with ErrSchema: an older ispmux never writes a
// file it cannot fully read. Open of a current
// file writes nothing (a Backup copy's first Open writes once, below).
// Backup writes a consistent copy of the file while the store is in use
// (`ispmux ctl backup FILE`), marked as a copy: Open of a marked file
// moves the event log's numbering far ahead of the copy's newest event
// (backup.go), so that a restored store never numbers a new event as the
// original numbered another after the backup (webhook ids, API cursors);
// the log's trimming by count does not count the skipped numbers. The
// live store holds the mark while the copy is written, and the file
// STATE.backup-in-progress beside it holds the same (random) mark from
// before the mark is made until after it is removed: an Open that finds
// the two equal is the live store's after a crash in mid-backup, and
// removes the mark without a jump (failpoints backup/after-mark and
// backup/after-copy, TestBackupCrash).
package subscribers
