package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ringtrain/ringtrain/membership"
)

// readStateFile returns the agreement state kept in path, zero if the file
// does not exist (a fresh node).
func readStateFile(path string) (membership.HardState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return membership.HardState{}, nil
	}
	if err != nil {
		return membership.HardState{}, fmt.Errorf("read agreement state: %w", err)
	}
	h, err := membership.DecodeHardState(b)
	if err != nil {
		return membership.HardState{}, fmt.Errorf("agreement state %s: %w (remove it only if this node's votes may be forgotten: see node.Config.StateFile)", path, err)
	}
	return h, nil
}

// writeStateFile replaces path with h atomically and durably: a temporary
// file in the same directory, synced, renamed over path, and the directory
// synced, so a crash leaves the old state or the new one, never a torn
// file or a promise that was sent but not kept.
func writeStateFile(path string, h membership.HardState) (err error) {
	b, err := membership.EncodeHardState(h)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write agreement state: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write agreement state %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write agreement state %s: sync directory: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write agreement state %s: sync directory: %w", path, err)
	}
	return nil
}
