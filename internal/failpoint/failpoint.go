// Package failpoint names the crash points of ispmux's commit and relay
// sequences. In the production binary Hit compiles to nothing; a binary
// built with the build tag "failpoints" (the crash tests build one) kills
// itself with SIGKILL at the point named by the environment variable
// ISPMUX_FAILPOINT, so a test can crash ispmux at exactly that instant and
// check what survives the restart.
//
// ISPMUX_FAILPOINT is "NAME" (crash at the first hit) or "NAME@N" (crash at
// the N-th hit, counting from 1). Before dying the process writes one line
// "failpoint NAME: SIGKILL" to standard error.
//
// Every transition that changes a binding or tells an ISP something has
// its points (docs/ARCHITECTURE.md, "Crash consistency"); a new transition
// adds its own, and the crash matrix test covers them.
package failpoint

// Points lists every failpoint name, for the crash tests and for Enabled's
// check of ISPMUX_FAILPOINT.
var Points = []string{
	// A DISCOVER/REQUEST/INFORM is about to be relayed to the ISP.
	RelayBeforeSend,
	// The ISP's ACK arrived; nothing stored yet.
	BindBeforeCommit,
	// The binding (and its event) is durable; not installed, no ACK sent.
	BindAfterCommit,
	// The ACK was sent to the subscriber.
	BindAfterAck,
	// A RELEASE/DECLINE/revocation: the binding is gone and the intent
	// durable; nothing sent to the ISP yet. Also the DECLINE of an
	// address the ISP ACKed in conflict (never bound): the intent is
	// durable; no DECLINE sent, the subscriber not yet NAKed. And the
	// RELEASE of a lease in an ACK ispmux refused or a rapid-commit ACK
	// the client does not use (never bound): the intent is durable, no
	// RELEASE sent.
	EndAfterIntent,
	// The message was sent to the ISP; the intent is not yet completed.
	EndAfterSend,
	// A commit of the tick's completions is durable: up to
	// dhcpproxy's completeBatch intents whose messages left a while ago
	// deleted, those of the round's later commits not yet (the N-th hit
	// is after the round's N-th commit).
	EndAfterComplete,
	// Leases expired: a batch of their ends (expireEach) not committed
	// yet, the batches before it committed.
	ExpireBeforeCommit,
	// The ISP's NAK arrived; the binding (if any) not yet removed.
	NakBeforeCommit,
	// The NAK's removal is durable; the NAK is not yet delivered.
	NakAfterCommit,
	// At start, a pending intent was replayed to the ISP; not completed.
	ReplayAfterSend,
	// At start, one batch of the bindings found lapsed (Store.EndBindings)
	// has ended, durable with its expired events; the later batches not
	// yet.
	RestartEndAfterBatch,
	// A tenant change (claim, attach, move, detach, block, suspend,
	// delete, one batch of a purge or of a device import) is durable; not
	// yet published to the registry, and the bindings it takes service
	// from not yet revoked.
	TenantAfterCommit,
	// A bulk device import is about to plan its next batch: the batches
	// before it are durable, published and their bindings revalidated
	// (their lines' results handed to the API, which writes them out as
	// its buffer fills or the input ends); nothing of this one written.
	TenantImportBeforeBatch,
	// An onboarding lease (granted or renewed by ispmux itself) is
	// durable; not installed in the garden VRF, no ACK sent.
	OnboardAfterCommit,
	// The onboarding lease's ACK was sent to the subscriber.
	OnboardAfterAck,
	// An onboarding lease's end (release, decline, expiry, handover) is
	// durable; the lease is still installed.
	OnboardEndAfterCommit,
	// A renewal inside the ISP's lease, before its T1, was answered by
	// ispmux from the stored binding (nothing stored, nothing relayed).
	RenewLocalAfterAck,
	// A renewal past the ISP's T1 is about to be relayed to the ISP.
	RenewRelayBeforeSend,
	// The ISP was silent to a relayed renewal: ispmux answered it from
	// the stored binding (nothing stored).
	RenewSilenceAfterAck,
	// A REQUEST of a device whose registration moved to another ISP is to
	// be NAKed: its old binding not yet ended, no NAK sent.
	MoveNakBeforeEnd,
	// The moved device's old binding has ended (intent durable, RELEASE
	// queued) and the NAK was sent.
	MoveAfterNak,
	// A moved device did not ask within client_lease_max: its old binding
	// is about to end; nothing changed yet.
	MoveCutBeforeEnd,
	// The store's binding journal: records written, not yet fdatasynced.
	JournalAfterWrite,
	// The journal's records are durable; their writers not yet released.
	JournalAfterSync,
	// A checkpoint (a bbolt transaction holding the journaled records)
	// is durable; the journal not yet reset.
	CheckpointAfterCommit,
	// A background checkpoint (its own bbolt transaction, beside the
	// appends going on in the journal's other file) is about to begin.
	BgCheckpointBeforeCommit,
	// The background checkpoint is durable; its records are still
	// pending (the leader has not dropped them) and its file not reused.
	BgCheckpointAfterCommit,
	// A backup (ctl backup): the live store's mark for the copy is
	// durable; nothing of the copy written yet.
	BackupAfterMark,
	// The whole copy was written; the mark not yet removed from the live
	// store.
	BackupAfterCopy,
	// ispmux compact: the copy (PATH.compact, the store's owner and mode)
	// is made, nothing copied into it yet; the store as it was.
	CompactBeforeCopy,
	// The copy is complete and synced; not yet renamed over the store.
	CompactAfterCopy,
	// The copy was renamed over the store; the directory not yet synced.
	CompactAfterRename,
	// The first start after an upgrade from schema 10 or older: one
	// transaction of the events-by-mac index's build is durable, with
	// its marker; the next ones not yet (package subscribers,
	// migratemac.go).
	MigrateAfterChunk,
}

