package train

import (
	"math"
	"testing"

	"github.com/ringtrain/ringtrain/data"
	"github.com/ringtrain/ringtrain/optim"
)

// TestEvaluateSharded: the sharded evaluation gives the same counts on
// 1, 3 and 4 peers (the test set does not divide evenly by 3), and it
// matches a direct evaluation.
func TestEvaluateSharded(t *testing.T) {
	set := mnist(t)
	test := set.Subset(1001)
	s := setup{tinyMLP, func() optim.Optimizer { return &optim.SGD{} }, 0.1}
	ref := s.trainer(t, set.Subset(100), 8)
	lossSum, correct, err := ref.Model().EvalBatch(test.Images, test.Labels, test.Len())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 3, 4} {
		gs := groups(t, ids("e", n), 1)
		trs := make([]*Trainer, n)
		res := make([]Eval, n)
		for r := range trs {
			trs[r] = s.trainer(t, set.Subset(100), 8)
		}
		parallel(t, n, func(r int) error {
			var err error
			res[r], err = trs[r].Evaluate(ctxT(t), gs[r], test)
			return err
		})
		for r, e := range res {
			if e.Samples != 1001 || e != res[0] {
				t.Fatalf("n=%d rank %d: %+v, rank 0 %+v", n, r, e, res[0])
			}
			if got := int(math.Round(e.Accuracy * 1001)); got != correct {
				t.Fatalf("n=%d: %d correct, direct evaluation %d", n, got, correct)
			}
			if math.Abs(e.Loss-lossSum/1001) > 1e-5 {
				t.Fatalf("n=%d: loss %v, direct %v", n, e.Loss, lossSum/1001)
			}
		}
	}
}

// TestRun: the fixed-group loop trains 4 peers for one epoch on a subset,
// checks digests every 5 steps and evaluates once; accuracy rises well
// above chance.
func TestRun(t *testing.T) {
	all := mnist(t)
	set := all.Subset(2000)
	test := &data.Set{Images: all.Images[5000*784 : 5500*784], Labels: all.Labels[5000:5500], Rows: 28, Cols: 28}
	s := setup{tinyMLP, func() optim.Optimizer { return &optim.SGD{Momentum: 0.9} }, 0.05}
	gs := groups(t, ids("r", 4), 1)
	evals := make([][]Eval, 4)
	steps := make([]int, 4)
	parallel(t, 4, func(r int) error {
		tr := s.trainer(t, set, 16)
		tr.cfg.DigestEvery = 5
		return tr.Run(ctxT(t), gs[r], RunConfig{Epochs: 2, Test: test,
			OnStep:    func(StepStats) { steps[r]++ },
			EvalEvery: 20,
			OnEval:    func(_ StepStats, e Eval) { evals[r] = append(evals[r], e) }})
	})
	// 2000 / 64 = 31.25: 32 steps per epoch; evaluations after steps 20,
	// 32 (epoch end), 40, 60 and 64 (epoch end).
	if steps[0] != 64 || len(evals[0]) != 5 {
		t.Fatalf("%d steps, %d evaluations; want 64 and 5", steps[0], len(evals[0]))
	}
	for r := 1; r < 4; r++ {
		for i, e := range evals[r] {
			if e != evals[0][i] {
				t.Fatalf("rank %d evaluation %d: %+v, rank 0 %+v", r, i, e, evals[0][i])
			}
		}
	}
	if acc := evals[0][4].Accuracy; acc < 0.7 {
		t.Errorf("accuracy after 2 epochs on 2000 samples: %.3f, want > 0.7", acc)
	}
}
