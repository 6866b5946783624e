//go:build openblas

package model

// #cgo LDFLAGS: -lopenblas
import "C"

import (
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/netlib/blas/netlib"
)

// With the openblas build tag, gonum's blas32 routines run on OpenBLAS
// (Debian's libopenblas-dev) through gonum/netlib's cgo bindings; the cgo
// directive above links it, so `go build -tags openblas` needs no extra
// flags. The default build stays pure Go and static.
func init() { blas32.Use(netlib.Implementation{}) }

// BLASName names the BLAS implementation this binary was built with.
const BLASName = "openblas (gonum/netlib, cgo)"
