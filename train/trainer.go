package train

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/data"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/optim"
)

// Config configures a Trainer. Every peer of a job must use the same
// configuration (the model fingerprint and the state blob check the parts
// that matter for correctness).
type Config struct {
	Model     *model.Model
	Optimizer optim.Optimizer
	// LR gives the learning rate: BaseLR at BaseBatch, scaled linearly with
	// the global batch, warmed up after a change of the number of peers.
	LR optim.Scaler
	// Schedule multiplies the learning rate by step (nil: constant).
	Schedule optim.Schedule
	Train    *data.Set
	// BatchPerPeer is the per-peer minibatch b; a step consumes up to
	// Size()·b samples.
	BatchPerPeer int
	// Seed fixes the data order of every data epoch and is carried in the
	// state blob.
	Seed uint64
	// DigestEvery: Run compares parameter digests across peers every this
	// many steps (0: never).
	DigestEvery int
	// EvalBatch is the evaluation minibatch (default 256). Layer buffers
	// grow to the largest batch seen and stay, so a large evaluation batch
	// costs memory for the rest of the run (the CNN's forward buffers come
	// to about 99,000 floats, 0.4 MB, per sample).
	EvalBatch int
	// BucketBytes > 0 reduces the gradients in buckets of about this many
	// (float32) bytes, each launched while backward still computes the
	// layers below it (collective.Bucketer); 0 or negative: one all-reduce
	// of the whole gradient arena after backward.
	BucketBytes int
	// Wire is the wire dtype of the gradient all-reduce (default float32).
	Wire collective.DType
}

// Trainer holds one peer's model, optimizer and position in the data.
type Trainer struct {
	cfg    Config
	step   uint64
	epoch  uint64 // data epoch
	cursor int    // global sample offset within the data epoch

	order      []int32 // order of data epoch orderEpoch
	orderEpoch uint64
	x          []float32
	labels     []uint8
	keys       []uint64
	stats      [3]float32
	digest     digestScratch
	bucketer   *collective.Bucketer // nil: unbucketed
}

// New checks cfg and returns a Trainer at step 0 of data epoch 0.
func New(cfg Config) (*Trainer, error) {
	switch {
	case cfg.Model == nil || cfg.Optimizer == nil || cfg.Train == nil:
		return nil, errors.New("train: Config needs Model, Optimizer and Train")
	case cfg.BatchPerPeer <= 0:
		return nil, fmt.Errorf("train: BatchPerPeer %d must be positive", cfg.BatchPerPeer)
	case cfg.Train.Len() == 0:
		return nil, errors.New("train: empty training set")
	case cfg.Train.SampleSize() != cfg.Model.InShape().Size():
		return nil, fmt.Errorf("train: samples of %d values, model takes %v", cfg.Train.SampleSize(), cfg.Model.InShape())
	}
	if cfg.EvalBatch <= 0 {
		cfg.EvalBatch = 256
	}
	if cfg.Schedule == nil {
		cfg.Schedule = optim.Constant{}
	}
	t := &Trainer{cfg: cfg}
	if cfg.BucketBytes > 0 {
		// One segment per layer, in the order backward finishes them.
		var segs []collective.Segment
		for _, r := range cfg.Model.GradOrder() {
			segs = append(segs, collective.Segment{Off: r.Off, Len: r.Len})
		}
		b, err := collective.NewBucketer(cfg.Model.Grads(), segs, collective.BucketConfig{BucketBytes: cfg.BucketBytes, Op: collective.Sum, Wire: cfg.Wire})
		if err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		t.bucketer = b
	}
	return t, nil
}

// Buckets is the gradient bucket plan (nil when unbucketed).
func (t *Trainer) Buckets() []collective.Bucket {
	if t.bucketer == nil {
		return nil
	}
	return t.bucketer.Buckets()
}

// Model returns the trained model.
func (t *Trainer) Model() *model.Model { return t.cfg.Model }

// Position is where a trainer stands: completed steps, data epoch and the
// cursor within it.
type Position struct {
	Step   uint64
	Epoch  uint64
	Cursor int
}

