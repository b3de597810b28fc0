package subscribers

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestGroupCommitGroups checks that concurrent commits share transactions
// (and so fsyncs): 64 committers must need far fewer transactions than
// commits.
func TestGroupCommitGroups(t *testing.T) {
	s, _ := openTest(t, Options{})
	var txs sync.Map // write transaction IDs seen
	const workers, per = 64, 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for j := range per {
				key := []byte(fmt.Sprint(w, "/", j))
				err := s.update(func(tx *bolt.Tx) error {
					txs.Store(tx.ID(), true)
					return tx.Bucket(bucketMeta).Put(key, nil)
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	n := 0
	txs.Range(func(any, any) bool { n++; return true })
	t.Logf("%d commits in %d transactions", workers*per, n)
	if n > workers*per/4 {
		t.Errorf("%d commits took %d transactions: not grouped", workers*per, n)
	}
	if s.leading || len(s.queue) != 0 {
		t.Errorf("after all commits: leading=%v queue=%d, want idle", s.leading, len(s.queue))
	}
}

// TestGroupCommitFailureIsolation mixes failing writes into batches: each
// caller must get its own result, and every successful write must land.
func TestGroupCommitFailureIsolation(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, MaxBatchSize: 7})
	errOdd := errors.New("odd")
	var runs atomic.Int64
	const n = 400
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			key := []byte(fmt.Sprint("k", i))
			err := s.update(func(tx *bolt.Tx) error {
				runs.Add(1)
				if err := tx.Bucket(bucketMeta).Put(key, nil); err != nil {
					return err
				}
				if i%2 == 1 {
					return errOdd // after the Put: it must be rolled back
				}
				return nil
			})
			if want := map[bool]error{true: errOdd, false: nil}[i%2 == 1]; !errors.Is(err, want) && err != want {
				t.Errorf("write %d: %v, want %v", i, err, want)
			}
		})
	}
	wg.Wait()
	s.db.View(func(tx *bolt.Tx) error {
		for i := range n {
			got := tx.Bucket(bucketMeta).Get([]byte(fmt.Sprint("k", i))) != nil
			if got != (i%2 == 0) {
				t.Errorf("key %d present=%v, want %v", i, got, i%2 == 0)
			}
		}
		return nil
	})
	t.Logf("%d writes, %d closure runs", n, runs.Load())
}
