package auth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A verify (a claim's password check: the portal's subscribers, of every
// ISP) waits for the hash running, not for the hashes queued: one ISP's
// import of plaintext passwords (a batch queues a hash per line) must not
// hold every other ISP's claims for the whole batch. Before, the slots
// were served in arrival order and a claim behind a 500-line batch waited
// 500 hashes (seconds: past the portal's 10 s write timeout on a busy
// box).
func TestVerifyAheadOfQueuedHashes(t *testing.T) {
	const hashes = 30
	var done atomic.Int32
	var wg sync.WaitGroup
	for range hashes {
		wg.Go(func() {
			if _, err := HashPassword("imported"); err != nil {
				t.Error(err)
			}
			done.Add(1)
		})
	}
	time.Sleep(200 * time.Millisecond) // the hashes are queued
	phc, _ := hashUnqueued(t, "right")
	before := done.Load()
	ok, _, err := VerifyPassword(phc, "right")
	after := done.Load()
	wg.Wait()
	if err != nil || !ok {
		t.Fatalf("verify: %v %v", ok, err)
	}
	if n := after - before; n > int32(2*Slots()) {
		t.Errorf("the verify waited for %d of the %d hashes queued before it (slots %d): want at most the ones running", n, hashes-before, Slots())
	}
}

// hashUnqueued makes a hash for the test without a slot.
func hashUnqueued(t *testing.T, pw string) (string, error) {
	t.Helper()
	salt := make([]byte, SaltLen)
	p := argonParams{m: ArgonMemory, t: ArgonTime, p: ArgonThreads}
	return encodeArgon(p, salt, argonKey(pw, salt, p, KeyLen)), nil
}

// A waiter that gives up (its context ends) leaves its queue: the slots
// all come back, none given to it.
func TestSlotQueueGiveUp(t *testing.T) {
	q := newSlotQueue(2)
	for range 2 {
		if err := q.acquire(context.Background(), false); err != nil {
			t.Fatal(err)
		}
	}
	for _, verify := range []bool{true, false} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		if err := q.acquire(ctx, verify); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("full, verify %v: %v", verify, err)
		}
		cancel()
	}
	got := make(chan bool, 2)
	go func() { got <- q.acquire(context.Background(), false) == nil }()
	go func() { got <- q.acquire(context.Background(), true) == nil }()
	time.Sleep(20 * time.Millisecond)
	q.release()
	q.release()
	for range 2 {
		if !<-got {
			t.Fatal("a waiter not served")
		}
	}
	q.release()
	q.release()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.free != 2 || len(q.verifies) != 0 || len(q.hashes) != 0 {
		t.Fatalf("after all given back: free %d, waiting %d+%d", q.free, len(q.verifies), len(q.hashes))
	}
}
