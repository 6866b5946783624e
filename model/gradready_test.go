package model

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestGradReady: during TrainBatch the callback sees every layer with
// parameters once, in GradOrder; each range is already final when
// reported, and the layers after it in GradOrder (below it in the model)
// have not been computed yet, so a reduction started from the callback
// overlaps the rest of backward.
func TestGradReady(t *testing.T) {
	for _, c := range []struct {
		name  string
		build func(uint64) (*Model, error)
	}{{"mlp", NewMLP}, {"cnn", NewCNN}} {
		t.Run(c.name, func(t *testing.T) {
			m, err := c.build(1)
			if err != nil {
				t.Fatal(err)
			}
			const n = 8
			rng := rand.New(rand.NewPCG(2, 2))
			x := randVec(rng, n*m.InShape().Size())
			labels := make([]uint8, n)
			for i := range labels {
				labels[i] = uint8(i % 10)
			}
			m.SetSampleKeys(make([]uint64, n))
			order := m.GradOrder()
			covered := 0
			for k, r := range order {
				covered += r.Len
				if k > 0 && order[k-1].Off != r.Off+r.Len {
					t.Fatalf("GradOrder %d %+v is not adjacent below %+v", k, r, order[k-1])
				}
			}
			if covered != len(m.Params()) {
				t.Fatalf("GradOrder covers %d of %d parameters", covered, len(m.Params()))
			}
			var seen []ParamRange
			var snaps [][]float32
			m.SetGradReady(func(i int, r ParamRange) {
				if i != len(seen) {
					t.Errorf("callback %d reported as position %d", len(seen), i)
				}
				seen = append(seen, r)
				snaps = append(snaps, slices.Clone(m.Grads()[r.Off:r.Off+r.Len]))
				if r.Off > 0 {
					for j, g := range m.Grads()[:r.Off] {
						if g != 0 {
							t.Errorf("when layer %d was reported, gradient %d below it was already %v", r.Layer, j, g)
							break
						}
					}
				}
			})
			if _, _, err := m.TrainBatch(x, labels, n, 1.0/n); err != nil {
				t.Fatal(err)
			}
			m.SetGradReady(nil)
			if !slices.Equal(seen, order) {
				t.Fatalf("reported %+v, want GradOrder %+v", seen, order)
			}
			for k, r := range seen {
				if !slices.Equal(snaps[k], m.Grads()[r.Off:r.Off+r.Len]) {
					t.Fatalf("layer %d's gradients changed after it was reported ready", r.Layer)
				}
			}
		})
	}
}
