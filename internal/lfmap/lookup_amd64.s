//go:build amd64 && !purego

#include "textflag.h"
#include "go_asm.h"

// PROBE sets R12 to where the value of key AX is loaded from, given the
// line at BX: the val of the first slot of the line holding either AX or 0
// (empty), as in Lookup, except that an empty slot gives R13
// (&sc.zero[1]), and a line with neither gives &sc.zero[0]. The slots are
// compared from the last to the first with conditional moves, so the first
// one wins, without a branch. Clobbers DX and R8.
#define SLOT(key, val) \
	MOVQ key(BX), DX \
	LEAQ val(BX), R8 \
	CMPQ DX, AX \
	CMOVQEQ R8, R12 \
	TESTQ DX, DX \
	CMOVQEQ R13, R12

#define PROBE \
	LEAQ batchScratch_zero(SI), R12 \
	SLOT(48, 56) \
	SLOT(32, 40) \
	SLOT(16, 24) \
	SLOT(0, 8)

// RESULT loads the value at R12 (after the keys: rule 1) into vals[i] and
// stores found into ok[i], i in a register: found, and not the deleted
// value (rule 3; then vals[i] is 0), worked out in AX's low byte and
// stored once (a SETCC into ok[i] and an AND on it, before stop 39, was
// a load and two stores more: ~4% of the lookup at 1K). It leaves DX 0
// if the probe must go on (R12 is &sc.zero[0]), 8 if it ended without
// the key. Clobbers AX (the
// key, not needed after PROBE) and R8.
#define RESULT(i) \
	MOVQ (R12), AX \
	LEAQ 1(AX), R8 \
	TESTQ R8, R8 \
	CMOVQEQ R8, AX \
	MOVQ AX, (R9)(i*8) \
	SETNE R8 \
	MOVQ R12, DX \
	SUBQ R13, DX \
	ADDQ $8, DX \
	CMPQ DX, $16 \
	SETCC AX \
	ANDL R8, AX \
	MOVB AX, (R10)(i*1)

// func lookupBatchAsm(base unsafe.Pointer, nlines, k0, k1 uint64, keys, vals *uint64, ok *bool, n int, sc *batchScratch)
//
// Pass 1, for each key: hash (as hash in lfmap.go: mix(m5^8, mix(key^k1,
// key^k0))), fastrange to a line, store the line's address in sc.home and
// PREFETCHT0 it. A prefetch retires without waiting for its miss, so the
// hashing of the next keys and the probing that follows overlap the misses.
//
// Pass 2, for each key: PROBE its home line; a reserved key (0, ^0) is
// absent. x86 does not reorder loads with loads, so the value, loaded
// after the keys, is at least as recent as the key seen: rule 1 of the
// package documentation. A key whose line holds neither it nor an empty
// slot is listed in sc.pend, and the next two lines are prefetched for it.
//
// Then rounds until sc.pend is empty: each PROBEs, for each pending key,
// the line after the one last probed (the first after the last), whose
// address replaces sc.home, keeps the keys still undecided in sc.pend and
// prefetches for them the line after the next (the next one was prefetched
// by the round before). A probe ends: there is always an empty slot.
TEXT ·lookupBatchAsm(SB), NOSPLIT, $0-72
	MOVQ base+0(FP), R8
	MOVQ nlines+8(FP), R9
	MOVQ k0+16(FP), R10
	MOVQ k1+24(FP), R11
	MOVQ keys+32(FP), DI
	MOVQ n+56(FP), R12
	MOVQ sc+64(FP), SI
	MOVQ $0x1d8e4e27c47d1247, R13 // hashM5 ^ 8
	XORL CX, CX

hash:
	MOVQ (DI)(CX*8), AX
	MOVQ AX, DX
	XORQ R11, AX
	XORQ R10, DX
	MULQ DX
	XORQ DX, AX
	MULQ R13
	XORQ DX, AX
	MULQ R9 // DX = line number
	SHLQ $6, DX
	ADDQ R8, DX
	MOVQ DX, batchScratch_home(SI)(CX*8)
	PREFETCHT0 (DX)
	INCQ CX
	CMPQ CX, R12
	JLT  hash

	DECQ R9
	SHLQ $6, R9
	ADDQ R8, R9
	MOVQ R9, batchScratch_last(SI)
	MOVQ vals+40(FP), R9
	MOVQ ok+48(FP), R10
	LEAQ (batchScratch_zero+8)(SI), R13
	XORL CX, CX
	XORL R14, R14

probe:
	MOVQ (DI)(CX*8), AX
	MOVQ batchScratch_home(SI)(CX*8), BX
	PROBE
	LEAQ 1(AX), DX // reserved key (0 or ^0): CF after the compare
	CMPQ DX, $2
	CMOVQCS R13, R12
	RESULT(CX)
	LEAQ 64(BX), R8 // if the probe goes on, prefetch the next two lines
	LEAQ 128(BX), R15
	TESTQ DX, DX
	CMOVQNE BX, R8
	CMOVQNE BX, R15
	PREFETCHT0 (R8)
	PREFETCHT0 (R15)
	MOVB CX, batchScratch_pend(SI)(R14*1)
	CMPQ DX, $1 // CF iff the probe goes on
	ADCQ $0, R14
	INCQ CX
	CMPQ CX, n+56(FP)
	JLT  probe

round:
	MOVQ R14, R15
	XORL CX, CX
	XORL R14, R14
	TESTQ R15, R15
	JEQ done

next:
	MOVBQZX batchScratch_pend(SI)(CX*1), R11
	MOVQ (DI)(R11*8), AX
	MOVQ batchScratch_home(SI)(R11*8), BX
	LEAQ 64(BX), R8
	CMPQ BX, batchScratch_last(SI)
	CMOVQEQ base+0(FP), R8
	MOVQ R8, BX
	MOVQ BX, batchScratch_home(SI)(R11*8)
	PROBE
	RESULT(R11)
	LEAQ 128(BX), R8
	TESTQ DX, DX
	CMOVQNE BX, R8
	PREFETCHT0 (R8)
	MOVB R11, batchScratch_pend(SI)(R14*1) // R14 <= CX: pend[CX] was read
	CMPQ DX, $1
	ADCQ $0, R14
	INCQ CX
	CMPQ CX, R15
	JLT  next
	JMP  round

done:
	RET