// Position returns the trainer's current position.
func (t *Trainer) Position() Position { return Position{t.step, t.epoch, t.cursor} }

// orderFor returns the sample order of the current data epoch.
func (t *Trainer) orderFor() []int32 {
	if t.order == nil || t.orderEpoch != t.epoch {
		t.order = data.Order(t.cfg.Seed, t.epoch, t.cfg.Train.Len())
		t.orderEpoch = t.epoch
	}
	return t.order
}

// StepStats reports one completed step.
type StepStats struct {
	Step  uint64 // step number (0-based) that was applied
	Epoch uint64 // data epoch the samples came from
	Share data.Share
	// Samples are this peer's sample indices in the data set (valid until
	// the next Step).
	Samples []int32
	LR      float64
	// Loss is this peer's mean loss over its share (NaN-free; 0 if empty).
	Loss      float64
	EpochDone bool // the step consumed the last samples of its data epoch
	// CommWait is the time the step spent waiting for the gradient
	// reduction after backward (with buckets, what overlap did not hide);
	// CommBytes is the gradient arena's size in float32 bytes.
	CommWait  time.Duration
	CommBytes int
}

// Step runs one synchronous training step over comm: forward and backward on
// this peer's share, a Sum all-reduce of the gradients (pre-scaled by
// 1/Global), and the optimizer update. On error the parameters are
// unchanged (the failure happens before the update) but the gradient arena
// is not; the step can be retried on a new communicator.
func (t *Trainer) Step(ctx context.Context, comm Comm) (StepStats, error) {
	n := t.cfg.Train.Len()
	rank, size := comm.Rank(), comm.Size()
	sh := data.ShareOf(t.cursor, n, rank, size, t.cfg.BatchPerPeer)
	if sh.Global == 0 {
		return StepStats{}, fmt.Errorf("train: step %d: rank %d of %d has an empty global batch at cursor %d of %d", t.step, rank, size, t.cursor, n)
	}
	order := t.orderFor()
	m := sh.Len()
	ss := t.cfg.Train.SampleSize()
	t.x = grow(t.x, m*ss)
	if cap(t.labels) < m {
		t.labels = make([]uint8, m)
		t.keys = make([]uint64, m)
	}
	t.labels, t.keys = t.labels[:m], t.keys[:m]
	t.cfg.Train.Gather(order, sh.Lo, sh.Hi, t.x, t.labels)
	for i := range t.keys {
		// A sample's dropout key depends on the data seed, the data epoch
		// and its position in that epoch, not on which peer processes it.
		t.keys[i] = sampleKey(t.cfg.Seed, t.epoch, sh.Lo+i)
	}
	mdl := t.cfg.Model
	mdl.SetSampleKeys(t.keys)
	loss, commWait, err := t.backwardAndReduce(ctx, comm, m, sh.Global)
	if err != nil {
		return StepStats{}, err
	}
	lr := t.cfg.LR.LR(int64(t.step), size*t.cfg.BatchPerPeer, t.cfg.Schedule)
	if err := t.cfg.Optimizer.Update(mdl.Params(), mdl.Grads(), float32(lr)); err != nil {
		return StepStats{}, fmt.Errorf("train: step %d: %w", t.step, err)
	}
	st := StepStats{Step: t.step, Epoch: t.epoch, Share: sh, Samples: order[sh.Lo:sh.Hi], LR: lr, CommWait: commWait, CommBytes: 4 * len(mdl.Grads())}
	if m > 0 {
		st.Loss = loss / float64(m)
	}
	t.step++
	t.cursor += sh.Global
	if t.cursor >= n {
		st.EpochDone = true
		t.epoch++
		t.cursor = 0
	}
	return st, nil
}

