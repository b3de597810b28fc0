package main

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/ispmux/ispmux/dhcpproxy"
)

// TestDHCPDecisionsDocumented: every name ispmux_dhcp_decisions_total
// exports (dhcpproxy.CounterNames, also the `dhcp:` line of `ispmux ctl
// status`) has its row in docs/OPERATIONS.md's "DHCP decisions" tables,
// once, and those tables name no other. An operator seeing a decision
// must find what it counts; a row left behind by a renamed counter
// would send them looking for one that never moves.
func TestDHCPDecisionsDocumented(t *testing.T) {
	raw, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	documented, err := decisionRows(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, n := range documented {
		seen[n]++
	}
	known := map[string]bool{}
	for _, n := range dhcpproxy.CounterNames() {
		known[n] = true
		if seen[n] == 0 {
			t.Errorf("docs/OPERATIONS.md, \"DHCP decisions\": no row for the decision %s", n)
		}
	}
	for _, n := range documented {
		switch {
		case !known[n]:
			t.Errorf("docs/OPERATIONS.md, \"DHCP decisions\": %s is not a decision (dhcpproxy.CounterNames)", n)
		case seen[n] > 1:
			t.Errorf("docs/OPERATIONS.md, \"DHCP decisions\": %s has %d rows", n, seen[n])
			seen[n] = 1 // said once
		}
	}
}

// decisionRows returns the backquoted names in the first column of the
// table rows of doc's "## DHCP decisions" section (up to the next "## "
// heading), in order; its tables' header and separator rows name none.
func decisionRows(doc string) ([]string, error) {
	const heading = "\n## DHCP decisions\n"
	i := strings.Index(doc, heading)
	if i < 0 {
		return nil, errors.New("docs/OPERATIONS.md: no \"## DHCP decisions\" section")
	}
	sec := doc[i+len(heading):]
	if j := strings.Index(sec, "\n## "); j >= 0 {
		sec = sec[:j]
	}
	name := regexp.MustCompile("`([a-z0-9_]+)`")
	var out []string
	for _, l := range strings.Split(sec, "\n") {
		if !strings.HasPrefix(l, "|") {
			continue
		}
		cells := strings.Split(l, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			out = append(out, m[1])
		}
	}
	if len(out) == 0 {
		return nil, errors.New("docs/OPERATIONS.md, \"DHCP decisions\": no table rows")
	}
	return out, nil
}
