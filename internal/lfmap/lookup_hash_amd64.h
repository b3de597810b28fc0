// The first pass of lookupBatchAsm and lookupBatchGather (lookup_amd64.s):
// hash every key, store its home line's address in sc.home and prefetch
// it; then the registers the second pass starts with. Included once per
// function (labels are local to a TEXT block).

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

