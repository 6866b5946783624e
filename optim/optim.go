package optim

import (
	"encoding"
	"errors"
	"fmt"
)

// ErrState reports malformed or mismatched serialized optimizer state.
var ErrState = errors.New("optim: bad optimizer state")

// Optimizer updates parameters in place from their gradients.
type Optimizer interface {
	// Name identifies the algorithm; it is stored in the serialized state.
	Name() string
	// Update applies one step with learning rate lr. params and grads have
	// the same length, which must not change between calls once state
	// exists.
	Update(params, grads []float32, lr float32) error
	// Reset drops all state (moments, step count).
	Reset()
	// StateLen is the number of parameters the state is sized for, 0 while
	// there is none.
	StateLen() int
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

// sized returns buf, allocated to n zeros on first use; it reports an error
// when state of another length exists.
func sized(buf *[]float32, n int, what string) error {
	if *buf == nil {
		*buf = make([]float32, n)
		return nil
	}
	if len(*buf) != n {
		return fmt.Errorf("optim: %s has %d entries, parameters have %d: %w", what, len(*buf), n, ErrState)
	}
	return nil
}

func checkLens(params, grads []float32) error {
	if len(params) != len(grads) {
		return fmt.Errorf("optim: %d parameters but %d gradients", len(params), len(grads))
	}
	return nil
}
