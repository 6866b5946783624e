package allreduce

import (
	"bytes"
	"strings"
	"testing"
)

func TestBusBandwidth(t *testing.T) {
	cases := []struct {
		name          string
		n             int
		bytes         int64
		times         []float64
		median, alg   float64
		bus, cpuPerGB float64
		cpu           float64
	}{
		// 1 GiB in 2 s over 2 peers: algbw 2^29 B/s, busbw ×2(1)/2 = ×1;
		// traffic 2 peers·1 GiB·1·3 iterations = 6 GiB for 3 CPU-s.
		{"n=2", 2, 1 << 30, []float64{2, 3, 1}, 2, 1 << 29, 1 << 29, 0.5, 3},
		// n=4: median of {1,1,3,4} is 2; busbw = algbw·1.5; traffic
		// 4·1 GiB·1.5 = 6 GiB per iteration, 24 GiB for 12 CPU-s.
		{"n=4 even count", 4, 1 << 30, []float64{1, 4, 3, 1}, 2, 1 << 29, 1.5 * (1 << 29), 0.5, 12},
		// n=8: factor 2·7/8 = 1.75.
		{"n=8", 8, 1 << 20, []float64{0.5}, 0.5, 2 << 20, 3.5 * (1 << 20), 0, 0},
		// A single peer moves nothing over the network.
		{"n=1", 1, 1 << 20, []float64{1}, 1, 1 << 20, 0, 0, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRow("ringtrain", "mem", "loopback", c.n, c.bytes, c.times, c.cpu)
			if r.Median != c.median || r.AlgBW != c.alg || r.BusBW != c.bus || r.CPUPerGiB != c.cpuPerGB {
				t.Fatalf("median %v algbw %v busbw %v cpu/GiB %v; want %v %v %v %v",
					r.Median, r.AlgBW, r.BusBW, r.CPUPerGiB, c.median, c.alg, c.bus, c.cpuPerGB)
			}
			if r.Count != c.bytes/4 {
				t.Fatalf("count %d", r.Count)
			}
		})
	}
}

func TestSlowestRank(t *testing.T) {
	got := slowest([][]float64{{1, 5, 2}, {3, 1, 2}, {2, 2, 7}})
	want := []float64{3, 5, 7}
	if len(got) != len(want) {
		t.Fatalf("%v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("slowest = %v, want %v", got, want)
		}
	}
}

func TestParseSizes(t *testing.T) {
	cases := []struct {
		name   string
		spec   string
		factor int64
		want   []int64
		ok     bool
	}{
		{"single", "16MiB", 4, []int64{16 << 20}, true},
		{"range", "1KiB:16KiB", 4, []int64{1024, 4096, 16384}, true},
		{"range factor 2", "1KiB:4KiB", 2, []int64{1024, 2048, 4096}, true},
		{"list", "1024,2MiB", 4, []int64{1024, 2 << 20}, true},
		{"rounded to elements", "1030", 4, []int64{1028}, true},
		{"below one element", "3", 4, nil, false},
		{"garbage", "lots", 4, nil, false},
		{"bad factor", "1KiB", 1, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseSizes(c.spec, c.factor)
			if (err == nil) != c.ok || len(got) != len(c.want) {
				t.Fatalf("parseSizes(%q) = %v, %v; want %v", c.spec, got, err, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("parseSizes(%q) = %v, want %v", c.spec, got, c.want)
				}
			}
		})
	}
}

func TestTableAndRatios(t *testing.T) {
	rows := []Row{
		newRow("ringtrain", "quic", "40mbit", 2, 1<<20, []float64{1}, 0),
		newRow("ringtrain", "quic", "40mbit", 4, 1<<20, []float64{1.5}, 0),
		newRow("gloo", "tcp", "40mbit", 4, 1<<20, []float64{3}, 0),
		newRow("ringtrain", "quic", "40mbit", 4, 1<<20, []float64{0.75}, 0),
	}
	rows[3].Wire, rows[3].BucketBytes = "bf16", 4<<20
	var b bytes.Buffer
	writeTable(&b, rows)
	writeRatios(&b, rows)
	out := b.String()
	for _, want := range []string{
		"ringtrain/gloo busbw 2.000",
		// n=4 vs n=2: busbw (1.5/1.5)/(1/1) = 1, time 1.5.
		"ringtrain n=4 vs n=2: busbw 1.000, time 1.500",
		// The bf16 row is labelled and compared with ringtrain's fp32 row.
		"ringtrain-bf16/b4MiB  quic",
		"ringtrain-bf16/b4MiB vs ringtrain busbw 2.000",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
