package emumodel

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringtrain/ringtrain/model"
)

// TestBackwardReportsTensorsAtTheirReadyTimes: in fake time, a training
// batch takes exactly optimizer + forward + backward, and model.Backward
// reports every tensor ready (in the given order, with its length) at the
// start of backward plus its ready time.
func TestBackwardReportsTensorsAtTheirReadyTimes(t *testing.T) {
	tensors := []Tensor{{Len: 3, Ready: 2 * time.Millisecond}, {Len: 1, Ready: 2 * time.Millisecond}, {Len: 5, Ready: 7 * time.Millisecond}}
	tm := Timing{Optimizer: time.Millisecond, Forward: 4 * time.Millisecond, Backward: 9 * time.Millisecond}
	synctest.Test(t, func(t *testing.T) {
		m, err := New(tensors, tm, 1)
		if err != nil {
			t.Fatal(err)
		}
		order := m.GradOrder()
		if len(order) != len(tensors) {
			t.Fatalf("GradOrder has %d entries, want %d", len(order), len(tensors))
		}
		for i, r := range order {
			if r.Len != tensors[i].Len {
				t.Fatalf("GradOrder[%d] has %d floats, want %d", i, r.Len, tensors[i].Len)
			}
		}
		for step := range 2 {
			start := time.Now()
			var got []time.Duration
			m.SetGradReady(func(i int, r model.ParamRange) {
				if i != len(got) || r != order[i] {
					t.Errorf("step %d: ready(%d, %+v), want (%d, %+v)", step, i, r, len(got), order[len(got)])
				}
				got = append(got, time.Since(start))
			})
			x := []float32{0.5, -0.5, 1, 2}
			if _, _, err := m.TrainBatch(x, []uint8{0, 1}, 2, 0.5); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d != 14*time.Millisecond {
				t.Fatalf("step %d took %v, want 14ms", step, d)
			}
			want := []time.Duration{7 * time.Millisecond, 7 * time.Millisecond, 12 * time.Millisecond}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("step %d: tensor %d ready at %v, want %v (all: %v)", step, i, got[i], want[i], got)
				}
			}
		}
	})
}

// TestGradientsDependOnTheBatchOnly: two models with different parameters
// compute the same gradients from the same batch, and a different batch
// gives different ones.
func TestGradientsDependOnTheBatchOnly(t *testing.T) {
	tensors := []Tensor{{Len: 4}, {Len: 3}}
	grads := func(seed uint64, labels []uint8) []float32 {
		m, err := New(tensors, Timing{}, seed)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.TrainBatch([]float32{1, 0, 0, 1}, labels, 2, 1); err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), m.Grads()...)
	}
	a, b, c := grads(1, []uint8{0, 1}), grads(2, []uint8{0, 1}), grads(1, []uint8{1, 1})
	same := func(x, y []float32) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	switch {
	case len(a) != 7:
		t.Fatalf("%d gradients, want 7", len(a))
	case !same(a, b):
		t.Fatalf("seeds 1 and 2 give gradients %v and %v from one batch", a, b)
	case same(a, c):
		t.Fatalf("labels {0,1} and {1,1} give the same gradients %v", a)
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tensors []Tensor
		t       Timing
		want    string
	}{
		{"no tensors", nil, Timing{}, "no gradient tensors"},
		{"empty tensor", []Tensor{{Len: 0}}, Timing{}, "tensor 0: 0 floats"},
		{"ready after backward", []Tensor{{Len: 1, Ready: 2 * time.Millisecond}}, Timing{Backward: time.Millisecond}, "tensor 0: 1 floats ready at 2ms (backward 1ms)"},
		{"negative time", []Tensor{{Len: 1}}, Timing{Forward: -1}, "negative compute time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.tensors, tc.t, 1); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
