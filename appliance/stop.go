package appliance

import (
	"errors"
	"fmt"
	"log/slog"
	"syscall"

	"github.com/ispmux/ispmux/subscribers"
)

// What a stop does after the workers end: the store closed (its last
// checkpoint), the ports closed, the counters logged.

// closeStore closes the store at the end of Run (closeErr says what its
// error makes of the stop).
func closeStore(st *subscribers.Store, log *slog.Logger) error {
	return closeErr(st.Close(), log)
}

// closeErr is what the store's Close error err makes of the stop. A Close
// that kept the binding journal (subscribers.JournalKeptError) lost
// nothing, every acknowledged binding being in the journal or the store
// file. When only the emptying failed, or the last checkpoint failed for
// want of room (ENOSPC, EDQUOT: a full disk or quota, which the operator
// frees), that is a warning saying what the next start does, not Run's
// error, so a clean stop exits 0 (a field trial's full disk made it exit 1
// though the next start restored everything). A checkpoint that failed
// for another cause (EIO: a failing disk, or a fault of ours) is Run's
// error, so that ispmux exits 1 and the supervisor sees it; its message
// still says that nothing is lost. Any other error is Run's.
func closeErr(err error, log *slog.Logger) error {
	var kept *subscribers.JournalKeptError
	if !errors.As(err, &kept) {
		return err
	}
	if !kept.Replay {
		log.Warn("store closed without emptying the binding journal: nothing is lost, the next start skips its records", "err", err)
		return nil
	}
	if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("store closed without its last checkpoint: %w", err)
	}
	// The next start replays it, or fails as this checkpoint did, having
	// written nothing.
	log.Warn("store closed without its last checkpoint: nothing is lost, the next start replays the binding journal, "+
		"once the state directory's file system has room for it; keep its files", "records", kept.Pending, "err", err)
	return nil
}

func (a *Appliance) closePorts() error {
	var errs []error
	for _, p := range a.ports {
		if p == nil {
			continue // not opened: Start failed before it
		}
		if err := p.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	a.ports = nil
	if a.fast != nil {
		errs = append(errs, a.fast.Close())
		a.fast = nil
	}
	return errors.Join(errs...)
}

func (a *Appliance) logCounters() {
	st := a.status(0) // the ports' counters: no walk of the bindings
	for _, p := range st.Ports {
		a.log.Info("port counters", "port", p.Name, "rx", p.RxFrames, "tx", p.TxFrames,
			"up", p.FwdUp, "down", p.FwdDown, "arp_replies", p.ARPReplies, "punts", p.Punts, "drops", p.Drops)
	}
}
