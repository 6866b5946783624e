package collective

import "testing"

// TestWireCap: a wire buffer's capacity is its chunk rounded up to a power
// of two, capped at the group's chunk, never below the chunk itself.
func TestWireCap(t *testing.T) {
	for _, tc := range []struct {
		name                string
		n, chunkBytes, want int
	}{
		{"full chunk", 256 << 10, 256 << 10, 256 << 10},
		{"short last chunk rounds up", 100 << 10, 256 << 10, 128 << 10},
		{"rounding capped at the chunk", 200 << 10, 256 << 10, 256 << 10},
		{"small op on huge chunks", 6, 64 << 20, 8},
		{"one byte", 1, 64 << 20, 1},
		{"odd chunk size", 1000, 1000, 1000},
		{"longer than the chunk (never shorter than n)", 3000, 1000, 3000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := wireCap(tc.n, tc.chunkBytes); got != tc.want {
				t.Fatalf("wireCap(%d, %d) = %d, want %d", tc.n, tc.chunkBytes, got, tc.want)
			}
		})
	}
}

// TestWirePoolGet: a request gets exactly its length, reuses a pooled
// buffer large enough and never gets one too small.
func TestWirePoolGet(t *testing.T) {
	w := &wirePool{chunkBytes: 64 << 20}
	b := w.Get(1000)
	if len(*b) != 1000 || cap(*b) != 1024 {
		t.Fatalf("first buffer len %d cap %d, want 1000 and 1024", len(*b), cap(*b))
	}
	w.Put(b)
	big := w.Get(5000) // the pooled 1 KiB buffer cannot hold it
	if len(*big) != 5000 || cap(*big) != 8192 {
		t.Fatalf("larger request len %d cap %d, want 5000 and 8192", len(*big), cap(*big))
	}
}
