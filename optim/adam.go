package optim

import "math"

// Adam is the Adam optimizer (Kingma & Ba 2015) with bias correction. With
// Decoupled set it is AdamW (Loshchilov & Hutter 2019): weight decay shrinks
// the parameters directly (p ← p − lr·λ·p) instead of entering the
// gradient as L2 regularisation.
type Adam struct {
	Beta1, Beta2 float32 // default 0.9, 0.999 when zero
	Eps          float32 // default 1e-8 when zero
	WeightDecay  float32
	Decoupled    bool
	t            uint64
	m, v         []float32
}

// NewAdamW returns AdamW with the usual defaults and weight decay wd.
func NewAdamW(wd float32) *Adam { return &Adam{WeightDecay: wd, Decoupled: true} }

func (o *Adam) Name() string {
	if o.Decoupled {
		return "adamw"
	}
	return "adam"
}

func (o *Adam) Reset() { o.t, o.m, o.v = 0, nil, nil }

func (o *Adam) StateLen() int { return len(o.m) }

// Steps is the number of updates applied so far.
func (o *Adam) Steps() uint64 { return o.t }

func (o *Adam) hyper() (b1, b2, eps float32) {
	b1, b2, eps = o.Beta1, o.Beta2, o.Eps
	if b1 == 0 {
		b1 = 0.9
	}
	if b2 == 0 {
		b2 = 0.999
	}
	if eps == 0 {
		eps = 1e-8
	}
	return b1, b2, eps
}

func (o *Adam) Update(params, grads []float32, lr float32) error {
	if err := checkLens(params, grads); err != nil {
		return err
	}
	if err := sized(&o.m, len(params), "first moment"); err != nil {
		return err
	}
	if err := sized(&o.v, len(params), "second moment"); err != nil {
		return err
	}
	b1, b2, eps := o.hyper()
	o.t++
	// Bias corrections in float64, folded into the step size.
	c1 := 1 - math.Pow(float64(b1), float64(o.t))
	c2 := 1 - math.Pow(float64(b2), float64(o.t))
	step := float32(float64(lr) * math.Sqrt(c2) / c1)
	epsHat := float32(float64(eps) * math.Sqrt(c2))
	wd := o.WeightDecay
	decay := float32(1)
	if o.Decoupled {
		decay = 1 - lr*wd
	}
	m, v := o.m[:len(params)], o.v[:len(params)]
	for i, g := range grads {
		if !o.Decoupled {
			g += wd * params[i]
		}
		m[i] = b1*m[i] + (1-b1)*g
		v[i] = b2*v[i] + (1-b2)*g*g
		params[i] = params[i]*decay - step*m[i]/(float32(math.Sqrt(float64(v[i])))+epsHat)
	}
	return nil
}

func (o *Adam) MarshalBinary() ([]byte, error) {
	return encodeState(o.Name(), o.t, o.m, o.v), nil
}

func (o *Adam) UnmarshalBinary(b []byte) error {
	t, vecs, err := decodeState(b, o.Name(), 2)
	if err != nil {
		return err
	}
	if len(vecs[0]) != len(vecs[1]) {
		return ErrState
	}
	o.t, o.m, o.v = t, vecs[0], vecs[1]
	return nil
}
