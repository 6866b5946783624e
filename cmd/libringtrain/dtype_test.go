package main

import (
	"testing"

	"github.com/ringtrain/ringtrain/collective"
)

// The C constants RT_FP32, RT_BF16, RT_FP16 are collective's DType values.
func TestDTypeMatchesCollective(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    dtype
		want collective.DType
	}{{"fp32", fp32, collective.Float32}, {"bf16", bf16, collective.BFloat16}, {"fp16", fp16, collective.Float16}} {
		t.Run(tc.name, func(t *testing.T) {
			if collective.DType(tc.d) != tc.want || tc.d.String() != tc.want.String() || tc.d.size() != tc.want.Size() {
				t.Fatalf("dtype %v (size %d) does not match collective's %v (size %d)", tc.d, tc.d.size(), tc.want, tc.want.Size())
			}
			p, err := parseDType(tc.name)
			if err != nil || p != tc.d {
				t.Fatalf("parseDType(%q) = %v, %v", tc.name, p, err)
			}
		})
	}
}
