package train

import (
	"errors"
	"math"
	"testing"

	"github.com/ringtrain/ringtrain/data"
	"github.com/ringtrain/ringtrain/optim"
)

func adamSetup() setup {
	return setup{tinyCNN, func() optim.Optimizer { return optim.NewAdamW(1e-2) }, 1e-3}
}

// TestStateRoundTrip: a fresh trainer restored from a blob taken mid-epoch
// continues bitwise identically to the original.
func TestStateRoundTrip(t *testing.T) {
	set := mnist(t)
	set = set.Subset(300)
	s := adamSetup()
	solo := groups(t, []string{"a"}, 1)[0]
	a := s.trainer(t, set, 32)
	for i := 0; i < 5; i++ {
		if _, err := a.Step(ctxT(t), solo); err != nil {
			t.Fatal(err)
		}
	}
	blob, err := a.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	m, _ := tinyCNN(1234) // different initial parameters
	b, err := New(Config{Model: m, Optimizer: optim.NewAdamW(1e-2), LR: optim.Scaler{BaseLR: 1e-3, BaseBatch: 32}, Train: set, BatchPerPeer: 32})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.UnmarshalState(blob); err != nil {
		t.Fatal(err)
	}
	if a.Position() != b.Position() || a.Digest() != b.Digest() {
		t.Fatalf("restored at %+v digest %x, original %+v digest %x", b.Position(), b.Digest(), a.Position(), a.Digest())
	}
	for i := 0; i < 10; i++ { // crosses the end of the 300-sample epoch
		sa, err := a.Step(ctxT(t), solo)
		if err != nil {
			t.Fatal(err)
		}
		sb, err := b.Step(ctxT(t), solo)
		if err != nil {
			t.Fatal(err)
		}
		if sa.LR != sb.LR || sa.Share != sb.Share || sa.Loss != sb.Loss {
			t.Fatalf("step %d: %+v vs %+v", i, sa, sb)
		}
	}
	if a.Digest() != b.Digest() {
		t.Fatal("restored trainer diverged")
	}
}

func TestStateRejects(t *testing.T) {
	set := mnist(t)
	set = set.Subset(300)
	s := adamSetup()
	a := s.trainer(t, set, 32)
	solo := groups(t, []string{"a"}, 1)[0]
	a.Step(ctxT(t), solo)
	good, _ := a.MarshalState()
	mlp := setup{tinyMLP, s.opt, 1e-3}.trainer(t, set, 32)
	sgd := setup{tinyCNN, func() optim.Optimizer { return &optim.SGD{Momentum: 0.9} }, 1e-3}.trainer(t, set, 32)
	flip := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 0xff
		return b
	}
	cases := []struct {
		name string
		into *Trainer
		blob []byte
	}{
		{"other-architecture", mlp, good},
		{"other-optimizer", sgd, good},
		{"empty", s.trainer(t, set, 32), nil},
		{"bad-magic", s.trainer(t, set, 32), flip(0)},
		{"bad-version", s.trainer(t, set, 32), flip(4)},
		{"cursor-out-of-range", s.trainer(t, set, 32), flip(38 + 2*8 + 7)},
		{"parameter-count", s.trainer(t, set, 32), flip(38 + 4*8)},
		{"truncated", s.trainer(t, set, 32), good[:len(good)-3]},
		{"trailing", s.trainer(t, set, 32), append(append([]byte(nil), good...), 1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := c.into.Digest()
			pos := c.into.Position()
			if err := c.into.UnmarshalState(c.blob); !errors.Is(err, ErrState) {
				t.Fatalf("err = %v, want ErrState", err)
			}
			if c.into.Digest() != before || c.into.Position() != pos {
				t.Fatal("a rejected blob changed the trainer")
			}
		})
	}
}

func FuzzUnmarshalState(f *testing.F) {
	set := mnist(f)
	set = set.Subset(50)
	s := setup{tinyMLP, func() optim.Optimizer { return &optim.Adam{} }, 1e-3}
	a := s.trainer(f, set, 8)
	solo := groups(f, []string{"a"}, 1)[0]
	a.Step(ctxT(f), solo)
	good, _ := a.MarshalState()
	f.Add(good)
	f.Add(good[:100])
	f.Fuzz(func(t *testing.T, b []byte) {
		tr := s.trainer(t, set, 8)
		if err := tr.UnmarshalState(b); err != nil {
			return
		}
		again, err := tr.MarshalState()
		if err != nil || string(again) != string(b) {
			t.Fatal("accepted blob does not round-trip")
		}
	})
}

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

func TestTrainerFingerprint(t *testing.T) {
	set := mnist(t).Subset(100)
	base := setup{tinyMLP, func() optim.Optimizer { return &optim.SGD{} }, 0.1}
	ref := base.trainer(t, set, 8).Fingerprint()
	cases := []struct {
		name string
		tr   *Trainer
		same bool
	}{
		{"same-config", base.trainer(t, set, 8), true},
		{"other-batch", base.trainer(t, set, 16), false},
		{"other-optimizer", setup{tinyMLP, func() optim.Optimizer { return &optim.Adam{} }, 0.1}.trainer(t, set, 8), false},
		{"other-model", setup{tinyCNN, func() optim.Optimizer { return &optim.SGD{} }, 0.1}.trainer(t, set, 8), false},
		{"other-lr", setup{tinyMLP, func() optim.Optimizer { return &optim.SGD{} }, 0.2}.trainer(t, set, 8), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.tr.Fingerprint() == ref; got != c.same {
				t.Errorf("equal = %v, want %v", got, c.same)
			}
		})
	}
}
