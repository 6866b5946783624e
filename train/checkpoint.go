package train

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// A checkpoint file is a state blob followed by the CRC-32C (Castagnoli) of
// the blob, little endian, so a torn or corrupted file is detected before
// the blob is decoded.

// WriteCheckpoint writes the training state to path atomically: to a
// temporary file in the same directory, synced, then renamed over path, so
// a crash leaves either the old or the new checkpoint.
func (t *Trainer) WriteCheckpoint(path string) error {
	blob, err := t.MarshalState()
	if err != nil {
		return err
	}
	blob = binary.LittleEndian.AppendUint32(blob, crc32.Checksum(blob, crc32.MakeTable(crc32.Castagnoli)))
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("train: checkpoint at step %d: %w", t.step, err)
	}
	tmp := f.Name()
	_, err = f.Write(blob)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("train: checkpoint at step %d to %s: %w", t.step, path, err)
	}
	return nil
}

// ReadCheckpoint restores the training state from a file written by
// WriteCheckpoint. A bad checksum or blob is an ErrState error and leaves
// the trainer unchanged.
func (t *Trainer) ReadCheckpoint(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("train: read checkpoint: %w", err)
	}
	if len(b) < 4 {
		return fmt.Errorf("%w: checkpoint %s of %d bytes", ErrState, path, len(b))
	}
	blob, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if got := crc32.Checksum(blob, crc32.MakeTable(crc32.Castagnoli)); got != sum {
		return fmt.Errorf("%w: checkpoint %s: checksum %08x, stored %08x", ErrState, path, got, sum)
	}
	if err := t.UnmarshalState(blob); err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return nil
}
