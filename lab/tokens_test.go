package lab

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestAPITokensOfLabISPs: the lab writes the operator's and the claim
// token's files and one token file per ISP it runs, none for the ISPs it
// does not (a lab of 2 ISPs wrote eight ISPs' files).
func TestAPITokensOfLabISPs(t *testing.T) {
	dir := t.TempDir()
	a := newAPITokens(dir, ispNames[:2])
	if err := a.write(); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(dir, "tokens"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	want := []string{"alpha.token", "beta.token", "installer.token", "operator.token"}
	if !slices.Equal(got, want) {
		t.Fatalf("token files %v, want %v", got, want)
	}
	for n, f := range a.ISPFile {
		b, err := os.ReadFile(f)
		if err != nil || string(b) != a.ISP[n]+"\n" {
			t.Fatalf("%s: %q, %v; want its token", f, b, err)
		}
	}
}
