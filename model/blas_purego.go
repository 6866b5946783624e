//go:build !openblas

package model

// BLASName names the BLAS implementation this binary was built with.
const BLASName = "gonum (pure Go)"
