package data

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEmbeddedMNIST(t *testing.T) {
	train, test, err := MNIST("")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		set        *Set
		n          int
		firstLabel uint8
	}{
		{"train", train, 60000, 5},
		{"test", test, 10000, 7},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.set.Len() != c.n || c.set.Rows != 28 || c.set.Cols != 28 || len(c.set.Images) != c.n*784 {
				t.Fatalf("%d samples of %d×%d, %d floats", c.set.Len(), c.set.Rows, c.set.Cols, len(c.set.Images))
			}
			if c.set.Labels[0] != c.firstLabel {
				t.Errorf("first label %d, want %d", c.set.Labels[0], c.firstLabel)
			}
			var counts [10]int
			for _, l := range c.set.Labels {
				if l > 9 {
					t.Fatalf("label %d", l)
				}
				counts[l]++
			}
			for d, k := range counts {
				if k < c.n/20 {
					t.Errorf("digit %d appears %d times", d, k)
				}
			}
		})
	}
}

// TestMNISTDir: a directory of uncompressed IDX files loads to the same
// data as the embedded gzipped copy, and a split missing there is an error.
func TestMNISTDir(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"} {
		f, err := embedded.Open("mnist/" + name + ".gz")
		if err != nil {
			t.Fatal(err)
		}
		idx, err := DecodeIDX(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		var dims []uint32
		for _, d := range idx.Dims {
			dims = append(dims, uint32(d))
		}
		if err := os.WriteFile(filepath.Join(dir, name), idxBytes(8, dims, idx.Data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	test, err := MNISTSplit(dir, "t10k")
	if err != nil {
		t.Fatal(err)
	}
	etest, err := MNISTSplit("", "t10k")
	if err != nil {
		t.Fatal(err)
	}
	if test.Len() != etest.Len() || test.Images[123456] != etest.Images[123456] || test.Labels[999] != etest.Labels[999] {
		t.Fatal("directory copy differs from embedded copy")
	}
	if _, _, err := MNIST(dir); err == nil {
		t.Fatal("directory without the training split accepted")
	}
	if _, err := MNISTSplit("", "validation"); err == nil {
		t.Fatal("unknown split accepted")
	}
}

func TestOrder(t *testing.T) {
	a, b, c := Order(1, 0, 1000), Order(1, 0, 1000), Order(1, 1, 1000)
	seen := make([]bool, 1000)
	for _, v := range a {
		if seen[v] {
			t.Fatalf("%d twice", v)
		}
		seen[v] = true
	}
	same, fixed := true, 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("same (seed, epoch) gave different orders")
		}
		if a[i] != c[i] {
			same = false
		}
		if int(a[i]) == i {
			fixed++
		}
	}
	if same || fixed > 20 {
		t.Fatalf("orders look unshuffled: epochs equal %v, %d fixed points", same, fixed)
	}
}

func TestShareOf(t *testing.T) {
	cases := []struct {
		name                         string
		cursor, n, rank, size, batch int
		want                         Share
	}{
		{"full/rank0", 0, 100, 0, 4, 8, Share{0, 8, 32}},
		{"full/rank3", 32, 100, 3, 4, 8, Share{56, 64, 32}},
		{"tail/rank0", 96, 100, 0, 4, 8, Share{96, 97, 4}},
		{"tail/rank3", 96, 100, 3, 4, 8, Share{99, 100, 4}},
		{"tail-smaller-than-size/rank0", 98, 100, 0, 4, 8, Share{98, 98, 2}},
		{"tail-smaller-than-size/rank1", 98, 100, 1, 4, 8, Share{98, 99, 2}},
		{"tail-smaller-than-size/rank3", 98, 100, 3, 4, 8, Share{99, 100, 2}},
		{"uneven-tail/rank1", 90, 100, 1, 3, 8, Share{93, 96, 10}},
		{"single", 10, 100, 0, 1, 32, Share{10, 42, 32}},
		{"epoch-done", 100, 100, 0, 2, 8, Share{100, 100, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ShareOf(c.cursor, c.n, c.rank, c.size, c.batch); got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// TestSharesCoverEpochOnce: whatever the number of peers at each step, the
// shares of all ranks of all steps cover every position of the epoch
// exactly once.
func TestSharesCoverEpochOnce(t *testing.T) {
	cases := []struct {
		name  string
		n     int
		batch int
		sizes []int // number of peers at successive steps (cycled)
	}{
		{"constant-4", 1000, 16, []int{4}},
		{"4-then-3", 1000, 16, []int{4, 4, 4, 3}},
		{"churn", 997, 7, []int{1, 5, 2, 16, 3, 3, 4}},
		{"tail-smaller-than-peers", 10, 1, []int{3, 16}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			used := make([]int, c.n)
			cursor := 0
			for step := 0; cursor < c.n; step++ {
				size := c.sizes[min(step, len(c.sizes)-1)]
				if step >= len(c.sizes) {
					size = c.sizes[step%len(c.sizes)]
				}
				global := -1
				for r := 0; r < size; r++ {
					s := ShareOf(cursor, c.n, r, size, c.batch)
					if global >= 0 && s.Global != global {
						t.Fatalf("ranks disagree on the global batch")
					}
					global = s.Global
					for p := s.Lo; p < s.Hi; p++ {
						used[p]++
					}
				}
				cursor += global
			}
			for p, k := range used {
				if k != 1 {
					t.Fatalf("position %d used %d times", p, k)
				}
			}
		})
	}
}
