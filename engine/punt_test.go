package engine

import "testing"

// TestPuntQueueStack: a port's buffers run out after perPort frames in
// flight (and another port's do not), a released buffer is the next one
// used (the stack keeps the working set hot), frames come out intact, and
// put allocates nothing.
func TestPuntQueueStack(t *testing.T) {
	q := NewPuntQueue(2, 4)
	frame := []byte{1, 2, 3}
	var held []*Punted
	for i := range 4 {
		if !q.put(0, frame) {
			t.Fatalf("put %d refused with buffers free", i)
		}
		held = append(held, q.Next())
	}
	if q.put(0, frame) {
		t.Fatal("put accepted a fifth frame with 4 buffers")
	}
	if !q.put(1, frame) {
		t.Fatal("port 1 refused: port 0's full queue crowded it out")
	}
	if p := q.Next(); p == nil || p.Port != 1 || string(p.Frame()) != string(frame) {
		t.Fatalf("port 1's frame: %+v", p)
	} else {
		q.Release(p)
	}
	for _, p := range held {
		q.Release(p)
	}
	last := held[len(held)-1]
	for i := range 10 {
		if !q.put(0, []byte{byte(i)}) {
			t.Fatal("put refused after Release")
		}
		p := q.Next()
		if p != last || p.Port != 0 || len(p.Frame()) != 1 || p.Frame()[0] != byte(i) {
			t.Fatalf("round %d: got buffer %p (%v), want the last released %p", i, p, p.Frame(), last)
		}
		q.Release(p)
	}
	if a := testing.AllocsPerRun(100, func() {
		q.put(0, frame)
		q.Release(q.Next())
	}); a != 0 {
		t.Errorf("put and Release allocate %.0f times", a)
	}
}
