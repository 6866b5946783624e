#include "textflag.h"

// The AVX2 forms of vec_amd64.s's bfloat16 kernels: sixteen elements per
// iteration, the same integer rounding and NaN selection, and VPACKUSDW
// (the codes are below 2^16, so unsigned saturation keeps them) with a
// VPERMQ that puts the two 128-bit lanes' halves back in element order.

// Constants, one dword each: 0x7fff, 1, 0x7fffffff, 0x7f800000, 0x40.
DATA bf16y<>+0(SB)/4, $0x00007fff
DATA bf16y<>+4(SB)/4, $0x00000001
DATA bf16y<>+8(SB)/4, $0x7fffffff
DATA bf16y<>+12(SB)/4, $0x7f800000
DATA bf16y<>+16(SB)/4, $0x00000040
GLOBL bf16y<>(SB), RODATA|NOPTR, $20

// func hasAVX2() bool
TEXT ·hasAVX2(SB), NOSPLIT, $0-1
	MOVL $1, AX
	XORL CX, CX
	CPUID
	ANDL $0x18000000, CX // OSXSAVE (27), AVX (28)
	CMPL CX, $0x18000000
	JNE  no
	XORL CX, CX
	XGETBV               // XCR0 in EDX:EAX
	ANDL $6, AX          // SSE and AVX state saved by the OS
	CMPL AX, $6
	JNE  no
	MOVL $7, AX
	XORL CX, CX
	CPUID
	ANDL $0x20, BX       // AVX2 (leaf 7, EBX bit 5)
	JZ   no
	MOVB $1, ret+0(FP)
	RET
no:
	MOVB $0, ret+0(FP)
	RET

#define CONSTS8 \
	VPBROADCASTD bf16y<>+0(SB), Y8; \
	VPBROADCASTD bf16y<>+4(SB), Y9; \
	VPBROADCASTD bf16y<>+8(SB), Y10; \
	VPBROADCASTD bf16y<>+12(SB), Y11; \
	VPBROADCASTD bf16y<>+16(SB), Y12

// NARROW8(in, out): vec_amd64.s's NARROW over eight dwords. in is
// clobbered; Y2 and Y3 are scratch.
#define NARROW8(in, out) \
	VPAND    Y10, in, Y2; \
	VPCMPGTD Y11, Y2, Y2; \
	VPSRLD   $16, in, out; \
	VPAND    Y9, out, Y3; \
	VPADDD   Y8, in, in; \
	VPADDD   Y3, in, in; \
	VPSRLD   $16, in, in; \
	VPOR     Y12, out, out; \
	VPAND    Y2, out, out; \
	VPANDN   in, Y2, Y2; \
	VPOR     Y2, out, out

// PACK16(lo, hi): sixteen codes, one per dword in lo (elements 0-7) and
// hi (8-15), become sixteen words in lo, in order.
#define PACK16(lo, hi) \
	VPACKUSDW hi, lo, lo; \
	VPERMQ    $0xd8, lo, lo

// WIDEN16(r, a, b): the sixteen codes at (r) widened into a (0-7) and b
// (8-15).
#define WIDEN16(r, a, b) \
	VPMOVZXWD (r), a; \
	VPMOVZXWD 16(r), b; \
	VPSLLD    $16, a, a; \
	VPSLLD    $16, b, b

// func encodeBF16AVX2(dst *uint16, src *uint32, n int)
TEXT ·encodeBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	CONSTS8
	SHRQ $4, CX
	JZ   encdone
encloop:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y4
	NARROW8(Y0, Y1)
	NARROW8(Y4, Y5)
	PACK16(Y1, Y5)
	VMOVDQU Y1, (DI)
	ADDQ $64, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  encloop
encdone:
	VZEROUPPER
	RET

// func addEncodeBF16AVX2(w *uint16, acc *uint32, n int)
TEXT ·addEncodeBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ w+0(FP), DI
	MOVQ acc+8(FP), SI
	MOVQ n+16(FP), CX
	CONSTS8
	SHRQ $4, CX
	JZ   aedone
aeloop:
	WIDEN16(DI, Y0, Y4)
	VADDPS (SI), Y0, Y0
	VADDPS 32(SI), Y4, Y4
	NARROW8(Y0, Y1)
	NARROW8(Y4, Y5)
	PACK16(Y1, Y5)
	VMOVDQU Y1, (DI)
	ADDQ $64, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  aeloop
aedone:
	VZEROUPPER
	RET

// func addRoundBF16AVX2(acc *uint32, w *uint16, n int, mul float32)
TEXT ·addRoundBF16AVX2(SB), NOSPLIT, $0-28
	MOVQ acc+0(FP), SI
	MOVQ w+8(FP), DI
	MOVQ n+16(FP), CX
	VBROADCASTSS mul+24(FP), Y14
	CONSTS8
	SHRQ $4, CX
	JZ   ardone
arloop:
	WIDEN16(DI, Y0, Y4)
	VADDPS (SI), Y0, Y0
	VADDPS 32(SI), Y4, Y4
	VMULPS Y14, Y0, Y0
	VMULPS Y14, Y4, Y4
	NARROW8(Y0, Y1)
	NARROW8(Y4, Y5)
	VPSLLD  $16, Y1, Y6
	VPSLLD  $16, Y5, Y7
	VMOVDQU Y6, (SI)
	VMOVDQU Y7, 32(SI)
	PACK16(Y1, Y5)
	VMOVDQU Y1, (DI)
	ADDQ $64, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  arloop
ardone:
	VZEROUPPER
	RET
