package datapath

import "sync/atomic"

// queueCounters are a queue's counters. The owning worker adds to them once
// per call (per batch, never per frame); anyone may read them.
type queueCounters struct {
	rxFrames, rxBytes atomic.Uint64
	txFrames, txBytes atomic.Uint64
	txFull, noFrame   atomic.Uint64
	errors            atomic.Uint64
	down              atomic.Bool
}

func (c *queueCounters) snapshot() QueueStats {
	return QueueStats{
		RxFrames: c.rxFrames.Load(), RxBytes: c.rxBytes.Load(),
		TxFrames: c.txFrames.Load(), TxBytes: c.txBytes.Load(),
		TxFull: c.txFull.Load(), NoFrame: c.noFrame.Load(),
		Errors: c.errors.Load(), Down: c.down.Load(),
	}
}

// Add accumulates o into s (Down is or-ed).
func (s *QueueStats) Add(o QueueStats) {
	s.RxFrames += o.RxFrames
	s.RxBytes += o.RxBytes
	s.TxFrames += o.TxFrames
	s.TxBytes += o.TxBytes
	s.TxFull += o.TxFull
	s.NoFrame += o.NoFrame
	s.Errors += o.Errors
	s.Down = s.Down || o.Down
}
