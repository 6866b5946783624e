#include "textflag.h"

// Constants, four dwords each: 0x7fff, 0x7c00, 0x8000, 0x70000000.
DATA f16c<>+0(SB)/8, $0x00007fff00007fff
DATA f16c<>+8(SB)/8, $0x00007fff00007fff
DATA f16c<>+16(SB)/8, $0x00007c0000007c00
DATA f16c<>+24(SB)/8, $0x00007c0000007c00
DATA f16c<>+32(SB)/8, $0x0000800000008000
DATA f16c<>+40(SB)/8, $0x0000800000008000
DATA f16c<>+48(SB)/8, $0x7000000070000000
DATA f16c<>+56(SB)/8, $0x7000000070000000
GLOBL f16c<>(SB), RODATA|NOPTR, $64

// func hasF16C() bool
TEXT ·hasF16C(SB), NOSPLIT, $0-1
	MOVL $1, AX
	XORL CX, CX
	CPUID
	MOVL CX, BX
	ANDL $0x38000000, BX // OSXSAVE (27), AVX (28), F16C (29)
	CMPL BX, $0x38000000
	JNE  no
	XORL CX, CX
	XGETBV               // XCR0 in EDX:EAX
	ANDL $6, AX          // SSE and AVX state saved by the OS
	CMPL AX, $6
	JNE  no
	MOVB $1, ret+0(FP)
	RET
no:
	MOVB $0, ret+0(FP)
	RET

// func encodeFP16F16C(dst *uint16, src *uint32, n int)
TEXT ·encodeFP16F16C(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   encdone
encloop:
	VMOVUPS   (SI), Y0
	VCVTPS2PH $0, Y0, X1
	VMOVDQU   X1, (DI)
	ADDQ $32, SI
	ADDQ $16, DI
	DECQ CX
	JNZ  encloop
encdone:
	VZEROUPPER
	RET

// FIXNAN(codes, wide): wide holds VCVTPH2PS's widening of the four codes
// (one per dword, zero-extended) in codes; lanes whose code is a NaN get
// fromFP16's exact bits instead (sign, all-ones exponent, payload kept,
// signalling or not). X8-X11 hold the constants; X12, X13 are scratch;
// codes is clobbered.
#define FIXNAN(codes, wide) \
	VPAND   X8, codes, X12; \
	VPCMPGTD X9, X12, X13; \
	VPSLLD  $13, X12, X12; \
	VPADDD  X11, X12, X12; \
	VPAND   X10, codes, codes; \
	VPSLLD  $16, codes, codes; \
	VPOR    codes, X12, X12; \
	VBLENDVPS X13, X12, wide, wide

// func decodeFP16F16C(dst *uint32, src *uint16, n int)
TEXT ·decodeFP16F16C(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VMOVDQU f16c<>+0(SB), X8
	VMOVDQU f16c<>+16(SB), X9
	VMOVDQU f16c<>+32(SB), X10
	VMOVDQU f16c<>+48(SB), X11
	SHRQ $3, CX
	JZ   decdone
decloop:
	VMOVDQU   (SI), X0
	VCVTPH2PS X0, Y1
	VEXTRACTF128 $1, Y1, X2
	VPMOVZXWD X0, X3
	VPSRLDQ   $8, X0, X4
	VPMOVZXWD X4, X4
	FIXNAN(X3, X1)
	FIXNAN(X4, X2)
	VMOVUPS X1, (DI)
	VMOVUPS X2, 16(DI)
	ADDQ $16, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  decloop
decdone:
	VZEROUPPER
	RET

// func addEncodeFP16F16C(w *uint16, acc *uint32, n int)
TEXT ·addEncodeFP16F16C(SB), NOSPLIT, $0-24
	MOVQ w+0(FP), DI
	MOVQ acc+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   aedone
aeloop:
	VCVTPH2PS (DI), Y1
	VMOVUPS   (SI), Y0
	VADDPS    Y1, Y0, Y0
	VCVTPS2PH $0, Y0, X2
	VMOVDQU   X2, (DI)
	ADDQ $32, SI
	ADDQ $16, DI
	DECQ CX
	JNZ  aeloop
aedone:
	VZEROUPPER
	RET

// func addRoundFP16F16C(acc *uint32, w *uint16, n int, mul float32)
TEXT ·addRoundFP16F16C(SB), NOSPLIT, $0-28
	MOVQ acc+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS mul+24(FP), Y5
	SHRQ $3, CX
	JZ   ardone
arloop:
	VCVTPH2PS (SI), Y1
	VMOVUPS   (DI), Y0
	VADDPS    Y1, Y0, Y0
	VMULPS    Y5, Y0, Y0
	VCVTPS2PH $0, Y0, X2
	VMOVDQU   X2, (SI)
	// The new code is never a signalling NaN (narrowing makes NaNs
	// quiet), so its widening needs no fix.
	VCVTPH2PS X2, Y3
	VMOVUPS   Y3, (DI)
	ADDQ $32, DI
	ADDQ $16, SI
	DECQ CX
	JNZ  arloop
ardone:
	VZEROUPPER
	RET
