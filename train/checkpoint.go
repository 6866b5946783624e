package train

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"maps"
	"slices"
	"strconv"

	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/model"
	"github.com/ringtrain/ringtrain/train/checkpoint"
)

// StateTensor is the name of the tensor that holds the complete state blob
// (parameters, optimizer state, step, data cursor, RNG) in a checkpoint.
const StateTensor = "ringtrain.state"

// WriteCheckpoint writes the training state to path atomically, as a
// safetensors file: one F32 tensor per layer weight and bias (so any
// safetensors reader can load the weights), the state blob as a U8 tensor
// (so --resume continues exactly), and metadata (step, data epoch, cursor,
// model fingerprint, a CRC-32C of the whole file, and extra, e.g. the membership
// epoch).
func (t *Trainer) WriteCheckpoint(path string, extra map[string]string) error {
	blob, err := t.MarshalState()
	if err != nil {
		return err
	}
	ts := layerTensors(t.cfg.Model)
	ts = append(ts, checkpoint.Tensor{Name: StateTensor, DType: "U8", Shape: []int{len(blob)}, Data: blob})
	fp := t.Fingerprint()
	meta := map[string]string{
		"format":      "ringtrain/1",
		"step":        strconv.FormatUint(t.step, 10),
		"data_epoch":  strconv.FormatUint(t.epoch, 10),
		"cursor":      strconv.Itoa(t.cursor),
		"fingerprint": hex.EncodeToString(fp[:]),
		"optimizer":   t.cfg.Optimizer.Name(),
		"model":       t.cfg.Model.String(),
	}
	for k, v := range extra {
		meta[k] = v
	}
	meta[crcKey] = strconv.FormatUint(uint64(fileCRC(ts, meta)), 16)
	if err := checkpoint.WriteFile(path, ts, meta); err != nil {
		return fmt.Errorf("train: checkpoint at step %d: %w", t.step, err)
	}
	return nil
}

// crcKey names the metadata entry holding a CRC-32C over everything else in
// the file: the metadata, each tensor's name, dtype and shape, and the data.
const crcKey = "crc32c"

func fileCRC(ts []checkpoint.Tensor, meta map[string]string) uint32 {
	tab := crc32.MakeTable(crc32.Castagnoli)
	var c uint32
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		if k != crcKey {
			c = crc32.Update(c, tab, []byte(k+"="+meta[k]+"\n"))
		}
	}
	for _, t := range ts {
		c = crc32.Update(c, tab, fmt.Appendf(nil, "%s %s %v\n", t.Name, t.DType, t.Shape))
		c = crc32.Update(c, tab, t.Data)
	}
	return c
}

// layerTensors names each layer's parameters "layers.<i>.<kind>.weight"
// and ".bias" with the shapes a reader expects (dense: in×out; conv2d:
// filters×channels×k×k).
func layerTensors(m *model.Model) []checkpoint.Tensor {
	var ts []checkpoint.Tensor
	params := m.Params()
	off := 0
	for i, l := range m.Layers() {
		n := l.NumParams()
		if n == 0 {
			continue
		}
		p := params[off : off+n]
		off += n
		out := l.OutShape()
		nb := out[0] // one bias per output unit or filter
		prefix := fmt.Sprintf("layers.%d.%s", i, l.Kind())
		var wshape []int
		switch in := l.InShape(); {
		case l.Kind() == "dense":
			wshape = []int{in.Size(), out.Size()}
		case l.Kind() == "conv2d" && len(in) == 3:
			k := 1
			for k*k*in[0]*nb < n-nb {
				k++
			}
			wshape = []int{nb, in[0], k, k}
		}
		if wshape == nil || prod(wshape)+nb != n {
			ts = append(ts, checkpoint.F32(prefix+".params", []int{n}, p))
			continue
		}
		ts = append(ts, checkpoint.F32(prefix+".weight", wshape, p[:n-nb]), checkpoint.F32(prefix+".bias", []int{nb}, p[n-nb:]))
	}
	return ts
}

func prod(s []int) int {
	p := 1
	for _, d := range s {
		p *= d
	}
	return p
}

// ReadCheckpoint restores the training state from a checkpoint written by
// WriteCheckpoint and returns its metadata. A damaged or foreign file is an
// ErrState error and leaves the trainer unchanged.
func (t *Trainer) ReadCheckpoint(path string) (map[string]string, error) {
	ts, meta, err := checkpoint.ReadFile(path)
	if err != nil {
		// Both stay visible: ErrState, and os.ErrNotExist for a missing file.
		return nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	want, err := strconv.ParseUint(meta[crcKey], 16, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: checkpoint %s has no checksum", ErrState, path)
	}
	if got := fileCRC(ts, meta); uint64(got) != want {
		return nil, fmt.Errorf("%w: checkpoint %s: checksum %08x, stored %08x", ErrState, path, got, want)
	}
	for _, ts := range ts {
		if ts.Name == StateTensor {
			if err := t.UnmarshalState(ts.Data); err != nil {
				return nil, fmt.Errorf("checkpoint %s: %w", path, err)
			}
			return meta, nil
		}
	}
	return nil, fmt.Errorf("%w: checkpoint %s has no %s tensor", ErrState, path, StateTensor)
}

// HeldKey is the checkpoint metadata entry that keeps the membership epoch
// the node last applied (node.Node.Held) across a restart, as JSON
// {"number":N,"members":[...]}. Checkpoints written before it existed lack
// it: they restore as a node that never held an epoch.
const HeldKey = "membership_held"

type heldJSON struct {
	Number  uint64   `json:"number"`
	Members []string `json:"members"`
}

// HeldMeta encodes e for the HeldKey entry of WriteCheckpoint's extra.
func HeldMeta(e membership.Epoch) string {
	b, _ := json.Marshal(heldJSON{Number: e.Number, Members: e.Members}) // strings and a number: cannot fail
	return string(b)
}

// ParseHeld returns the held epoch stored in a checkpoint's metadata
// (ReadCheckpoint's result): zero if the entry is absent (an older
// checkpoint), an ErrState error if it is malformed. Pass it to the node as
// Config.Held.
func ParseHeld(meta map[string]string) (membership.Epoch, error) {
	s, ok := meta[HeldKey]
	if !ok {
		return membership.Epoch{}, nil
	}
	var h heldJSON
	if err := json.Unmarshal([]byte(s), &h); err != nil {
		return membership.Epoch{}, fmt.Errorf("%w: checkpoint entry %s=%q: %w", ErrState, HeldKey, s, err)
	}
	if (h.Number == 0) != (len(h.Members) == 0) || !slices.IsSorted(h.Members) {
		return membership.Epoch{}, fmt.Errorf("%w: checkpoint entry %s=%q: want a number and its sorted members, or neither", ErrState, HeldKey, s)
	}
	return membership.Epoch{Number: h.Number, Members: h.Members}, nil
}
