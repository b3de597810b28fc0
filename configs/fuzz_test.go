package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics, and every error line names the file.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("*.toml")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		base,
		base + isp1 + "foo = 1\n",
		base + "[datapath]\nqueues = \"two\"\n",
		head + "isp = [{name = \"a\", x = [1, {y = 2}]}]\n",
		"version = 1\n[[access]]\n[[isp]]\n[[subscriber]]\nip = \"\"\"\n\"\"\"\n",
		"version = 2",
		"\"\\u00e9\" = 1\n'a.b' = 2\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.toml", data)
		if err == nil {
			if cfg == nil {
				t.Fatal("nil config without error")
			}
			_ = cfg.Summary()
			return
		}
		if cfg != nil {
			t.Fatal("config with error")
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error %T is not a non-empty Errors: %v", err, err)
		}
		for _, l := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(l, "fuzz.toml:") {
				t.Fatalf("error line without the file prefix: %q", l)
			}
		}
	})
}
