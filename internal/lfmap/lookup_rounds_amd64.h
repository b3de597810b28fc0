// The rounds of lookupBatchAsm and lookupBatchGather (lookup_amd64.s):
// the keys left in sc.pend by the second pass, finished line by line with
// PROBE and RESULT. Included once per function; EPILOGUE ends it.

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
	EPILOGUE
	RET
