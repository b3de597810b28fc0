package metrics

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// docs/OPERATIONS.md describes every exported metric and names no other.
func TestOperationsDoc(t *testing.T) {
	raw, err := os.ReadFile("../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	exported := map[string]bool{}
	for _, n := range Names() {
		exported[n] = true
		if !strings.Contains(doc, "`"+n) {
			t.Errorf("docs/OPERATIONS.md does not describe %s", n)
		}
	}
	for _, m := range regexp.MustCompile(`\bispmux_[a-z0-9_]+`).FindAllString(doc, -1) {
		base := m
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, suf); ok && exported[b] {
				base = b
			}
		}
		if !exported[base] && m != "ispmux_" {
			t.Errorf("docs/OPERATIONS.md names %s, which is not exported", m)
		}
	}
}
