package train

import (
	"errors"
	"math"
	"testing"

	"github.com/ringtrain/ringtrain/optim"
)

// TestShrinkFourToThree: 4 peers train part of a data epoch, one leaves;
// the 3 survivors continue from the state blob of one of them on a new
// group (membership epoch 2). Every sample of the data epoch is used
// exactly once, the peers stay bitwise identical and the digest check
// passes on both groups.
func TestShrinkFourToThree(t *testing.T) {
	set := mnist(t)
	set = set.Subset(1000)
	s := setup{tinyCNN, func() optim.Optimizer { return &optim.SGD{Momentum: 0.9} }, 0.05}
	const b, before = 16, 7 // 7 steps × 64 = 448 samples with 4 peers
	used := make([]int, set.Len())
	record := func(st StepStats) {
		if st.Epoch == 0 {
			for _, idx := range st.Samples {
				used[idx]++
			}
		}
	}
	four := groups(t, ids("p", 4), 1)
	trs := make([]*Trainer, 4)
	for r := range trs {
		trs[r] = s.trainer(t, set, b)
	}
	stats := make([][]StepStats, 4)
	parallel(t, 4, func(r int) error {
		for i := 0; i < before; i++ {
			st, err := trs[r].Step(ctxT(t), four[r])
			if err != nil {
				return err
			}
			st.Samples = append([]int32(nil), st.Samples...)
			stats[r] = append(stats[r], st)
		}
		return trs[r].CheckDigest(ctxT(t), four[r])
	})
	for r := range stats {
		for _, st := range stats[r] {
			record(st)
		}
	}
	// p3 leaves; p0 serves the state; the survivors are fresh processes
	// (differently initialised models) restored from it.
	blob, err := trs[0].MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	survivors := []string{"p0", "p1", "p2"}
	three := groups(t, survivors, 2)
	next := make([]*Trainer, 3)
	for r := range next {
		m, _ := tinyCNN(uint64(100 + r))
		tr, err := New(Config{Model: m, Optimizer: &optim.SGD{Momentum: 0.9}, LR: optim.Scaler{BaseLR: 0.05, BaseBatch: 32}, Train: set, BatchPerPeer: b, Seed: 99, EvalBatch: 250})
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.UnmarshalState(blob); err != nil {
			t.Fatal(err)
		}
		next[r] = tr
	}
	stats = make([][]StepStats, 3)
	parallel(t, 3, func(r int) error {
		for {
			st, err := next[r].Step(ctxT(t), three[r])
			if err != nil {
				return err
			}
			st.Samples = append([]int32(nil), st.Samples...)
			stats[r] = append(stats[r], st)
			if st.EpochDone {
				return next[r].CheckDigest(ctxT(t), three[r])
			}
		}
	})
	for r := range stats {
		for _, st := range stats[r] {
			record(st)
		}
	}
	// 552 samples left: 11 steps of 48, then a tail of 24 split 8/8/8.
	if got := len(stats[0]); got != 12 {
		t.Errorf("3 peers took %d steps to finish the epoch, want 12", got)
	}
	if last := stats[2][len(stats[2])-1]; last.Share.Global != 24 || last.Share.Len() != 8 {
		t.Errorf("tail step %+v, want 8 of 24 samples", last.Share)
	}
	for idx, k := range used {
		if k != 1 {
			t.Fatalf("sample %d used %d times in data epoch 0", idx, k)
		}
	}
	p0 := next[0].Model().Params()
	for r := 1; r < 3; r++ {
		for i, v := range next[r].Model().Params() {
			if math.Float32bits(v) != math.Float32bits(p0[i]) {
				t.Fatalf("rank %d diverged at parameter %d", r, i)
			}
		}
	}
	if pos := next[0].Position(); pos.Epoch != 1 || pos.Cursor != 0 || pos.Step != before+12 {
		t.Errorf("position %+v, want step %d at the start of data epoch 1", pos, before+12)
	}
}

// TestDigestNamesDivergentPeer: one peer's parameters are perturbed by one
// ulp; every peer's check names that peer by rank and member ID.
func TestDigestNamesDivergentPeer(t *testing.T) {
	set := mnist(t)
	set = set.Subset(100)
	s := setup{tinyMLP, func() optim.Optimizer { return &optim.SGD{} }, 0.1}
	cases := []struct {
		name    string
		n, bad  int
		wantErr bool
	}{
		{"identical", 4, -1, false},
		{"rank2-of-4", 4, 2, true},
		{"rank0-of-3", 3, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			members := ids("node-", c.n)
			gs := groups(t, members, 5)
			trs := make([]*Trainer, c.n)
			for r := range trs {
				trs[r] = s.trainer(t, set, 4)
			}
			if c.bad >= 0 {
				p := trs[c.bad].Model().Params()
				p[17] = math.Nextafter32(p[17], 1)
			}
			errs := make([]error, c.n)
			parallel(t, c.n, func(r int) error {
				errs[r] = trs[r].CheckDigest(ctxT(t), gs[r])
				return nil
			})
			for r, err := range errs {
				var de *DivergenceError
				if !c.wantErr {
					if err != nil {
						t.Fatalf("rank %d: %v", r, err)
					}
					continue
				}
				if !errors.As(err, &de) || len(de.Peers) != 1 || de.Peers[0].Rank != c.bad || de.Peers[0].Member != members[c.bad] {
					t.Fatalf("rank %d: err = %v, want a divergence naming rank %d (%s)", r, err, c.bad, members[c.bad])
				}
				if de.Peers[0].Digest != trs[c.bad].Digest() || de.Expected != trs[(c.bad+1)%c.n].Digest() {
					t.Fatalf("rank %d: digests in %v do not match the peers'", r, err)
				}
			}
		})
	}
}
