package lab

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Tearing labs down: Down removes one lab, Sweep the labs that runs killed
// before their cleanup left behind.

// Down stops the processes in every namespace named ID-* (Kea, DHCP
// clients and ispmux included), deletes those namespaces and removes the
// lab's state directory. The processes get SIGTERM first (ispmux detaches
// its XDP programs on it) and SIGKILL when they are still there after
// downGrace. It is idempotent and succeeds when nothing exists. This
// process's ownership of the lab, if any, ends with it.
func Down(ctx context.Context, id string) error {
	if id == "" {
		id = DefaultID
	}
	defer disown(id)
	return down(ctx, id)
}

// down is Down without giving up ownership (Up clears leftovers of its own
// ID this way, after taking ownership).
func down(ctx context.Context, id string) error {
	out, err := run(ctx, "ip", "netns", "list")
	if err != nil {
		return err
	}
	var nss []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], id+"-") {
			nss = append(nss, f[0])
		}
	}
	termNS(ctx, nss, downGrace)
	var errs []error
	for _, ns := range nss {
		if err := killNS(ctx, ns); err != nil {
			errs = append(errs, err)
		}
		if _, err := run(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeStateDir(id); err != nil {
		errs = append(errs, err)
	}
	if err := removeResolvers(id); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Sweep tears down (Down) every lab whose ID matches pattern, a regular
// expression matched against the whole ID. Test packages call it once at
// start with the shape of their own random IDs, so labs left behind by a
// run that was killed before its cleanup do not pile up on a shared machine.
// A lab whose owner (the process that brought it up) is alive is left
// alone: two runs at once do not tear down each other's labs. It returns
// the IDs it removed.
func Sweep(ctx context.Context, pattern string) (ids []string, err error) {
	re, err := regexp.Compile("^(?:" + pattern + ")$")
	if err != nil {
		return nil, fmt.Errorf("lab sweep: %w", err)
	}
	out, err := run(ctx, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		id, _, ok := strings.Cut(f[0], "-")
		if ok && re.MatchString(id) && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	var errs []error
	swept := ids[:0]
	for _, id := range ids {
		if ownedElsewhere(id) {
			continue // another run's lab, in use
		}
		swept = append(swept, id)
		errs = append(errs, Down(ctx, id))
	}
	return swept, errors.Join(errs...)
}

// downGrace is how long Down lets the lab's processes exit after SIGTERM
// before it kills them.
var downGrace = 5 * time.Second
