package train

import (
	"fmt"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/optim"
)

// BenchmarkStepBucketed: steps/s of 4 peers over the in-memory network,
// MLP and CNN (the trainer's models), unbucketed and with several bucket
// sizes, fp32 and bf16 on the wire. On a machine with fewer cores than
// peers, compute and communication share the CPUs, so overlap gains little
// here; the figure that matters is on shaped links.
func BenchmarkStepBucketed(b *testing.B) {
	set := mnist(b).Subset(4096)
	const n, perPeer = 4, 32
	for _, mc := range []struct {
		name  string
		build func(uint64) (*model.Model, error)
	}{{"mlp", model.NewMLP}, {"cnn", model.NewCNN}} {
		for _, wire := range []collective.DType{collective.Float32, collective.BFloat16} {
			for _, bb := range []int{0, 256 << 10, 1 << 20, collective.DefaultBucketBytes} {
				b.Run(fmt.Sprintf("%s/wire=%v/bucket=%dKiB", mc.name, wire, bb>>10), func(b *testing.B) {
					gs := groups(b, ids("p", n), 1)
					trs := make([]*Trainer, n)
					for r := range trs {
						m, err := mc.build(1)
						if err != nil {
							b.Fatal(err)
						}
						if trs[r], err = New(Config{Model: m, Optimizer: &optim.SGD{Momentum: 0.9}, LR: optim.Scaler{BaseLR: 0.01, BaseBatch: 32},
							Train: set, BatchPerPeer: perPeer, Seed: 1, BucketBytes: bb, Wire: wire}); err != nil {
							b.Fatal(err)
						}
					}
					step := func() {
						parallel(b, n, func(r int) error { _, err := trs[r].Step(ctxT(b), gs[r]); return err })
					}
					step()
					b.ResetTimer()
					start := time.Now()
					for b.Loop() {
						step()
					}
					b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "steps/s")
					b.ReportMetric(float64(len(trs[0].Buckets())), "buckets")
				})
			}
		}
	}
}
