package lab

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// Namespace names. A lab's namespaces are named ID-ROLE, ROLE one of a
// fixed set: these functions are the only source of the roles, used by
// plan (creation) and by Down and Sweep (teardown), so that a lab's
// teardown removes exactly its own namespaces, never another lab's
// (ID-b-s1 is lab ID-b's), nor another namespace that merely starts with
// "ID-" (ID-x, ID-s201).
//
// A ROLE has no dash, so a namespace belongs to one lab at most: the ID is
// what precedes its last dash (labOf). An ID may contain dashes; lab "a"
// and lab "a-b" are distinct labs, each removing only its own namespaces.

const (
	roleApp = "app" // the appliance (ispmux runs here)
	roleAcc = "acc" // the access bridge
	roleGen = "gen" // the traffic generator (Options.Generator)
)

// ispLetter is the letter of the i-th ISP (0: a, 1: b, ...).
func ispLetter(i int) string { return string(rune('a' + i)) }

// roleISP is the role of the i-th ISP's router (ispa, ispb, ...).
func roleISP(i int) string { return "isp" + ispLetter(i) }

// roleHost is the role of the host behind the i-th ISP's router (ha, hb, ...).
func roleHost(i int) string { return "h" + ispLetter(i) }

// roleSub is the role of subscriber n, counted from 1 (s1, s2, ...).
func roleSub(n int) string { return "s" + strconv.Itoa(n) }

// nsName is the name of lab id's namespace for role.
func nsName(id, role string) string { return id + "-" + role }

// roles returns every role a lab can have: app, acc, gen, ispa…, ha…
// (as many as there are ISP names) and s1…s200 (maxSubscribers).
func roles() map[string]bool {
	rolesOnce.Do(func() {
		rolesSet = map[string]bool{roleApp: true, roleAcc: true, roleGen: true}
		for i := range ispNames {
			rolesSet[roleISP(i)], rolesSet[roleHost(i)] = true, true
		}
		for n := 1; n <= maxSubscribers; n++ {
			rolesSet[roleSub(n)] = true
		}
	})
	return rolesSet
}

var (
	rolesOnce sync.Once
	rolesSet  map[string]bool
)

// isLabNamespace reports whether ns is one of lab id's namespaces: id, a
// dash and one of the roles, exactly.
func isLabNamespace(id, ns string) bool {
	role, ok := strings.CutPrefix(ns, id+"-")
	return ok && roles()[role]
}

// labOf returns the ID of the lab namespace ns belongs to (what precedes
// its last dash, when what follows is a role); false when ns is no lab's.
func labOf(ns string) (id string, ok bool) {
	i := strings.LastIndexByte(ns, '-')
	if i <= 0 || !roles()[ns[i+1:]] {
		return "", false
	}
	return ns[:i], true
}

// checkID reports whether id can name a lab: not empty, at most 40 bytes,
// and nothing a path or a command line would take apart (no slash, no
// white space): the ID names the state directory and the owner lock file
// too.
func checkID(id string) error {
	if id == "" || len(id) > 40 || id == "." || id == ".." || strings.ContainsAny(id, "/ \t\n\r\x00") {
		return fmt.Errorf("lab: bad id %q", id)
	}
	return nil
}
