package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
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
	uid, err := asStateDirOwner(dir)
	if err != nil {
		return err
	}
	store := filepath.Join(dir, appliance.StoreName)
	// Open's long work (an upgrade's index build, or one an earlier
	// start left unfinished) says what it does, as at ispmux's start.
	log := slog.New(slog.NewTextHandler(stdout, nil))
	res, err := subscribers.Compact(store, subscribers.Options{Logger: log})
	if err != nil && uid >= 0 {
		// Root's compact works as the state_dir's owner: say so, or a
		// "permission denied" reads as root's (a review).
		return fmt.Errorf("%w (compact works as uid %d, the owner of %s: the store's files and the path to them must be that user's to use)", err, uid, dir)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "compacted %s: %s → %s\n", store, humanSize(res.Before), humanSize(res.After))
	return nil
}

// humanSize is n bytes in the largest binary unit it reaches (B, KiB,
// MiB, GiB), one decimal past bytes: a small store compacted reads
// "48.0 KiB", where MiB alone printed "0.0 MiB" (a review).
func humanSize(n int64) string {
	const unit = 1 << 10
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	v, u := float64(n)/unit, "KiB"
	for _, next := range []string{"MiB", "GiB", "TiB"} {
		// 1023.96 KiB rounds to "1024.0 KiB": move up at what prints
		// as 1024, not only past it.
		if v > -unit+0.05 && v < unit-0.05 {
			break
		}
		v, u = v/unit, next
	}
	return fmt.Sprintf("%.1f %s", v, u)
}

// asStateDirOwner makes this process, when root, the user owning dir (the
// state_dir), if that is not root: the service's user, whose directory it
// is (the unit's StateDirectory=ispmux), with that user's groups (its
// primary group and the others the system gives it, as systemd's User=
// does; the directory's group alone where the user is not known). compact
// then does its work as ispmux would, its files are that user's with no
// chown, and nothing that user can put in the directory (a symbolic or
// hard link to a file of root's, a FIFO, a file swapped in between a check
// and its use) reaches further than that user does. Root working in a
// directory another user writes was a security review's finding: a link
// there had root truncate a file of its choice and hand it over, and
// checks by name race. A state_dir of root's that its group or others may
// write is refused for the same reason. Once done, for the whole process:
// the command does nothing else after. It returns the uid it works as
// (-1: unchanged).
func asStateDirOwner(dir string) (int, error) {
	if os.Geteuid() != 0 {
		return -1, nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return -1, fmt.Errorf("compact: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, nil
	}
	if st.Uid == 0 {
		if fi.Mode().Perm()&0o022 != 0 {
			return -1, fmt.Errorf("compact: state_dir %s is root's and writable by its group or others (%v): "+
				"give it to the service's user (install -d -o ispmux -g ispmux -m 0750 %s), or run compact as the user who writes it",
				dir, fi.Mode().Perm(), dir)
		}
		return -1, nil
	}
	uid, gid, groups := int(st.Uid), int(st.Gid), []int{}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		if g, err := strconv.Atoi(u.Gid); err == nil {
			gid = g
		}
		if ids, err := u.GroupIds(); err == nil {
			for _, id := range ids {
				if g, err := strconv.Atoi(id); err == nil {
					groups = append(groups, g)
				}
			}
		}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return -1, fmt.Errorf("compact: as uid %d, the owner of %s: setgroups: %w", uid, dir, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return -1, fmt.Errorf("compact: as uid %d, the owner of %s: setgid %d: %w", uid, dir, gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return -1, fmt.Errorf("compact: as uid %d, the owner of %s: setuid: %w", uid, dir, err)
	}
	return uid, nil
}
