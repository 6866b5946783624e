package train

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ringtrain/ringtrain/membership"
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

// TestCheckpointHeld: the held membership epoch round-trips through a
// checkpoint; a checkpoint without it (written before it existed) restores
// as never held; a damaged entry is refused.
func TestCheckpointHeld(t *testing.T) {
	set := mnist(t).Subset(200)
	s := setup{tinyMLP, func() optim.Optimizer { return &optim.Adam{} }, 1e-3}
	a := s.trainer(t, set, 16)
	held := membership.Epoch{Number: 7, Members: []string{"n0", "n1,x", "n2"}}
	cases := []struct {
		name  string
		extra map[string]string
		want  membership.Epoch
		err   bool
	}{
		{"held", map[string]string{HeldKey: HeldMeta(held)}, held, false},
		{"never held", map[string]string{HeldKey: HeldMeta(membership.Epoch{})}, membership.Epoch{}, false},
		{"old checkpoint", map[string]string{"membership_epoch": "7"}, membership.Epoch{}, false},
		{"not JSON", map[string]string{HeldKey: "7:n0,n1"}, membership.Epoch{}, true},
		{"number without members", map[string]string{HeldKey: `{"number":7}`}, membership.Epoch{}, true},
		{"unsorted members", map[string]string{HeldKey: `{"number":7,"members":["n1","n0"]}`}, membership.Epoch{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "ckpt")
			if err := a.WriteCheckpoint(p, c.extra); err != nil {
				t.Fatal(err)
			}
			meta, err := s.trainer(t, set, 16).ReadCheckpoint(p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseHeld(meta)
			if c.err {
				if !errors.Is(err, ErrState) {
					t.Fatalf("ParseHeld = %v, %v; want an ErrState error", got, err)
				}
				return
			}
			if err != nil || got.Number != c.want.Number || !slices.Equal(got.Members, c.want.Members) {
				t.Fatalf("ParseHeld = %v, %v; want %v", got, err, c.want)
			}
		})
	}
}
