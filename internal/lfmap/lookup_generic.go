//go:build !amd64 || purego

package lfmap

// lookupChunk is LookupBatch for len(keys) <= MaxBatch.
func (v *View) lookupChunk(keys, vals []uint64, ok []bool) {
	v.lookupChunkGo(keys, vals, ok)
}

// hasGather and useGather select the AVX-512 lookup on amd64
// (lookup_amd64.go); here there is none, and they change nothing.
var hasGather, useGather = false, false
