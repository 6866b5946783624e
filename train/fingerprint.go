package train

import (
	"crypto/sha256"
	"fmt"
)

// Fingerprint identifies everything peers must agree on before they may
// average gradients: the model architecture (model.Fingerprint), the
// optimizer algorithm, the per-peer batch, the learning-rate base and the
// size of the training set. The membership layer compares it when a peer
// asks to join; unequal fingerprints must never share a ring.
func (t *Trainer) Fingerprint() [32]byte {
	mf := t.cfg.Model.Fingerprint()
	h := sha256.New()
	fmt.Fprintf(h, "ringtrain-job/1 model=%x optimizer=%s batch=%d lr=%g@%d train=%d\n",
		mf, t.cfg.Optimizer.Name(), t.cfg.BatchPerPeer, t.cfg.LR.BaseLR, t.cfg.LR.BaseBatch, t.cfg.Train.Len())
	var out [32]byte
	h.Sum(out[:0])
	return out
}
