package train

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/data"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/optim"
	"github.com/ringtrain/ringtrain/transport/mem"
)

// groups builds one collective.Group per member over a fresh in-memory
// network, as membership epoch epoch.
func groups(t testing.TB, ids []string, epoch uint64) []*collective.Group {
	t.Helper()
	net := mem.NewNetwork()
	eps, err := net.Endpoints(ids...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, e := range eps {
			e.Close()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gs := make([]*collective.Group, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, e := range eps {
		wg.Go(func() {
			gs[i], errs[i] = collective.New(ctx, collective.Config{Endpoint: e, Members: ids, Epoch: epoch, Timeout: time.Minute})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return gs
}

func ids(prefix string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return s
}

// parallel runs fn for every rank concurrently and fails on any error.
func parallel(t testing.TB, n int, fn func(r int) error) {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := 0; r < n; r++ {
		wg.Go(func() { errs[r] = fn(r) })
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// tinyCNN exercises every layer kind, dropout included, at a size the race
// detector runs quickly.
func tinyCNN(seed uint64) (*model.Model, error) {
	m, err := model.NewSequential(model.Shape{1, 28, 28},
		model.Conv2DSpec(4, 5, 1, 0, model.HeNormal), model.ReLUSpec(), model.MaxPool2DSpec(2, 2),
		model.Conv2DSpec(6, 5, 2, 1, model.HeNormal), model.ReLUSpec(), model.FlattenSpec(),
		model.DenseSpec(32, model.HeNormal), model.ReLUSpec(), model.DropoutSpec(0.25),
		model.DenseSpec(10, model.XavierUniform))
	if err != nil {
		return nil, err
	}
	m.Init(seed)
	return m, nil
}

func tinyMLP(seed uint64) (*model.Model, error) {
	m, err := model.NewSequential(model.Shape{784},
		model.DenseSpec(32, model.HeNormal), model.ReLUSpec(), model.DenseSpec(10, model.XavierUniform))
	if err != nil {
		return nil, err
	}
	m.Init(seed)
	return m, nil
}

// mnist loads the embedded MNIST test split, from which the tests take
// small training and evaluation subsets (decoding the 60000-sample training
// split would dominate the run time under the race detector).
func mnist(t testing.TB) *data.Set {
	t.Helper()
	set, err := data.MNISTSplit("", "t10k")
	if err != nil {
		t.Fatal(err)
	}
	return set
}

type setup struct {
	build func(uint64) (*model.Model, error)
	opt   func() optim.Optimizer
	lr    float64
}

func (s setup) trainer(t testing.TB, set *data.Set, b int) *Trainer {
	t.Helper()
	m, err := s.build(42)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Config{Model: m, Optimizer: s.opt(), LR: optim.Scaler{BaseLR: s.lr, BaseBatch: 32}, Train: set, BatchPerPeer: b, Seed: 7, EvalBatch: 250})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
