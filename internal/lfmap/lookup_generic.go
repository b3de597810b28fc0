//go:build !amd64 || purego

package lfmap

// lookupChunk is LookupBatch for len(keys) <= MaxBatch.
func (v *View) lookupChunk(keys, vals []uint64, ok []bool) {
	v.lookupChunkGo(keys, vals, ok)
}
