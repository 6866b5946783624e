package model

import (
	"fmt"
	"math/rand/v2"
)

// Dropout zeroes each activation with probability P during training and
// scales survivors by 1/(1-P) (inverted dropout); it is the identity at
// evaluation time.
//
// Masks are a pure function of (layer salt, sample key, unit): the training
// loop sets each sample's key (derived from its data seed, data epoch and
// position in that epoch) with SetSampleKeys, so a sample gets the same mask
// whichever peer processes it. That keeps an n-peer run identical to a
// single process with the global batch, and leaves no random-generator
// state to synchronise. The salt is the layer's index in its model, so two
// dropout layers draw independent masks. Without keys the layer numbers
// samples with its own counter.
type Dropout struct {
	shape   Shape
	p       float32
	salt    uint64
	keys    []uint64
	counter uint64
	active  bool // the last Forward applied a mask
	mask    []float32
	y, dx   []float32
}

// DropoutSpec builds a dropout layer with drop probability p.
func DropoutSpec(p float64) Spec {
	return func(in Shape) (Layer, error) {
		if !(p >= 0 && p < 1) {
			return nil, fmt.Errorf("model: dropout probability %v outside [0,1)", p)
		}
		return &Dropout{shape: append(Shape(nil), in...), p: float32(p)}, nil
	}
}

func (d *Dropout) Kind() string        { return "dropout" }
func (d *Dropout) Describe() string    { return fmt.Sprintf("dropout(%v,p=%g)", d.shape, d.p) }
func (d *Dropout) InShape() Shape      { return d.shape }
func (d *Dropout) OutShape() Shape     { return d.shape }
func (d *Dropout) NumParams() int      { return 0 }
func (d *Dropout) Bind(_, _ []float32) {}
func (d *Dropout) Init(*rand.Rand)     {}

// SetSampleKeys sets the keys of the samples of the next Forward calls;
// keys[i] belongs to sample i. The slice is retained, not copied.
func (d *Dropout) SetSampleKeys(keys []uint64) { d.keys = keys }

// splitmix64 is a strong 64-bit mixer (Steele et al. 2014); one call per
// unit gives an independent uniform draw.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (d *Dropout) Forward(x []float32, n int, train bool) []float32 {
	m := d.shape.Size()
	d.active = train && d.p > 0
	if !d.active {
		return x[:n*m]
	}
	d.y = grow(d.y, n*m)
	d.mask = grow(d.mask, n*m)
	scale := 1 / (1 - d.p)
	// keep when the top 24 bits, as a fraction, are >= p
	threshold := uint64(float64(d.p) * (1 << 24))
	for i := 0; i < n; i++ {
		var key uint64
		if i < len(d.keys) {
			key = d.keys[i]
		} else {
			key = d.counter
			d.counter++
		}
		base := splitmix64(d.salt ^ splitmix64(key))
		mk := d.mask[i*m:][:m]
		for j := range mk {
			if splitmix64(base+uint64(j))>>40 >= threshold {
				mk[j] = scale
			} else {
				mk[j] = 0
			}
		}
	}
	for j, v := range x[:n*m] {
		d.y[j] = v * d.mask[j]
	}
	return d.y
}

func (d *Dropout) Backward(dy []float32, n int) []float32 {
	m := d.shape.Size()
	if !d.active {
		return dy[:n*m]
	}
	d.dx = grow(d.dx, n*m)
	for j, g := range dy[:n*m] {
		d.dx[j] = g * d.mask[j]
	}
	return d.dx
}
