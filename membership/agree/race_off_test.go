//go:build !race

package agree

const defaultSchedules = 10000
