package demo

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFinishDir: the demo's directory is removed at the end unless kept on
// request or because the demo failed, and the demo says which.
func TestFinishDir(t *testing.T) {
	for _, tt := range []struct {
		name         string
		keep, failed bool
		gone         bool
		want         string
	}{
		{"normal end", false, false, true, "demo: removed DIR (ispmux's config, log and state; --keep keeps them)"},
		{"--keep", true, false, false, "demo: kept DIR (ispmux.toml, ispmux.log, state/)"},
		{"failure", false, true, false, "demo: kept DIR (ispmux.toml, ispmux.log, state/) to see what went wrong"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ispmux-demo-1")
			if err := os.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"ispmux.toml", "ispmux.log", "state/ispmux.db"} {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			finishDir(&out, dir, tt.keep, tt.failed)
			_, err := os.Stat(dir)
			if gone := os.IsNotExist(err); gone != tt.gone {
				t.Errorf("directory gone: %v, want %v (%v)", gone, tt.gone, err)
			}
			if want := strings.ReplaceAll(tt.want, "DIR", dir); !strings.Contains(out.String(), want) {
				t.Errorf("said %q, want %q", out.String(), want)
			}
		})
	}
}
