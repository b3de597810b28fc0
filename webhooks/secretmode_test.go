package webhooks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A webhook secret every user of the box may read lets any of them sign
// messages the ISP's receiver takes for the box's (and one they may
// write, choose the key): refused, naming the file and its mode.
func TestSecretFileMode(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		mode    os.FileMode
		refused bool
	}{{0o600, false}, {0o640, false}, {0o644, true}, {0o602, true}} {
		p := filepath.Join(dir, "s-"+c.mode.String())
		if err := os.WriteFile(p, []byte(specSecret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, c.mode); err != nil {
			t.Fatal(err)
		}
		_, err := ReadSecret(p)
		if (err != nil) != c.refused {
			t.Errorf("mode %04o: %v, want refused %v", c.mode, err, c.refused)
		}
		if err != nil && (!strings.Contains(err.Error(), p) || strings.Contains(err.Error(), specSecret)) {
			t.Errorf("mode %04o: %v: want the file named, the secret not quoted", c.mode, err)
		}
	}
}
