package datapath

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestInjectWakesSleepingWorker: a worker asleep in poll (idle timeout far
// longer than the test) sends an injected frame at once, every time.
func TestInjectWakesSleepingWorker(t *testing.T) {
	q := NewMemQueue(64, 2048)
	var sent atomic.Int32
	q.Sink = func([]byte) { sent.Add(1) }
	w, err := NewWorker(0, []Queue{q}, wire{}, 64, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- w.Run() }()
	stop := func() {
		w.Stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	for i := range 50 {
		time.Sleep(time.Millisecond) // let it fall asleep (sometimes)
		if !w.Inject(0, make([]byte, 60)) {
			t.Fatal("inject refused")
		}
		deadline := time.Now().Add(2 * time.Second)
		for sent.Load() != int32(i+1) {
			if time.Now().After(deadline) {
				stop()
				t.Fatalf("injected frame %d not sent within 2s (worker asleep)", i)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	stop() // the queue is the worker's until it has stopped
	if q.FreeFrames() != 64 {
		t.Errorf("frames leaked: %d free of 64", q.FreeFrames())
	}
}
