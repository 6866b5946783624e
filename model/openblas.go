//go:build openblas

package model

import (
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/netlib/blas/netlib"
)

// With the openblas build tag, gonum's blas32 routines run on the system's
// CBLAS (OpenBLAS from Debian's libopenblas-dev) through cgo. The default
// build stays pure Go and static.
func init() { blas32.Use(netlib.Implementation{}) }

// BLASName names the BLAS implementation this binary was built with.
const BLASName = "openblas (gonum/netlib, cgo)"
