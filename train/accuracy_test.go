package train

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/data"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/optim"
)

// TestAccuracyMNIST trains the ready models on the full MNIST training set
// with 4 peers over the in-memory network and evaluates on the real test
// set after every epoch. It is slow, so it runs only when
// RINGTRAIN_ACCURACY names the models ("mlp", "cnn" or "mlp,cnn"), e.g.
//
//	RINGTRAIN_ACCURACY=mlp go test -run TestAccuracyMNIST -v -timeout 1h ./train
//	RINGTRAIN_ACCURACY=cnn OPENBLAS_NUM_THREADS=1 go test -tags openblas -run TestAccuracyMNIST -v -timeout 2h ./train
//
// The targets are MLP ≥ 98.0% and CNN ≥ 99.0% test accuracy within the
// stated number of epochs.
func TestAccuracyMNIST(t *testing.T) {
	which := os.Getenv("RINGTRAIN_ACCURACY")
	if which == "" {
		t.Skip("set RINGTRAIN_ACCURACY=mlp,cnn to run the full MNIST accuracy runs")
	}
	cases := []struct {
		name    string
		build   func(uint64) (*model.Model, error)
		lr, wd  float64
		perPeer int
		epochs  int
		target  float64
	}{
		{"mlp", model.NewMLP, 0.1, 1e-4, 32, 15, 0.980},
		{"cnn", model.NewCNN, 0.05, 5e-4, 32, 8, 0.990},
	}
	train, test, err := data.MNIST("")
	if err != nil {
		t.Fatal(err)
	}
	const peers = 4
	for _, c := range cases {
		if !strings.Contains(which, c.name) {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			gs := groups(t, ids("acc", peers), 1)
			global := peers * c.perPeer
			stepsPerEpoch := int64((train.Len() + global - 1) / global)
			total := stepsPerEpoch * int64(c.epochs)
			trs := make([]*Trainer, peers)
			for r := range trs {
				m, err := c.build(1)
				if err != nil {
					t.Fatal(err)
				}
				trs[r], err = New(Config{
					Model:        m,
					Optimizer:    &optim.SGD{Momentum: 0.9, Nesterov: true, WeightDecay: float32(c.wd)},
					LR:           optim.Scaler{BaseLR: c.lr, BaseBatch: global},
					Schedule:     optim.Warmup{Steps: 200, Start: 0.1, Then: optim.Cosine{Total: total}},
					Train:        train,
					BatchPerPeer: c.perPeer,
					Seed:         1,
					DigestEvery:  100,
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			best, reached := 0.0, 0
			// The whole run's deadline; each collective still has its own
			// (collective.Config.Timeout).
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Minute)
			defer cancel()
			parallel(t, peers, func(r int) error {
				rc := RunConfig{Epochs: c.epochs, Test: test}
				if r == 0 {
					rc.OnEval = func(st StepStats, e Eval) {
						epoch := st.Epoch
						t.Logf("%s: epoch %d: test accuracy %.2f%% loss %.4f (%d samples), %.0f s elapsed",
							c.name, epoch+1, 100*e.Accuracy, e.Loss, e.Samples, time.Since(start).Seconds())
						best = max(best, e.Accuracy)
						if reached == 0 && e.Accuracy >= c.target {
							reached = int(epoch) + 1
						}
					}
				}
				return trs[r].Run(ctx, gs[r], rc)
			})
			t.Logf("%s: %s, %d peers × batch %d: best %.2f%%, target %.1f%% first reached at epoch %d of %d, %.0f s",
				c.name, model.BLASName, peers, c.perPeer, 100*best, 100*c.target, reached, c.epochs, time.Since(start).Seconds())
			if reached == 0 {
				t.Errorf("%s: best test accuracy %.2f%% < %.1f%% within %d epochs", c.name, 100*best, 100*c.target, c.epochs)
			}
		})
	}
}
