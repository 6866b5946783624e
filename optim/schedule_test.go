package optim

import (
	"math"
	"testing"
)

func TestSchedules(t *testing.T) {
	cases := []struct {
		name  string
		s     Schedule
		steps []int64
		want  []float64
	}{
		{"constant", Constant{}, []int64{0, 1000}, []float64{1, 1}},
		{"step", StepDecay{Every: 10, Gamma: 0.5}, []int64{0, 9, 10, 25}, []float64{1, 1, 0.5, 0.25}},
		{"cosine", Cosine{Total: 100, Floor: 0}, []int64{0, 50, 100, 200}, []float64{1, 0.5, 0, 0}},
		{"cosine-floor", Cosine{Total: 100, Floor: 0.5}, []int64{0, 50, 100}, []float64{1, 0.75, 0.5}},
		{"warmup", Warmup{Steps: 4, Start: 0}, []int64{0, 1, 2, 4, 9}, []float64{0, 0.25, 0.5, 1, 1}},
		{"warmup-then-step", Warmup{Steps: 4, Start: 0.5, Then: StepDecay{Every: 2, Gamma: 0.5}}, []int64{0, 2, 4}, []float64{0.5, 0.375, 0.25}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i, step := range c.steps {
				if got := c.s.Factor(step); math.Abs(got-c.want[i]) > 1e-12 {
					t.Errorf("Factor(%d) = %v, want %v", step, got, c.want[i])
				}
			}
		})
	}
}

// TestScalerLinearRule: 4 peers × 64 from base 0.1 at batch 64 give 0.4;
// losing a peer drops the rate at once; a peer joining ramps it back over
// the warmup steps.
func TestScalerLinearRule(t *testing.T) {
	s := &Scaler{BaseLR: 0.1, BaseBatch: 64, Warmup: 4}
	steps := []struct {
		step  int64
		batch int
		want  float64
	}{
		{0, 256, 0.4}, {1, 256, 0.4},
		{2, 192, 0.3}, {3, 192, 0.3},
		{4, 256, 0.3}, {5, 256, 0.325}, {6, 256, 0.35}, {7, 256, 0.375}, {8, 256, 0.4}, {20, 256, 0.4},
	}
	for _, c := range steps {
		if got := s.LR(c.step, c.batch, nil); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("step %d batch %d: lr %v, want %v", c.step, c.batch, got, c.want)
		}
	}
}

func TestScalerStateRoundTrip(t *testing.T) {
	a := &Scaler{BaseLR: 0.1, BaseBatch: 64, Warmup: 10}
	a.LR(0, 128, nil)
	a.LR(5, 256, nil)
	blob, _ := a.MarshalBinary()
	b := &Scaler{BaseLR: 0.1, BaseBatch: 64, Warmup: 10}
	if err := b.UnmarshalBinary(blob); err != nil {
		t.Fatal(err)
	}
	for step := int64(6); step < 20; step++ {
		if x, y := a.LR(step, 256, Cosine{Total: 30}), b.LR(step, 256, Cosine{Total: 30}); x != y {
			t.Fatalf("step %d: %v vs %v", step, x, y)
		}
	}
	if err := b.UnmarshalBinary(blob[:5]); err == nil {
		t.Fatal("short state accepted")
	}
}
