package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A token file every user of the box may write lets any of them put the
// hash of a token of their own in it (the operator's file: the operator's
// rights at the next reload), and one holding the token itself that
// every user may read hands it to them: both are refused, naming the
// file and the mode. A sha256: line may be read by anyone (the docs'
// root:ispmux 0640 is the advice, not the rule).
func TestTokenFileMode(t *testing.T) {
	dir := t.TempDir()
	tok, line := NewToken()
	for _, c := range []struct {
		name, content string
		mode          os.FileMode
		refused       string // "" = accepted
	}{
		{"plain-0600", tok, 0o600, ""},
		{"plain-0640", tok, 0o640, ""},
		{"plain-0644", tok, 0o644, "every user can read"},
		{"hash-0644", line, 0o644, ""},
		{"hash-0666", line, 0o666, "every user can write"},
		{"plain-0602", tok, 0o602, "every user can write"},
	} {
		p := filepath.Join(dir, c.name+".token")
		if err := os.WriteFile(p, []byte(c.content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, c.mode); err != nil { // past the umask
			t.Fatal(err)
		}
		_, err := ReadTokenFile(p)
		switch {
		case c.refused == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.refused != "" && err == nil:
			t.Errorf("%s (mode %04o): accepted, want refused", c.name, c.mode)
		case c.refused != "" && (!strings.Contains(err.Error(), c.refused) || !strings.Contains(err.Error(), p)):
			t.Errorf("%s: %v: want it to name the file and say %q", c.name, err, c.refused)
		}
		if err != nil && strings.Contains(err.Error(), tok) {
			t.Errorf("%s: the error quotes the token", c.name)
		}
	}
}
