package model_test

import (
	"math/rand/v2"
	"testing"

	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/optim"
)

// BenchmarkTrainStep times one training step (forward, loss, backward and
// an SGD-momentum update) of the ready models at batch 64 on random
// MNIST-shaped inputs, and reports samples/s. Compare with
// bench/torch_throughput.py; build with -tags openblas for OpenBLAS.
func BenchmarkTrainStep(b *testing.B) {
	cases := []struct {
		name  string
		build func(uint64) (*model.Model, error)
	}{{"mlp", model.NewMLP}, {"cnn", model.NewCNN}}
	const batch = 64
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			m, err := c.build(1)
			if err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			x := make([]float32, batch*m.InShape().Size())
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			labels := make([]uint8, batch)
			keys := make([]uint64, batch)
			for i := range labels {
				labels[i] = uint8(rng.IntN(10))
				keys[i] = uint64(i)
			}
			m.SetSampleKeys(keys)
			opt := &optim.SGD{Momentum: 0.9}
			step := func() {
				if _, _, err := m.TrainBatch(x, labels, batch, 1.0/batch); err != nil {
					b.Fatal(err)
				}
				if err := opt.Update(m.Params(), m.Grads(), 0.01); err != nil {
					b.Fatal(err)
				}
			}
			step() // warm-up: buffers and optimizer state
			b.ResetTimer()
			for b.Loop() {
				step()
			}
			b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "samples/s")
		})
	}
}