// The failpoint names.
const (
	RelayBeforeSend      = "relay/before-send"
	BindBeforeCommit     = "bind/before-commit"
	BindAfterCommit      = "bind/after-commit"
	BindAfterAck         = "bind/after-ack"
	EndAfterIntent       = "end/after-intent"
	EndAfterSend         = "end/after-send"
	EndAfterComplete     = "end/after-complete"
	ExpireBeforeCommit   = "expire/before-commit"
	NakBeforeCommit      = "nak/before-commit"
	NakAfterCommit       = "nak/after-commit"
	ReplayAfterSend      = "replay/after-send"
	RestartEndAfterBatch = "restart/end-after-batch"
	TenantAfterCommit    = "tenant/after-commit"

	TenantImportBeforeBatch = "tenant/import-before-batch"

	OnboardAfterCommit    = "onboard/after-commit"
	OnboardAfterAck       = "onboard/after-ack"
	OnboardEndAfterCommit = "onboard/end-after-commit"

	RenewLocalAfterAck   = "renew/local-after-ack"
	RenewRelayBeforeSend = "renew/relay-before-send"
	RenewSilenceAfterAck = "renew/silence-after-ack"
	MoveNakBeforeEnd     = "move/nak-before-end"
	MoveAfterNak         = "move/after-nak"
	MoveCutBeforeEnd     = "move/cut-before-end"

	JournalAfterWrite     = "journal/after-write"
	JournalAfterSync      = "journal/after-sync"
	CheckpointAfterCommit = "journal/checkpoint-after-commit"

	BgCheckpointBeforeCommit = "journal/bg-checkpoint-before-commit"
	BgCheckpointAfterCommit  = "journal/bg-checkpoint-after-commit"

	BackupAfterMark = "backup/after-mark"
	BackupAfterCopy = "backup/after-copy"

	CompactBeforeCopy  = "compact/before-copy"
	CompactAfterCopy   = "compact/after-copy"
	CompactAfterRename = "compact/after-rename"

	MigrateAfterChunk = "migrate/after-chunk"
)
