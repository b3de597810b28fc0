package subscribers

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// openV1Copy copies testdata/v1.db (see testdata/README.md) to a temporary
// directory and returns the copy's path.
func openV1Copy(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "v1.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "v1.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkV1Contents checks that s holds exactly v1Fixture.
func checkV1Contents(t *testing.T, s *Store) {
	t.Helper()
	regs, binds, evs := v1Fixture()
	gotR, err := s.Registrations()
	if err != nil {
		t.Fatalf("Registrations: %v", err)
	}
	if !slices.EqualFunc(gotR, regs, func(a, b Registration) bool { return a == normR(b) }) {
		t.Errorf("Registrations = %+v\nwant %+v", gotR, regs)
	}
	gotB, err := s.Bindings()
	if err != nil {
		t.Fatalf("Bindings: %v", err)
	}
	want := slices.Clone(binds)
	slices.SortFunc(want, func(a, b Binding) int {
		return slices.Compare(bindingKey(a.Access, a.VLAN, a.MAC), bindingKey(b.Access, b.VLAN, b.MAC))
	})
	if len(gotB) != len(want) {
		t.Fatalf("Bindings = %d, want %d", len(gotB), len(want))
	}
	for i := range want {
		if !bindingEqual(gotB[i], normB(want[i])) {
			t.Errorf("Bindings[%d] = %+v\nwant %+v", i, gotB[i], want[i])
		}
	}
	gotE, err := s.Events(0, 0)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	if !slices.EqualFunc(gotE, evs, eventEqual) {
		t.Errorf("Events = %+v\nwant %+v", gotE, evs)
	}
	exp, err := s.ExpiredBindings(binds[2].Expires)
	if err != nil || len(exp) != 1 || exp[0].MAC != binds[2].MAC {
		t.Errorf("ExpiredBindings = %+v, %v; want only %x (the expiry index survived)", exp, err, binds[2].MAC)
	}
}

func TestV1Fixture(t *testing.T) {
	s, err := Open(openV1Copy(t), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkV1Contents(t, s)
}
