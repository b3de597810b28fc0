//go:build amd64 && !purego

package lfmap

import "testing"

// forEachChunkImpl runs fn as a subtest for each lookupChunk this CPU
// runs: the scalar assembly and, where the CPU has AVX-512, the gathering
// one (useGather selects it; restored after).
func forEachChunkImpl(t *testing.T, fn func(t *testing.T)) {
	defer func(old bool) { useGather = old }(useGather)
	useGather = false
	t.Run("asm", fn)
	if !hasGather {
		t.Log("this CPU has no AVX-512 (F, BW, VL): lookupBatchGather not run")
		return
	}
	useGather = true
	t.Run("gather", fn)
}
