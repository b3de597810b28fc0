package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

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
		"while ispmux runs with this state_dir. Take a backup first (ctl backup, while it runs). Run as root on\n"+
		"a state_dir another user owns (ispmux's), it works as that user once the file is read.", args, stdout)
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
	if err := asStateDirOwner(dir); err != nil {
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

// asStateDirOwner makes this process, when root, the user owning dir (the
// state_dir), if that is not root: the service's user, whose directory it
// is (the unit's StateDirectory=ispmux). compact then does its work as
// ispmux would, its files are that user's with no chown, and nothing that
// user can put in the directory (a symbolic or hard link to a file of
// root's, a FIFO, a file swapped in between a check and its use) reaches
// further than that user does. Root working in a directory another user
// writes was a security review's finding: a link there had root truncate a
// file of its choice and hand it over, and checks by name race. Its groups
// are the directory's group alone. Once done, for the whole process: the
// command does nothing else after.
func asStateDirOwner(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	if err := syscall.Setgroups([]int{}); err != nil {
		return fmt.Errorf("compact: as %s's owner (uid %d): setgroups: %w", dir, st.Uid, err)
	}
	if err := syscall.Setgid(int(st.Gid)); err != nil {
		return fmt.Errorf("compact: as %s's owner (uid %d): setgid %d: %w", dir, st.Uid, st.Gid, err)
	}
	if err := syscall.Setuid(int(st.Uid)); err != nil {
		return fmt.Errorf("compact: as %s's owner: setuid %d: %w", dir, st.Uid, err)
	}
	return nil
}
