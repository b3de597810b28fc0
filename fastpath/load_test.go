package fastpath

import (
	"testing"

	"github.com/cilium/ebpf"
)

func TestProgramLoads(t *testing.T) {
	m, err := newMaps(1024, true)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	q, _ := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 4})
	x, _ := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 4})
	p, err := m.Program(0, 0x020000000001, q, x)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	p.Close()
}
