package dhcpproxy

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Every counter name the proxy counts by a literal is in CounterNames
// (package metrics exports those from the start, 0 included).
func TestCounterNamesComplete(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	known := CounterNames()
	re := regexp.MustCompile(`p\.count\("([a-z0-9_]+)"\)`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			if m[1] != "events_suppressed" && !slices.Contains(known, m[1]) {
				t.Errorf("%s: counter %q is not in CounterNames", f, m[1])
			}
		}
	}
}