// backwardAndReduce runs forward and backward on the gathered share of m
// samples and sums the gradients (pre-scaled by 1/global) over comm: with
// a Bucketer, each bucket is launched from backward as soon as its layers
// are done; otherwise one all-reduce follows backward. It returns the loss
// sum and the time spent waiting for the reduction after backward.
func (t *Trainer) backwardAndReduce(ctx context.Context, comm Comm, m, global int) (float64, time.Duration, error) {
	mdl := t.cfg.Model
	fail := func(err error) error {
		return fmt.Errorf("train: step %d (data epoch %d, rank %d of %d): reduction of %d gradients: %w", t.step, t.epoch, comm.Rank(), comm.Size(), len(mdl.Grads()), err)
	}
	if t.bucketer == nil {
		loss, _, err := mdl.TrainBatch(t.x, t.labels, m, 1/float32(global))
		if err != nil {
			return 0, 0, fmt.Errorf("train: step %d: %w", t.step, err)
		}
		start := time.Now()
		if err := comm.AllReduceWire(ctx, mdl.Grads(), collective.Sum, t.cfg.Wire); err != nil {
			return 0, 0, fail(err)
		}
		return loss, time.Since(start), nil
	}
	round := t.bucketer.Start(ctx, comm)
	var readyErr error
	mdl.SetGradReady(func(i int, _ model.ParamRange) {
		if err := round.Ready(i); err != nil && readyErr == nil {
			readyErr = err
		}
	})
	loss, _, err := mdl.TrainBatch(t.x, t.labels, m, 1/float32(global))
	mdl.SetGradReady(nil)
	// Wait in every case: the round's operations must end before the
	// arena is touched again, and the other members expect all of them.
	start := time.Now()
	werr := round.Wait(ctx)
	took := time.Since(start)
	switch {
	case err != nil:
		return 0, 0, fmt.Errorf("train: step %d: %w", t.step, err)
	case werr != nil:
		return 0, 0, fail(werr)
	case readyErr != nil:
		return 0, 0, fail(readyErr)
	}
	return loss, took, nil
}

// sampleKey mixes (seed, data epoch, position) into one 64-bit key
// (splitmix64 finaliser on each input).
func sampleKey(seed, epoch uint64, pos int) uint64 {
	k := mix64(seed) ^ mix64(epoch+0x632be59bd9b4e019) ^ mix64(uint64(pos)+0x9e3779b97f4a7c15)
	return mix64(k)
}

func mix64(x uint64) uint64 {
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// Eval is the result of an evaluation over a whole data set.
type Eval struct {
	Samples  int
	Loss     float64 // mean loss
	Accuracy float64 // fraction correct
}

// Evaluate scores the model on set, sharded over the peers: rank r takes
// the contiguous r-th of size slices, and one Sum all-reduce combines the
// loss sums and counts. Every peer returns the same result.
func (t *Trainer) Evaluate(ctx context.Context, comm Comm, set *data.Set) (Eval, error) {
	n, rank, size := set.Len(), comm.Rank(), comm.Size()
	lo, hi := rank*n/size, (rank+1)*n/size
	ss, bs := set.SampleSize(), t.cfg.EvalBatch
	var lossSum float64
	var correct int
	for i := lo; i < hi; i += bs {
		j := min(i+bs, hi)
		l, c, err := t.cfg.Model.EvalBatch(set.Images[i*ss:j*ss], set.Labels[i:j], j-i)
		if err != nil {
			return Eval{}, fmt.Errorf("train: evaluate: %w", err)
		}
		lossSum += l
		correct += c
	}
	// Counts stay below 2^24, so the float32 sums of counts are exact.
	t.stats = [3]float32{float32(lossSum), float32(correct), float32(hi - lo)}
	if err := comm.AllReduce(ctx, t.stats[:], collective.Sum); err != nil {
		return Eval{}, fmt.Errorf("train: evaluate at step %d (rank %d of %d): all-reduce of statistics: %w", t.step, rank, size, err)
	}
	e := Eval{Samples: int(t.stats[2])}
	if e.Samples > 0 {
		e.Loss = float64(t.stats[0]) / float64(e.Samples)
		e.Accuracy = float64(t.stats[1]) / float64(e.Samples)
	}
	return e, nil
}
