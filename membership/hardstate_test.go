package membership

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/membership/agree"
)

func TestHardStateRoundTrip(t *testing.T) {
	e3 := agree.Epoch{Number: 3, Members: []string{"node-0", "node-1", "node-2"}}
	e4 := agree.Epoch{Number: 4, Members: []string{"node-0", "node-2"}}
	cases := []struct {
		name string
		h    HardState
	}{
		{"fresh", HardState{}},
		{"held", HardState{Held: e3}},
		{"full", HardState{Held: e3, Made: &agree.Value{Epoch: e3, Step: 17, Source: "node-1", Targets: []string{"node-0"}},
			Promised: agree.Ballot{N: 5, By: "node-2"}, AccBallot: agree.Ballot{N: 4, By: "node-0"}, Accepted: &agree.Value{Epoch: e4, Step: 20}}},
		{"amnesiac", HardState{Held: e3, Amnesiac: true, Promised: agree.Ballot{N: 1, By: "node-1"}}},
		{"left", HardState{Held: e3, Promised: agree.Ballot{N: 5, By: "node-1"}, AccBallot: agree.Ballot{N: 5, By: "node-1"},
			Accepted: &agree.Value{Epoch: e4, Step: 20}, Left: &agree.Value{Epoch: e4, Step: 20, Source: "node-0", Targets: []string{"node-2"}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := EncodeHardState(c.h)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeHardState(b)
			if err != nil {
				t.Fatalf("decode %s: %v", b, err)
			}
			if !reflect.DeepEqual(got, c.h) {
				t.Fatalf("round trip: got %+v, want %+v", got, c.h)
			}
		})
	}
}

func TestHardStateRejects(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want string
	}{
		{"empty", ``, "EOF"},
		{"version", `{"version":2,"state":{}}`, "version 2"},
		{"unknown field", `{"version":1,"state":{"Held":{"Number":0,"Members":null}},"x":1}`, "unknown field"},
		{"trailing", `{"version":1,"state":{}} {}`, "trailing data"},
		{"number without members", `{"version":1,"state":{"Held":{"Number":2,"Members":[]}}}`, "held epoch 2 with 0 members"},
		{"unsorted", `{"version":1,"state":{"Held":{"Number":2,"Members":["b","a"]}}}`, "not a sorted set"},
		{"duplicate", `{"version":1,"state":{"Held":{"Number":2,"Members":["a","a"]}}}`, "not a sorted set"},
		{"empty ID", `{"version":1,"state":{"Held":{"Number":2,"Members":[""]}}}`, "bad member ID"},
		{"made without held", `{"version":1,"state":{"Made":{"Epoch":{"Number":1,"Members":["a"]}}}}`, "no held epoch"},
		{"left without held", `{"version":1,"state":{"Left":{"Epoch":{"Number":1,"Members":["a"]}}}}`, "no held epoch"},
		{"bad left", `{"version":1,"state":{"Held":{"Number":1,"Members":["a"]},"Left":{"Epoch":{"Number":2,"Members":["b","a"]}}}}`, "left epoch 2"},
		{"bad accepted", `{"version":1,"state":{"Held":{"Number":1,"Members":["a"]},"Accepted":{"Epoch":{"Number":2,"Members":["b","a"]}}}}`, "accepted epoch 2"},
		{"too large", strings.Repeat(" ", maxHardState+1), "at most"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeHardState([]byte(c.in))
			if !errors.Is(err, ErrHardState) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an ErrHardState containing %q", err, c.want)
			}
		})
	}
}

// FuzzHardState: the decoder never panics, and what it accepts encodes
// back to the same state.
func FuzzHardState(f *testing.F) {
	b, _ := EncodeHardState(HardState{Held: agree.Epoch{Number: 2, Members: []string{"a", "b"}}, Promised: agree.Ballot{N: 1, By: "a"}})
	f.Add(b)
	f.Add([]byte(`{"version":1,"state":{}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := DecodeHardState(in)
		if err != nil {
			return
		}
		out, err := EncodeHardState(h)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", h, err)
		}
		again, err := DecodeHardState(out)
		if err != nil || !reflect.DeepEqual(again, h) {
			t.Fatalf("re-decode: %+v, %v; want %+v", again, err, h)
		}
	})
}
