package train

import (
	"testing"

	"github.com/ringtrain/ringtrain/optim"
)

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
