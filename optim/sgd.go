package optim

import "fmt"

// SGD is stochastic gradient descent with optional (Nesterov) momentum and
// L2 weight decay, following PyTorch's formulation:
//
//	g ← g + λ·p;  v ← μ·v + g;  p ← p − lr·(Nesterov ? g + μ·v : v)
//
// With Momentum 0 it is plain SGD and keeps no state.
type SGD struct {
	Momentum    float32
	Nesterov    bool
	WeightDecay float32
	v           []float32
}

func (o *SGD) Name() string {
	switch {
	case o.Momentum == 0:
		return "sgd"
	case o.Nesterov:
		return "sgd-nesterov"
	}
	return "sgd-momentum"
}

func (o *SGD) Reset() { o.v = nil }

func (o *SGD) StateLen() int { return len(o.v) }

func (o *SGD) Update(params, grads []float32, lr float32) error {
	if err := checkLens(params, grads); err != nil {
		return err
	}
	wd, mu := o.WeightDecay, o.Momentum
	if mu == 0 {
		for i, g := range grads {
			params[i] -= lr * (g + wd*params[i])
		}
		return nil
	}
	if err := sized(&o.v, len(params), "momentum buffer"); err != nil {
		return err
	}
	v := o.v[:len(params)]
	for i, g := range grads {
		g += wd * params[i]
		v[i] = mu*v[i] + g
		if o.Nesterov {
			params[i] -= lr * (g + mu*v[i])
		} else {
			params[i] -= lr * v[i]
		}
	}
	return nil
}

func (o *SGD) MarshalBinary() ([]byte, error) {
	return encodeState(o.Name(), 0, o.v), nil
}

func (o *SGD) UnmarshalBinary(b []byte) error {
	t, vecs, err := decodeState(b, o.Name(), 1)
	if err != nil {
		return err
	}
	if t != 0 {
		return fmt.Errorf("%w: SGD state with step count %d", ErrState, t)
	}
	o.v = vecs[0]
	return nil
}
