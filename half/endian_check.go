//go:build armbe || arm64be || m68k || mips || mips64 || mips64p32 || ppc || ppc64 || s390 || s390x || shbe || sparc || sparc64

package half

// The bulk kernels view 16-bit codes as their in-memory bytes, which must be the
// little-endian wire format. On a big-endian host this file stops the build
// instead of corrupting every gradient.
const _ = "ringtrain requires a little-endian host" + 1
