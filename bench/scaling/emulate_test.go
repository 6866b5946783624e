package scaling

import (
	"context"
	"fmt"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringtrain/ringtrain/bench/profile"
	"github.com/ringtrain/ringtrain/bench/sim"
	"github.com/ringtrain/ringtrain/collective"
)

// TestEmulationMatchesSimulation runs the mem-backed emulation in fake time,
// where compute and reductions take no time and timers are exact, so the
// step must be the simulator's up to rounding (ring.AllReduce splits segments
// by elements, the simulator by bytes; mem rounds transfer times to ns):
// 1e-4 relative. Buckets run concurrently (AllReduceAsync) in the emulation
// and one after another in the simulator; with the links the bottleneck the
// last one finishes at the same time. Both step drivers: the real trainer
// (train.Trainer.Step over an emumodel model) and the bench's own step.
func TestEmulationMatchesSimulation(t *testing.T) {
	f, err := profile.Load(testProfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		model, mode string
		n           int
		wire        collective.DType
	}{
		{"resnet50", "none", 1, collective.Float32},
		{"resnet50", "none", 4, collective.Float32},
		{"inception_v3", "none", 8, collective.Float32},
		{"resnet50", "bucketed", 4, collective.Float32},
		{"vgg16", "bucketed", 8, collective.Float32},
		{"inception_v3", "bucketed", 4, collective.BFloat16},
		{"resnet50", "none", 3, collective.Float16},
	} {
		for _, driver := range []string{stepTrainer, stepBench} {
			t.Run(fmt.Sprintf("%s/%s/%s/%v/n=%d", driver, tc.model, tc.mode, tc.wire, tc.n), func(t *testing.T) {
				p, err := f.Find(tc.model, "")
				if err != nil {
					t.Fatal(err)
				}
				c := emuConfig{prof: p, n: tc.n, linkBits: 25e9, scale: 1000, chunkBytes: 16 << 10,
					mode: tc.mode, bucketBytes: 25e6, wire: tc.wire, steps: 2, driver: driver}
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
}

// TestEmulatedBucketsAreTheSimulatorsPlan: the Bucketer an emulated peer
// builds and the simulator's bucketed step plan the same buckets (sizes on
// the wire, ready times) from the same scaled timeline, at the trainer's
// default bucket size and at 25 MB; so does the trainer (train.New over
// the emumodel model of the same plan), whose buckets the trainer-driven
// emulation reduces.
func TestEmulatedBucketsAreTheSimulatorsPlan(t *testing.T) {
	f, err := profile.Load(testProfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		model  string
		bucket float64
		scale  float64
		wire   collective.DType
	}{
		{"resnet50", collective.DefaultBucketBytes, 2000, collective.Float32},
		{"inception_v3", collective.DefaultBucketBytes, 2000, collective.BFloat16},
		{"vgg16", 25e6, 100, collective.Float32},
	} {
		for _, driver := range []string{stepTrainer, stepBench} {
			t.Run(fmt.Sprintf("%s/%s/%g/%v", driver, tc.model, tc.bucket, tc.wire), func(t *testing.T) {
				p, err := f.Find(tc.model, "")
				if err != nil {
					t.Fatal(err)
				}
				c := emuConfig{prof: p, n: 2, scale: tc.scale, mode: "bucketed", bucketBytes: tc.bucket, wire: tc.wire, driver: driver}
				plan := c.plan()
				peer, err := newStepper(nil, plan)
				if err != nil {
					t.Fatal(err)
				}
				var got []collective.Bucket
				switch peer := peer.(type) {
				case *trainerPeer:
					got = peer.tr.Buckets()
				case *emuPeer:
					got = peer.b.Buckets()
				}
				st := sim.Step{Design: sim.DesignRing, Overlap: true, BucketBytes: float64(c.scaledBucketBytes()), Wire: tc.wire, Scale: tc.scale}
				want, err := st.Buckets(p.Timeline())
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) || len(got) < 2 {
					t.Fatalf("%d emulated buckets, simulator %d (want ≥ 2)", len(got), len(want))
				}
				for i, b := range got {
					var ready time.Duration
					for _, s := range b.Segments {
						ready = max(ready, plan.Segments[s].Ready)
					}
					if bytes := float64(b.Len * tc.wire.Size()); bytes != want[i].Bytes || math.Abs(ready.Seconds()*1000-want[i].ReadyMs) > 1e-6 {
						t.Fatalf("bucket %d: %v B ready at %v; simulator %v B at %v ms", i, bytes, ready, want[i].Bytes, want[i].ReadyMs)
					}
				}
			})
		}
	}
}
