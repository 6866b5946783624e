#include "textflag.h"

// Constants, four dwords each: 0x7fff, 1, 0x7fffffff, 0x7f800000, 0x40.
DATA bf16c<>+0(SB)/8, $0x00007fff00007fff
DATA bf16c<>+8(SB)/8, $0x00007fff00007fff
DATA bf16c<>+16(SB)/8, $0x0000000100000001
DATA bf16c<>+24(SB)/8, $0x0000000100000001
DATA bf16c<>+32(SB)/8, $0x7fffffff7fffffff
DATA bf16c<>+40(SB)/8, $0x7fffffff7fffffff
DATA bf16c<>+48(SB)/8, $0x7f8000007f800000
DATA bf16c<>+56(SB)/8, $0x7f8000007f800000
DATA bf16c<>+64(SB)/8, $0x0000004000000040
DATA bf16c<>+72(SB)/8, $0x0000004000000040
GLOBL bf16c<>(SB), RODATA|NOPTR, $80

#define CONSTS \
	MOVOU bf16c<>+0(SB), X8; \
	MOVOU bf16c<>+16(SB), X9; \
	MOVOU bf16c<>+32(SB), X10; \
	MOVOU bf16c<>+48(SB), X11; \
	MOVOU bf16c<>+64(SB), X12

// NARROW(in, out): the four float32 bit patterns in register in become
// their bfloat16 codes, one per dword (low 16 bits), in out, as half.bf16
// computes them: round to nearest even, NaN made quiet. in is clobbered;
// X2 and X3 are scratch.
#define NARROW(in, out) \
	MOVO in, X2; \
	PAND X10, X2; \
	PCMPGTL X11, X2; \
	MOVO in, out; \
	PSRLL $16, out; \
	MOVO out, X3; \
	PAND X9, X3; \
	PADDL X8, in; \
	PADDL X3, in; \
	PSRLL $16, in; \
	POR X12, out; \
	PAND X2, out; \
	PANDN in, X2; \
	POR X2, out

// PACK(lo, hi): eight codes, one per dword in lo (elements 0-3) and hi
// (4-7), become eight words in lo. Sign-extending the low 16 bits first
// makes PACKSSDW's signed saturation keep them exactly. hi is clobbered.
#define PACK(lo, hi) \
	PSLLL $16, lo; \
	PSRAL $16, lo; \
	PSLLL $16, hi; \
	PSRAL $16, hi; \
	PACKSSLW hi, lo

// func encodeBF16SSE2(dst *uint16, src *uint32, n int)
TEXT ·encodeBF16SSE2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	CONSTS
	SHRQ $3, CX
	JZ   encdone
encloop:
	MOVOU (SI), X0
	MOVOU 16(SI), X4
	NARROW(X0, X1)
	NARROW(X4, X5)
	PACK(X1, X5)
	MOVOU X1, (DI)
	ADDQ $32, SI
	ADDQ $16, DI
	DECQ CX
	JNZ  encloop
encdone:
	RET

// func truncBF16SSE2(dst *uint16, src *uint32, n int)
// The top 16 bits of each dword, arithmetically shifted down, are a
// sign-extended word that PACKSSDW's signed saturation keeps exactly.
TEXT ·truncBF16SSE2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   trdone
trloop:
	MOVOU (SI), X0
	MOVOU 16(SI), X1
	PSRAL $16, X0
	PSRAL $16, X1
	PACKSSLW X1, X0
	MOVOU X0, (DI)
	ADDQ $32, SI
	ADDQ $16, DI
	DECQ CX
	JNZ  trloop
trdone:
	RET

// func decodeBF16SSE2(dst *uint32, src *uint16, n int)
TEXT ·decodeBF16SSE2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   decdone
decloop:
	MOVOU (SI), X0
	PXOR  X1, X1
	PXOR  X2, X2
	PUNPCKLWL X0, X1
	PUNPCKHWL X0, X2
	MOVOU X1, (DI)
	MOVOU X2, 16(DI)
	ADDQ $16, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  decloop
decdone:
	RET

// func addEncodeBF16SSE2(w *uint16, acc *uint32, n int)
TEXT ·addEncodeBF16SSE2(SB), NOSPLIT, $0-24
	MOVQ w+0(FP), DI
	MOVQ acc+8(FP), SI
	MOVQ n+16(FP), CX
	CONSTS
	SHRQ $3, CX
	JZ   aedone
aeloop:
	MOVOU (DI), X6
	PXOR  X0, X0
	PXOR  X4, X4
	PUNPCKLWL X6, X0
	PUNPCKHWL X6, X4
	MOVUPS (SI), X6
	MOVUPS 16(SI), X7
	ADDPS X6, X0
	ADDPS X7, X4
	NARROW(X0, X1)
	NARROW(X4, X5)
	PACK(X1, X5)
	MOVOU X1, (DI)
	ADDQ $32, SI
	ADDQ $16, DI
	DECQ CX
	JNZ  aeloop
aedone:
	RET

// func addRoundBF16SSE2(acc *uint32, w *uint16, n int, mul float32)
TEXT ·addRoundBF16SSE2(SB), NOSPLIT, $0-28
	MOVQ acc+0(FP), SI
	MOVQ w+8(FP), DI
	MOVQ n+16(FP), CX
	MOVSS mul+24(FP), X14
	SHUFPS $0, X14, X14
	CONSTS
	SHRQ $3, CX
	JZ   ardone
arloop:
	MOVOU (DI), X6
	PXOR  X0, X0
	PXOR  X4, X4
	PUNPCKLWL X6, X0
	PUNPCKHWL X6, X4
	MOVUPS (SI), X6
	MOVUPS 16(SI), X7
	ADDPS X6, X0
	ADDPS X7, X4
	MULPS X14, X0
	MULPS X14, X4
	NARROW(X0, X1)
	NARROW(X4, X5)
	MOVO X1, X6
	MOVO X5, X7
	PSLLL $16, X6
	PSLLL $16, X7
	MOVOU X6, (SI)
	MOVOU X7, 16(SI)
	PACK(X1, X5)
	MOVOU X1, (DI)
	ADDQ $32, SI
	ADDQ $16, DI
	DECQ CX
	JNZ  arloop
ardone:
	RET
