package appliance

import (
	"errors"
	"log/slog"
	"syscall"

	"github.com/ispmux/ispmux/subscribers"
)

// What a stop does after the workers end: the store closed (its last
// checkpoint), the ports closed, the counters logged.

// closeStore closes the store at the end of Run. A Close that kept the
// binding journal (subscribers.JournalKeptError: its checkpoint failed,
// as a full disk makes it) lost nothing, every acknowledged binding being
// in the journal or the store file: that is a warning saying what the
// next start does, not Run's error, so a clean stop exits 0 (a field
// trial's full disk made it exit 1 though the next start restored
// everything). Any other error is Run's.
func closeStore(st *subscribers.Store, log *slog.Logger) error {
	err := st.Close()
	var kept *subscribers.JournalKeptError
	if !errors.As(err, &kept) {
		return err
	}
	if !kept.Replay {
		log.Warn("store closed without emptying the binding journal: nothing is lost, the next start skips its records", "err", err)
		return nil
	}
	next := "the next start replays the binding journal"
	if errors.Is(err, syscall.ENOSPC) {
		// Or it fails as this checkpoint did, having written nothing.
		next += ", once the state directory's file system has room for it"
	}
	log.Warn("store closed without its last checkpoint: nothing is lost, "+next+"; keep its files", "records", kept.Pending, "err", err)
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
