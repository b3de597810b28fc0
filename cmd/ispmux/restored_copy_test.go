package main

import (
	"context"
	"strings"
	"testing"

	"github.com/ispmux/ispmux/tenants"
)

// gapLog is a tenants.Service whose event log is that of a store restored
// from a backup copy: seq 1..pre, then (the copy's jump) post events from
// pre+jump+1. Every event is the MAC 02:00:00:00:00:01's.
type gapLog struct {
	tenants.Service
	pre, jump, post uint64
}

func (f *gapLog) HasISP(name string) bool { return name == "alpha" || name == "beta" }

func (f *gapLog) seqs() []uint64 {
	var s []uint64
	for i := uint64(1); i <= f.pre; i++ {
		s = append(s, i)
	}
	for i := uint64(1); i <= f.post; i++ {
		s = append(s, f.pre+f.jump+i)
	}
	return s
}

func (f *gapLog) Events(_ context.Context, isp string, after uint64, limit int) (tenants.EventPage, error) {
	all := f.seqs()
	p := tenants.EventPage{Events: []tenants.Event{}, Oldest: all[0], Newest: all[len(all)-1]}
	for _, s := range all {
		if s > after && len(p.Events) < limit {
			p.Events = append(p.Events, tenants.Event{Seq: s, Kind: "bound", MAC: "02:00:00:00:00:01", ISP: "beta"})
		}
	}
	return p, nil
}

func (f *gapLog) Device(context.Context, string, string) (tenants.Device, error) {
	return tenants.Device{}, tenants.ErrNotFound
}

func (f *gapLog) BindingsOf(context.Context, string, string) ([]tenants.Binding, error) {
	return nil, nil
}

// `ctl subscriber MAC` shows the MAC's events among the newest 1000 of
// the log. Right after any restore (a jump of at least 2^32) the window
// of 1000 numbers holds only the events since: the MAC's events in the
// copy, the newest of the log, are not shown.
func TestCtlSubscriberAcrossRestoreJump(t *testing.T) {
	f := &gapLog{pre: 10, jump: 1<<32 + 1_000_000, post: 1}
	r := newRig(t, f)
	out, errOut, err := runCmd(t, "", r.api("operator", "subscriber", "02:00:00:00:00:01", "--json")...)
	if err != nil || strings.Count(out, `"seq"`) != 11 {
		t.Errorf("ctl subscriber after a restore: err %v, %d events, want all 11 of the log's (10 of the copy's, 1 new)\n%s%s", err, strings.Count(out, `"seq"`), out, errOut)
	}
}
