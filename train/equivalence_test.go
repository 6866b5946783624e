package train

import (
	"math"
	"testing"

	"github.com/ringtrain/ringtrain/optim"
)

// equivTol bounds |θ_n − θ_1| after 50 steps, for parameters of magnitude
// about 0.1–1: n-peer and single-process runs differ only in the float32
// summation order of gradients (per-peer partial sums, then the ring's
// reduction order), i.e. relative rounding of about 1e-7 per step that the
// optimizer carries forward. Measured worst case: about 5e-7 (printed with
// -v), so the bound leaves a factor of 20.
const equivTol = 1e-5

// TestPeersEqualOneProcess: n peers with per-peer batch b, over the
// in-memory network, end up (within equivTol) where one process with batch
// n·b on the same samples ends up, and all peers are bitwise identical.
// 50 steps of 32 samples over a 1000-sample set cross a data epoch boundary
// with an uneven tail (1000 = 31·32 + 8).
func TestPeersEqualOneProcess(t *testing.T) {
	set := mnist(t)
	set = set.Subset(1000)
	const steps, global = 50, 32
	cases := []struct {
		name string
		s    setup
	}{
		{"mlp/momentum", setup{tinyMLP, func() optim.Optimizer { return &optim.SGD{Momentum: 0.9} }, 0.05}},
		{"cnn-dropout/nesterov", setup{tinyCNN, func() optim.Optimizer { return &optim.SGD{Momentum: 0.9, Nesterov: true, WeightDecay: 1e-4} }, 0.05}},
		{"cnn-dropout/adamw", setup{tinyCNN, func() optim.Optimizer { return optim.NewAdamW(1e-2) }, 1e-3}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ref := c.s.trainer(t, set, global)
			one := groups(t, []string{"solo"}, 1)[0]
			for i := 0; i < steps; i++ {
				if _, err := ref.Step(ctxT(t), one); err != nil {
					t.Fatal(err)
				}
			}
			want := ref.Model().Params()
			for _, n := range []int{1, 2, 4} {
				gs := groups(t, ids("p", n), 1)
				trs := make([]*Trainer, n)
				for r := range trs {
					trs[r] = c.s.trainer(t, set, global/n)
				}
				parallel(t, n, func(r int) error {
					for i := 0; i < steps; i++ {
						if _, err := trs[r].Step(ctxT(t), gs[r]); err != nil {
							return err
						}
					}
					return nil
				})
				p0 := trs[0].Model().Params()
				for r := 1; r < n; r++ {
					for i, v := range trs[r].Model().Params() {
						if math.Float32bits(v) != math.Float32bits(p0[i]) {
							t.Fatalf("n=%d: rank %d parameter %d = %v, rank 0 has %v", n, r, i, v, p0[i])
						}
					}
				}
				worst := 0.0
				for i, v := range p0 {
					worst = max(worst, math.Abs(float64(v)-float64(want[i])))
				}
				t.Logf("n=%d: max |θ_n − θ_1| = %.3g after %d steps (position %+v)", n, worst, steps, trs[0].Position())
				if worst > equivTol {
					t.Errorf("n=%d: parameters differ from the single process by %.3g > %g", n, worst, equivTol)
				}
				if n == 1 && worst != 0 {
					t.Errorf("n=1 is not bitwise equal to the reference (%.3g)", worst)
				}
				if pos := trs[0].Position(); pos.Step != steps || pos.Epoch != 1 || pos.Cursor != 18*global {
					t.Errorf("position %+v, want step 50, epoch 1, cursor %d", pos, 18*global)
				}
			}
		})
	}
}
