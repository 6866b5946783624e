package collective

import "testing"

// TestParts: an all-reduce splits into Config.Lanes parts only when each
// part gets at least one chunk per member, on rings of two or more.
func TestParts(t *testing.T) {
	tests := []struct {
		name    string
		lanes   int
		members int
		n       int
		wire    DType
		want    int
	}{
		{"one lane", 1, 4, 1 << 20, Float32, 1},
		{"alone", 3, 1, 1 << 20, Float32, 1},
		{"below the threshold", 3, 4, 3*4*64 - 1, Float32, 1},
		{"at the threshold", 3, 4, 3 * 4 * 64, Float32, 3},
		{"large", 3, 4, 1 << 20, Float32, 3},
		{"bf16 chunks hold twice the elements", 3, 4, 3 * 4 * 64, BFloat16, 1},
		{"bf16 at its threshold", 3, 4, 3 * 4 * 128, BFloat16, 3},
		{"unknown wire dtype", 3, 4, 1 << 20, DType(99), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &Group{cfg: Config{Members: make([]string, tt.members), ChunkBytes: 256, Lanes: tt.lanes}}
			if got := g.parts(tt.n, tt.wire); got != tt.want {
				t.Fatalf("parts(%d, %v) = %d, want %d", tt.n, tt.wire, got, tt.want)
			}
		})
	}
}
