package node

import (
	"testing"
	"time"
)

// TestConnectBackoff: the wait after the k-th consecutive failure to
// connect a ring doubles from 50 ms and stops at 2 s.
func TestConnectBackoff(t *testing.T) {
	cases := []struct {
		name     string
		failures int
		want     time.Duration
	}{
		{"second", 2, 50 * time.Millisecond},
		{"third", 3, 100 * time.Millisecond},
		{"sixth", 6, 800 * time.Millisecond},
		{"seventh", 7, 1600 * time.Millisecond},
		{"eighth: capped", 8, 2 * time.Second},
		{"hundredth", 100, 2 * time.Second},
	}
	for _, tc := range cases {
		if got := connectBackoff(tc.failures); got != tc.want {
			t.Errorf("%s: connectBackoff(%d) = %v, want %v", tc.name, tc.failures, got, tc.want)
		}
	}
}
