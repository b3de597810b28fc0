package subscribers

import (
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestCorruptSyncLeftDoesNotBlockSync: a damaged sync-left record
// (a hint: the customers a crashed sync's devices left) made every
// SyncRegistrationsWith with RecordLeft fail, so SyncConfig failed at every
// start (appliance.New returns its error) and every reload, and nothing an
// operator can do clears it (ClearSyncLeft is only written after a sync
// succeeded). doc.go promises one damaged record does not keep the
// appliance from loading the others.
func TestCorruptSyncLeftDoesNotBlockSync(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	opts := SyncOptions{KeepOthers: true, RecordLeft: true}
	full := encodeCustomerKeys([]CustomerKey{{ISP: "a", ID: "c2"}})
	if err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySyncLeft("config"), full[:len(full)-1]) // truncated
	}); err != nil {
		t.Fatal(err)
	}
	regs := []Registration{{MAC: mac(1), ISP: "a", CustomerID: "c1"}}
	for i := range 2 {
		if _, err := s.SyncRegistrationsWith("config", regs, opts); err != nil {
			t.Fatalf("sync %d with a damaged sync-left record: %v", i, err)
		}
	}
	if _, err := s.Registration(mac(1)); err != nil {
		t.Errorf("registration not written: %v", err)
	}
}
