package configs

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// tomlKeys lists every key path the schema accepts ("isp.webhook_url",
// "access.onboarding.pool"), from the struct tags.
func tomlKeys(t reflect.Type, prefix string, out map[string]bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		path := prefix + tag
		ft := f.Type
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() == t.PkgPath() {
			tomlKeys(ft, path+".", out)
			continue
		}
		out[path] = true
	}
}

// TestExampleShowsEveryKey: configs/example.toml, installed by the package
// as /etc/ispmux/ispmux.toml, is "every key, with its default or an
// example value" (its own first line; README.md "every key, commented";
// docs/DEPLOY.md "the example: every key, commented"; ispmux(8): "every
// key: /usr/share/doc/ispmux/examples and the installed file's comments").
// Keys shown commented out count.
func TestExampleShowsEveryKey(t *testing.T) {
	raw, err := os.ReadFile("example.toml")
	if err != nil {
		t.Fatal(err)
	}
	commented := regexp.MustCompile(`^#\s*(\[|[a-z_]+\s*=)`)
	var lines []string
	for _, l := range strings.Split(string(raw), "\n") {
		if commented.MatchString(l) {
			l = strings.TrimLeft(strings.TrimPrefix(l, "#"), " ")
		}
		lines = append(lines, l)
	}
	var c Config
	md, err := toml.Decode(strings.Join(lines, "\n"), &c)
	if err != nil {
		t.Fatalf("example.toml with its commented keys uncommented: %v", err)
	}
	shown := map[string]bool{}
	for _, k := range md.Keys() {
		shown[k.String()] = true
	}
	want := map[string]bool{}
	tomlKeys(reflect.TypeOf(Config{}), "", want)
	var missing []string
	for k := range want {
		if !shown[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("example.toml (every key, it says) does not show %d keys the configuration accepts: %s", len(missing), strings.Join(missing, ", "))
	}
}
