package train

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringtrain/ringtrain/optim"
)

func TestCheckpointFile(t *testing.T) {
	set := mnist(t).Subset(200)
	s := setup{tinyMLP, func() optim.Optimizer { return &optim.Adam{} }, 1e-3}
	solo := groups(t, []string{"a"}, 1)[0]
	a := s.trainer(t, set, 16)
	for i := 0; i < 3; i++ {
		if _, err := a.Step(ctxT(t), solo); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "ckpt")
	if err := a.WriteCheckpoint(path, nil); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	cases := []struct {
		name    string
		content []byte
		ok      bool
	}{
		{"intact", good, true},
		{"flipped-bit", func() []byte { b := append([]byte(nil), good...); b[100] ^= 1; return b }(), false},
		{"torn", good[:len(good)/2], false},
		{"tiny", good[:3], false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "ckpt")
			os.WriteFile(p, c.content, 0o644)
			b := s.trainer(t, set, 16)
			_, err := b.ReadCheckpoint(p)
			if c.ok {
				if err != nil || b.Digest() != a.Digest() || b.Position() != a.Position() {
					t.Fatalf("err %v, restored %+v", err, b.Position())
				}
				return
			}
			if !errors.Is(err, ErrState) {
				t.Fatalf("err = %v, want ErrState", err)
			}
		})
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}
