//go:build !amd64

package half

// archFormats: no vector path to test on its own here.
var archFormats []format
