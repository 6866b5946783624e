package train

import (
	"errors"
	"testing"

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
