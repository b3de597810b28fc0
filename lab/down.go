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

// Down stops the processes in the lab's namespaces (Kea, DHCP clients and
// ispmux included), deletes those namespaces with the veths in them,
// removes the XDP interface lock files left for them (see
// removeXDPLocks), the lab's state directory and its resolver files. The
// lab's namespaces are exactly ID-ROLE for the roles a lab makes (names.go:
// ID-app, ID-acc, ID-ispa, ID-ha, ID-s1, ...): never another lab's (ID-b-s1
// is lab ID-b's) nor another namespace starting with "ID-" (ID-x). The
// processes get SIGTERM first (ispmux detaches its XDP programs on it) and
// SIGKILL when they are still there after downGrace. It is idempotent and
// succeeds when nothing exists. This process's ownership of the lab, if
// any, ends with it.
func Down(ctx context.Context, id string) error {
	if id == "" {
		id = DefaultID
	}
	if err := checkID(id); err != nil {
		return err
	}
	defer disown(id)
	return down(ctx, id)
}

// down is Down without giving up ownership (Up clears leftovers of its own
// ID this way, after taking ownership).
func down(ctx context.Context, id string) error {
	nss, err := ownNamespaces(ctx, id)
	if err != nil {
		return err
	}
	termNS(ctx, nss, downGrace)
	var errs []error
	for _, ns := range nss {
		if err := killNS(ctx, ns); err != nil {
			errs = append(errs, err)
		} else if err := removeXDPLocks(ns); err != nil {
			// Only once nothing is left in ns that could hold one.
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

// ownNamespaces lists the existing namespaces of lab id (isLabNamespace).
func ownNamespaces(ctx context.Context, id string) ([]string, error) {
	out, err := run(ctx, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	return filterLab(id, out), nil
}

// filterLab returns the names of lab id's namespaces in the output of
// `ip netns list` (a name and, optionally, "(id: N)" a line).
func filterLab(id, netnsList string) []string {
	var nss []string
	for _, line := range strings.Split(netnsList, "\n") {
		if f := strings.Fields(line); len(f) > 0 && isLabNamespace(id, f[0]) {
			nss = append(nss, f[0])
		}
	}
	return nss
}

// Sweep tears down (Down) every lab whose ID matches pattern, a regular
// expression matched against the whole ID (a namespace's lab ID is what
// precedes its last dash, when what follows is a lab role: labOf; other
// namespaces are no lab's). Test packages call it once at start with the
// shape of their own random IDs, so labs left behind by a run that was
// killed before its cleanup do not pile up on a shared machine.
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
	for _, id := range labIDs(out) {
		if re.MatchString(id) {
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

// labIDs returns the IDs of the labs whose namespaces are in the output of
// `ip netns list`, each once, in order of appearance.
func labIDs(netnsList string) []string {
	var ids []string
	seen := map[string]bool{}
	for _, line := range strings.Split(netnsList, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if id, ok := labOf(f[0]); ok && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}

// downGrace is how long Down lets the lab's processes exit after SIGTERM
// before it kills them.
var downGrace = 5 * time.Second
