package membership

import (
	"errors"
	"strings"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		meta Meta
	}{
		{"minimal", Meta{ID: "a", State: StateJoining, Protocol: 1}},
		{"full", Meta{ID: "node-17", QUICAddr: "127.0.0.1:4242", State: StateActive, Protocol: 1, Fingerprint: "mlp-784-128-10/sha256:0123456789abcdef", Epoch: 1<<40 + 3, Step: 12345}},
		{"leaving", Meta{ID: "x", State: StateLeaving, Protocol: 9, Epoch: 7}},
		{"joining without state", Meta{ID: "y", State: StateJoining, Protocol: 2, Epoch: 4, NoState: true}},
		{"amnesiac", Meta{ID: "z", State: StateJoining, Protocol: 2, Epoch: 9, NoState: true, Amnesiac: true}},
		{"max fields", Meta{ID: strings.Repeat("i", maxIDLen), QUICAddr: strings.Repeat("a", maxAddrLen), Fingerprint: strings.Repeat("f", maxFingerprintLen), Plane: strings.Repeat("p", maxPlaneLen), State: StateActive, Protocol: 255, Epoch: ^uint64(0), Step: ^uint64(0)}},
		{"plane", Meta{ID: "w", State: StateActive, Protocol: 2, Fingerprint: "fp", Plane: "tcp lanes=3 chunk=262144"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := c.meta.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > MetaMaxSize {
				t.Fatalf("encoded %d bytes > %d", len(b), MetaMaxSize)
			}
			var got Meta
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			if got != c.meta {
				t.Fatalf("round trip: got %+v, want %+v", got, c.meta)
			}
		})
	}
}

func TestMetaRejects(t *testing.T) {
	good, err := Meta{ID: "n1", QUICAddr: "127.0.0.1:1", State: StateActive, Protocol: 1, Fingerprint: "fp"}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", good[:2]},
		{"bad version", append([]byte{9}, good[1:]...)},
		{"bad state", append([]byte{good[0], good[1], 0}, good[3:]...)},
		{"unknown flags", append([]byte{good[0], good[1], good[2], 0x80}, good[4:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(append([]byte{}, good...), 0)},
		{"oversize", make([]byte, MetaMaxSize+1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m Meta
			if err := m.UnmarshalBinary(c.b); !errors.Is(err, ErrMeta) {
				t.Fatalf("got %v, want ErrMeta", err)
			}
		})
	}
	if _, err := (Meta{ID: strings.Repeat("i", maxIDLen+1), State: StateActive}).MarshalBinary(); !errors.Is(err, ErrMeta) {
		t.Fatalf("long ID: got %v, want ErrMeta", err)
	}
	if _, err := (Meta{ID: "a", Plane: strings.Repeat("p", maxPlaneLen+1), State: StateActive}).MarshalBinary(); !errors.Is(err, ErrMeta) {
		t.Fatalf("long data-plane settings: got %v, want ErrMeta", err)
	}
}

func TestCompatible(t *testing.T) {
	self := Meta{ID: "a", Protocol: 1, Fingerprint: "m1", Plane: "tcp lanes=1 chunk=262144"}
	cases := []struct {
		name string
		peer Meta
		want string // substring of the error, "" for compatible
	}{
		{"same", Meta{ID: "b", Protocol: 1, Fingerprint: "m1", Plane: "tcp lanes=1 chunk=262144"}, ""},
		{"protocol", Meta{ID: "b", Protocol: 2, Fingerprint: "m1", Plane: "tcp lanes=1 chunk=262144"}, "protocol version 2"},
		{"fingerprint", Meta{ID: "b", Protocol: 1, Fingerprint: "m2"}, `model fingerprint "m2"`},
		{"plane", Meta{ID: "b", Protocol: 1, Fingerprint: "m1", Plane: "tcp lanes=2 chunk=262144"}, `peer b moves gradients with "tcp lanes=2 chunk=262144", a with "tcp lanes=1 chunk=262144": every node needs the same data-plane settings`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := compatible(self, c.peer)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrIncompatible containing %q", err, c.want)
			}
		})
	}
}

func FuzzMeta(f *testing.F) {
	b, _ := Meta{ID: "n1", QUICAddr: "127.0.0.1:1", State: StateActive, Protocol: 1, Fingerprint: "fp", Plane: "quic lanes=1 chunk=65536", Epoch: 300}.MarshalBinary()
	f.Add(b)
	f.Add([]byte{metaVersion, 1, 1, metaNoState, 0, 0, 1, 'a', 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Meta
		if err := m.UnmarshalBinary(b); err != nil {
			return
		}
		out, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded %+v does not re-encode: %v", m, err)
		}
		var again Meta
		if err := again.UnmarshalBinary(out); err != nil || again != m {
			t.Fatalf("re-decode: %+v %v, want %+v", again, err, m)
		}
	})
}
