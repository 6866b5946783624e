package scaling

import (
	"context"
	"fmt"
	"math"
	"testing"
	"testing/synctest"

	"github.com/ringtrain/ringtrain/bench/profile"
	"github.com/ringtrain/ringtrain/bench/sim"
)

// TestEmulationMatchesSimulation runs the mem-backed emulation in fake time,
// where compute and reductions take no time and timers are exact, so the
// step must be the simulator's up to rounding (ring.AllReduce splits segments
// by elements, the simulator by bytes; mem rounds transfer times to ns):
// 1e-4 relative. Buckets run concurrently (AllReduceAsync) in the emulation
// and one after another in the simulator; with the links the bottleneck the
// last one finishes at the same time.
func TestEmulationMatchesSimulation(t *testing.T) {
	f, err := profile.Load(testProfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		model, mode string
		n           int
	}{
		{"resnet50", "none", 1},
		{"resnet50", "none", 4},
		{"inception_v3", "none", 8},
		{"resnet50", "bucketed", 4},
		{"vgg16", "bucketed", 8},
	} {
		t.Run(fmt.Sprintf("%s/%s/n=%d", tc.model, tc.mode, tc.n), func(t *testing.T) {
			p, err := f.Find(tc.model, "")
			if err != nil {
				t.Fatal(err)
			}
			c := emuConfig{prof: p, n: tc.n, linkBits: 25e9, scale: 1000, chunkBytes: 16 << 10,
				mode: tc.mode, bucketMB: 25, steps: 2}
			var e sim.Emulated
			synctest.Test(t, func(t *testing.T) {
				if e, err = emulateMem(context.Background(), c); err != nil {
					t.Fatal(err)
				}
			})
			v, err := sim.Validate(p, e, sim.Net{Link: sim.Link{Goodput: 1}})
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(v.RelErr) > 1e-4 {
				t.Fatalf("emulated %.3f images/s, simulated %.3f (error %.2g)", e.MeasuredImagesPerSec, v.PredictedImagesPerSec, v.RelErr)
			}
			t.Logf("emulated %.2f images/s, simulated %.2f (%+.4f%%)", e.MeasuredImagesPerSec, v.PredictedImagesPerSec, 100*v.RelErr)
		})
	}
}
