//go:build amd64 && !purego

package lfmap

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// batchScratch is lookupBatchAsm's working memory, on lookupChunk's stack;
// only the assembly uses its fields.
//
//lint:ignore U1000 the fields are used by lookup_amd64.s (go_asm.h offsets)
type batchScratch struct {
	home [MaxBatch]uintptr // address of the last line probed for keys[i]
	pend [MaxBatch]uint8   // keys whose probe goes on
	// zero is two words that stay 0: a key neither found nor ended in
	// a line loads its value from zero[0], one ended by an empty slot
	// (or a reserved key) from zero[1], so that the value load needs
	// no branch.
	zero [2]uint64
	last uintptr // address of the last line
}

// lookupBatchAsm is lookupChunk for the n keys at keys, n >= 1: see
// lookup_amd64.s.
//
// lookupBatchGather is lookupBatchAsm with its second pass done for eight
// keys at a time with AVX-512 gathers (lookup_amd64.s). Only where
// hasGather.
//
//go:noescape
func lookupBatchGather(base unsafe.Pointer, nlines, k0, k1 uint64, keys, vals *uint64, ok *bool, n int, sc *batchScratch)

// hasGather says whether this CPU and OS run lookupBatchGather: AVX-512 F,
// BW and VL with their register state enabled by the OS, and BMI1.
var hasGather = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasBMI1

// useGather selects lookupBatchGather for lookupChunk (where hasGather);
// tests and benchmarks turn it off to run lookupBatchAsm on the same CPU.
var useGather = hasGather

//go:noescape
func lookupBatchAsm(base unsafe.Pointer, nlines, k0, k1 uint64, keys, vals *uint64, ok *bool, n int, sc *batchScratch)

// lookupChunk is LookupBatch for len(keys) <= MaxBatch.
//
// Measured (2-CPU shared EPYC VM), BenchmarkMACTable ÷ BenchmarkMACTableFloor
// (package classifier), 8 interleaved runs of each binary, median [min–max]
// ns per key at 1K/100K/1M entries: 6.90 [6.76–10.37] / 7.99 [7.63–16.42] /
// 12.64 [12.03–16.03], against lookupChunkGo's 7.35 [7.05–7.73] / 10.12
// [9.93–10.77] / 22.73 [20.92–24.02]; ratio to the floor of the same run
// (median of the runs) 3.72 / 3.36 / 1.60, against 3.87 / 4.16 / 2.65.
// BenchmarkLookupChunkAB, in one process: 5.6 / 5.9 / 10.3–10.8 against
// lookupChunkGo's 6.3 / 8.6–8.7 / 18.1–20.0, floor 0.5 / 1.0 / 5.1–5.3.
// What the assembly gains at 1M comes from the prefetches, not from its
// fewer instructions (0.7 ns per key at 1K): with the same passes but loads
// in place of PREFETCHT0 it was no faster than lookupChunkGo. The rounds
// matter as much: keys past their second line (7% of the present keys of a
// full table at 0.8; linear probing's clusters make the tail long, 3% need 5
// lines or more) finished one after the other, each miss waited for, cost
// 5 ns per key of the batch at 1M. What is left beyond the floor: ~5.5 ns
// per key of instructions (at 1K: 1.3 hashing and prefetching, 2.7
// probing the home line, 1.5 the rounds), which overlap the misses of the
// home lines well (with the rounds left out the lookup measured 1.2× the
// floor at 1M), and the lines past the home line, 0.38 per present key,
// which the floor does not read. Not faster: prefetching the home lines a
// few keys (8–24) ahead of the probe instead of all at once; prefetching
// three lines ahead instead of two, or only the next one; rounds of two
// lines per key; loading the four values with the keys instead of the one
// found; the scratch in the assembly's own frame, not zeroed, instead of
// a Go local. Finishing the keys left after the first round one at a
// time, line by line with a prefetch 3 lines ahead, was 6% faster at 1K
// but 2–4% slower at 100K and 1M (BenchmarkLookupChunkAB, 6 alternated
// runs).
//
// On the Intel host (stop 37; BenchmarkLookupChunkAB, one process, 2–3
// runs each), where the floor at 1M is 4.4–5.5 ns: the first pass alone
// (hash and prefetch) costs 1.0 ns per key at 1K and 5.1–6.1 ns at 1M,
// about the floor; the second pass, ~4.5 ns per key with its lines in L1,
// is what the lookup costs beyond the floor, and it overlaps the misses
// little. Not faster there: hashing and prefetching 8, 16 or 32 keys
// ahead of the probe in one loop instead of all first (within 1–7 %,
// slower in each run); a branch to record a key whose probe goes on, in
// place of the conditional moves (6 % faster at 1K, 10–20 % slower at
// 100K and 1M: the branch waits on the line's load).
//
// Stop 39, same host, written and measured, not kept:
//   - the line's four keys compared with one AVX-512 compare (a 64-byte
//     load, VPCMPEQQ and VPTESTNMQ into mask registers, TZCNT of the
//     first key-or-empty slot: half of PROBE's instructions). At the
//     0.5 load of the MAC table, 0.25 ns per key faster at 1K and 1M in
//     an alternated A/B, within the noise in BenchmarkMACTable; at 0.8
//     (BenchmarkLookupChunkAB), the same at 1K and 0.9 ns slower at 1M
//     (the mask moves lengthen each key's chain from its line's load).
//   - one loop hashing and prefetching 8–32 keys ahead of the probe
//     (again, and with the AVX-512 probe): slower at 1M in every variant,
//     by 0.4–2 ns per key, the shorter the lead the slower.
//
// What they showed: the first pass alone costs 0.85× the floor at 1M
// (prefetches are cheaper than the floor's loads), and the second pass,
// ~2.8 ns per key, adds to it instead of overlapping it, whichever way
// the two are interleaved. The RESULT change (one byte store for ok[i])
// was kept. So the second pass had to cost less, not overlap more:
// lookupBatchGather does it for eight keys at a time (four gathers of
// the eight lines' slot keys, compared at once; one gather of the
// values found), where the CPU has AVX-512. BenchmarkMACTable (package
// classifier, load 0.5), 4 alternated runs of the two builds' test
// binaries pinned to one CPU, ns per key: 1K 3.67–3.76 against the
// scalar assembly's 4.85–5.00; 1M 7.25–7.51 against 8.55–8.90; ratio to
// the same run's floor at 1M 1.24–1.30 against 1.32–1.62.
// BenchmarkLookupChunkAB at 0.5: 1K 2.5 against 3.7 ns; at 1M the two
// were alike there (7.1 ns, floor 5.0), where blocks of the floor, the
// Go version and the two alternate, each leaving the memory system in
// another state for the next. On a CPU without AVX-512 lookupBatchAsm
// runs; the tests run both where they can (forEachChunkImpl).
func (v *View) lookupChunk(keys, vals []uint64, ok []bool) {
	if len(keys) == 0 {
		return
	}
	vals, ok = vals[:len(keys)], ok[:len(keys)]
	var sc batchScratch
	if useGather {
		lookupBatchGather(unsafe.Pointer(unsafe.SliceData(v.lines)), v.nlines, v.k0, v.k1,
			&keys[0], &vals[0], &ok[0], len(keys), &sc)
		return
	}
	lookupBatchAsm(unsafe.Pointer(unsafe.SliceData(v.lines)), v.nlines, v.k0, v.k1,
		&keys[0], &vals[0], &ok[0], len(keys), &sc)
}
