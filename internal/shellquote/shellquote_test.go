package shellquote

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestJoin(t *testing.T) {
	got := Join([]string{"ip", "netns", "exec", "a-b", "/x/y z", "it's", "", "--search=false"})
	want := `ip netns exec a-b '/x/y z' 'it'\''s' '' --search=false`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// What a shell makes of the line is argv again, for the words the
// benchmarks' reports (an empty one, a path with a space, --x=y) and
// ctl's hints (a customer ID with ' ; $ * & and a newline) hold.
func TestJoinRoundTripsThroughSh(t *testing.T) {
	argv := []string{"ispmux", "ctl", "-c", "/my config/ispmux.toml", "move", "02:00:00:00:00:07", "beta",
		`o'hara;$(id)*&`, "", "--search=false", "a=b", "tab\there", "line\nbreak", `"dq" \ back`, "~user", "#x", "{a,b}", "!"}
	line := Join(argv)
	out, err := exec.Command("sh", "-c", "set -- "+line+"\nfor a; do printf '%s\\000' \"$a\"; done").Output()
	if err != nil {
		t.Fatalf("sh -c %s: %v", line, err)
	}
	if got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00"); !slices.Equal(got, argv) {
		t.Errorf("sh split %s\ninto %q\nwant %q", line, got, argv)
	}
}
