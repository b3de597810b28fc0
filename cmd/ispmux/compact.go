package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/subscribers"
)

// cmdCompact is ispmux compact: the state_dir's store rewritten without
// its free pages (subscribers.Compact), ispmux stopped.
func cmdCompact(args []string, stdout io.Writer) error {
	path, err := configCommand("compact", "Rewrite the subscriber store (state_dir/"+appliance.StoreName+") without its free pages, with ispmux\n"+
		"stopped: the file never shrinks by itself, so a store that once held many more customers,\n"+
		"devices or bindings than now (a purge, a mass expiry) keeps its size until compacted. Refused\n"+
		"while ispmux runs with this state_dir. Take a backup first (ctl backup, while it runs).", args, stdout)
	if err != nil {
		return err
	}
	cfg, err := configs.Load(path)
	var dir string
	if err == nil {
		dir = cfg.Appliance.StateDir
	} else if dir, err = configs.StateDirOf(path); err != nil {
		return err
	}
	store := filepath.Join(dir, appliance.StoreName)
	res, err := subscribers.Compact(store, subscribers.Options{})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "compacted %s: %s → %s\n", store, mib(res.Before), mib(res.After))
	return nil
}

// mib is n bytes in MiB, one decimal.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
