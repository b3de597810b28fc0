//go:build !linux

package hugemem

// Prepare does nothing outside Linux: no transparent huge pages, and the
// table's pages are faulted in by its writes.
func Prepare([]byte) {}
