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

// SLOTV(Zs, Zc): the lanes whose slot Zs holds their key (K2) take the
// slot's value offset Zc in Z6 and are found (K5); those whose slot is
// empty (K3) are ended (K6). A key present in its home line has no empty
// slot before it there (a slot, once taken, stays taken until a rebuild,
// which makes a new array: rule 3), so a match anywhere in the line is
// the first key-or-empty slot PROBE finds, and the slots need no order.
// Each line holds a key once, so one slot at most sets Z6.
#define SLOTV(Zs, Zc) \
	VPCMPEQQ Zs, Z4, K7, K2 \
	VPTESTNMQ Zs, Zs, K7, K3 \
	VMOVDQA64 Zc, K2, Z6 \
	KORW K2, K5, K5 \
	KORW K3, K6, K6

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
#define EPILOGUE
TEXT ·lookupBatchAsm(SB), NOSPLIT, $0-72
#include "lookup_hash_amd64.h"
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

#include "lookup_rounds_amd64.h"

#undef EPILOGUE

// func lookupBatchGather(base unsafe.Pointer, nlines, k0, k1 uint64, keys, vals *uint64, ok *bool, n int, sc *batchScratch)
//
// lookupBatchAsm with the second pass done for eight keys at a time with
// AVX-512 (F, BW, VL; and BMI1): their keys and home lines are loaded as
// vectors, the four key words of the eight lines gathered (VPGATHERQQ,
// one gather per slot), each compared with the keys and tested for 0
// (SLOTV, from the last slot to the first so that the first wins), and
// the values of the keys found gathered from the slots that matched (a
// gather after the key gathers: x86 does not reorder a load with an
// earlier one, and a gather's element loads are loads, so rule 1 holds as
// for PROBE's loads; each element is one aligned quadword, read whole).
// The deleted value and the reserved keys are absent, as in RESULT. vals
// and ok are stored for the eight with masked stores (the lanes past n
// untouched); a key its home line does not decide (neither found nor
// ended by an empty slot) is listed in sc.pend, its next two lines
// prefetched, for the rounds, as in lookupBatchAsm.
#define EPILOGUE VZEROUPPER
TEXT ·lookupBatchGather(SB), NOSPLIT, $0-72
#include "lookup_hash_amd64.h"
	XORL R11, R11
	VPTERNLOGQ $0xff, Z9, Z9, Z9
	MOVQ $8, AX
	VPBROADCASTQ AX, Z10
	MOVQ $24, AX
	VPBROADCASTQ AX, Z11
	MOVQ $40, AX
	VPBROADCASTQ AX, Z12
	MOVQ $56, AX
	VPBROADCASTQ AX, Z13

vgroup:
	MOVQ n+56(FP), AX
	SUBQ CX, AX
	MOVL $0xff, DX
	CMPQ AX, $8
	JAE  vfull
	MOVQ CX, R15
	MOVL AX, CX
	MOVL $1, DX
	SHLL CX, DX
	DECL DX
	MOVQ R15, CX

vfull:
	KMOVW DX, K7
	VMOVDQU64.Z (DI)(CX*8), K7, Z4
	VMOVDQU64.Z batchScratch_home(SI)(CX*8), K7, Z5
	VPTESTNMQ Z4, Z4, K7, K4
	VPCMPEQQ Z9, Z4, K7, K5
	KORW K4, K5, K4
	KXORW K5, K5, K5
	KXORW K6, K6, K6
	KMOVW K7, K1
	VPGATHERQQ 48(R11)(Z5*1), K1, Z3
	KMOVW K7, K1
	VPGATHERQQ 32(R11)(Z5*1), K1, Z2
	KMOVW K7, K1
	VPGATHERQQ 16(R11)(Z5*1), K1, Z1
	KMOVW K7, K1
	VPGATHERQQ (R11)(Z5*1), K1, Z0
	SLOTV(Z3, Z13)
	SLOTV(Z2, Z12)
	SLOTV(Z1, Z11)
	SLOTV(Z0, Z10)
	KANDNW K5, K4, K5
	KORW K4, K6, K6
	KORW K5, K6, K6
	VPADDQ Z6, Z5, Z7
	VPXORQ Z8, Z8, Z8
	KMOVW K5, K1
	VPGATHERQQ (R11)(Z7*1), K1, Z8
	VPCMPEQQ Z9, Z8, K5, K2
	KANDNW K5, K2, K5
	VMOVDQA64.Z Z8, K5, Z8
	VMOVDQU64 Z8, K7, (R9)(CX*8)
	VPMOVM2B K5, X15
	VPABSB X15, X15
	VMOVDQU8 X15, K7, (R10)(CX*1)
	KANDNW K7, K6, K2
	KMOVW K2, AX
	TESTL AX, AX
	JNE  vpend

vnext:
	ADDQ $8, CX
	CMPQ CX, n+56(FP)
	JLT  vgroup
	JMP  round

vpend:
	TZCNTL AX, DX
	LEAQ (CX)(DX*1), R12
	MOVB R12, batchScratch_pend(SI)(R14*1)
	INCQ R14
	MOVQ batchScratch_home(SI)(R12*8), BX
	PREFETCHT0 64(BX)
	PREFETCHT0 128(BX)
	BLSRL AX, AX
	JNE  vpend
	JMP  vnext

#include "lookup_rounds_amd64.h"
