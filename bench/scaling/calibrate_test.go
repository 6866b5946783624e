package scaling

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/bench/sim"
	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/transport/mem"
)

func TestCalibPoints(t *testing.T) {
	cs := calibSpec{Floats: []int{64, 1024}, Repeats: 3}
	for _, tc := range []struct {
		name    string
		res     calibResult
		want    []sim.RingPoint
		wantErr bool
	}{
		{"medians in bytes", calibResult{Sec: [][]float64{{0.003, 0.001, 0.002}, {0.5, 0.3, 0.4}}},
			[]sim.RingPoint{{Bytes: 256, Peers: 4, Sec: 0.002}, {Bytes: 4096, Peers: 4, Sec: 0.4}}, false},
		{"upper median of an even count", calibResult{Sec: [][]float64{{0.004, 0.001}, {0.2, 0.1}}},
			[]sim.RingPoint{{Bytes: 256, Peers: 4, Sec: 0.004}, {Bytes: 4096, Peers: 4, Sec: 0.2}}, false},
		{"a size missing", calibResult{Sec: [][]float64{{0.001}}}, nil, true},
		{"no time for a size", calibResult{Sec: [][]float64{{0.001}, {}}}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := calibPoints(4, cs, tc.res)
			if (err != nil) != tc.wantErr {
				t.Fatalf("calibPoints = %v, %v; want error %v", got, err, tc.wantErr)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("calibPoints = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRingCalib runs the microbenchmark's all-reduces on three peers over
// transport/mem: every peer returns a time per repeat of every size (and
// ringCalib has checked every average).
func TestRingCalib(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ids := []string{"g0", "g1", "g2"}
	eps, err := mem.NewNetwork().Endpoints(ids...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, e := range eps {
			e.Close()
		}
	}()
	cs := calibSpec{Floats: []int{3, 64, 1000}, Repeats: 2}
	res := make([]calibResult, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for r := range ids {
		wg.Go(func() {
			g, err := collective.New(ctx, collective.Config{Endpoint: eps[r], Members: ids, ChunkBytes: 1024})
			if err == nil {
				res[r], err = ringCalib(ctx, g, cs)
			}
			errs[r] = err
		})
	}
	wg.Wait()
	for r := range ids {
		if errs[r] != nil {
			t.Fatalf("rank %d: %v", r, errs[r])
		}
		if len(res[r].Sec) != len(cs.Floats) {
			t.Fatalf("rank %d: %d sizes timed, want %d", r, len(res[r].Sec), len(cs.Floats))
		}
		for i, ts := range res[r].Sec {
			if len(ts) != cs.Repeats {
				t.Fatalf("rank %d size %d: %d times, want %d", r, cs.Floats[i], len(ts), cs.Repeats)
			}
			for _, s := range ts {
				if !(s > 0) {
					t.Fatalf("rank %d size %d: time %v", r, cs.Floats[i], s)
				}
			}
		}
	}
}
