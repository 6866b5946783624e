package membership

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/membership/agree"
)

// wireCases are one message of every kind, with every field the kind uses.
var wireCases = []struct {
	name string
	m    agree.Msg
}{
	{"report", agree.Msg{Kind: agree.Report, Flags: agree.FlagFailed | agree.FlagNoState, Epoch: 4, Seq: 17, Step: 1000, Lost: []string{"n3", "n7"}}},
	{"join request", agree.Msg{Kind: agree.Report, Flags: agree.FlagJoin, Epoch: 0, Seq: 1}},
	{"continue", agree.Msg{Kind: agree.Continue, Epoch: 3, Seq: 99}},
	{"prepare first", agree.Msg{Kind: agree.Prepare, Base: 0, Ballot: agree.Ballot{N: 2, By: "n0"}, Cands: []string{"n0", "n1", "n2"}}},
	{"promise with value", agree.Msg{Kind: agree.Promise, Base: 5, Ballot: agree.Ballot{N: 9, By: "n1"}, AccBallot: agree.Ballot{N: 7, By: "n0"},
		Value: &agree.Value{Epoch: agree.Epoch{Number: 6, Members: []string{"n0", "n1"}}, Step: 12, Source: "n0", Targets: []string{"n1"}}}},
	{"accept", agree.Msg{Kind: agree.Accept, Base: 1 << 50, Ballot: agree.Ballot{N: 1<<64 - 1, By: strings.Repeat("z", maxIDLen)},
		Value: &agree.Value{Epoch: agree.Epoch{Number: 1<<50 + 1, Members: []string{"a"}}}}},
	{"accepted", agree.Msg{Kind: agree.Accepted, Base: 5, Ballot: agree.Ballot{N: 9, By: "n1"}}},
	{"commit", agree.Msg{Kind: agree.Commit, Base: 5, Value: &agree.Value{Epoch: agree.Epoch{Number: 6, Members: []string{"a", "b", "c"}}, Step: 3, Source: "b", Targets: []string{"a", "c"}}}},
	{"nack", agree.Msg{Kind: agree.Nack, Base: 5, Epoch: 6, Ballot: agree.Ballot{N: 11, By: "n4"}}},
}

func TestMsgRoundTrip(t *testing.T) {
	for _, c := range wireCases {
		t.Run(c.name, func(t *testing.T) {
			b, err := marshalMsg(c.m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := unmarshalMsg(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.m) {
				t.Fatalf("round trip: got %+v, want %+v", got, c.m)
			}
		})
	}
}

func TestMsgRejects(t *testing.T) {
	good, err := marshalMsg(agree.Msg{Kind: agree.Commit, Base: 1, Value: &agree.Value{Epoch: agree.Epoch{Number: 2, Members: []string{"a", "b"}}, Source: "a", Targets: []string{"b"}}})
	if err != nil {
		t.Fatal(err)
	}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	cases := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"version only", []byte{msgVersion}},
		{"bad version", cat([]byte{1}, good[1:])},
		{"kind 0", cat([]byte{good[0], 0}, good[2:])},
		{"unknown kind", cat([]byte{good[0], byte(agree.Nack) + 1}, good[2:])},
		{"unknown flags", cat([]byte{good[0], good[1], 0x80}, good[3:])},
		{"truncated", good[:len(good)-1]},
		{"trailing", cat(good, []byte{1})},
		{"bad value marker", cat(good[:3], []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2})},
		{"huge list count", cat(good[:3], []byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})},
		{"count beyond bytes", cat(good[:3], []byte{0, 0, 0, 0, 5, 1, 'a'})},
		{"empty ID in list", cat(good[:3], []byte{0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0})},
		{"ID longer than bound", cat(good[:3], []byte{0, 0, 0, 0, 0, 0, maxIDLen + 1}, []byte(strings.Repeat("x", maxIDLen+1)))},
		{"bad varint", cat(good[:3], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})},
		{"oversize", make([]byte, maxControl+1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := unmarshalMsg(c.b); !errors.Is(err, ErrWire) {
				t.Fatalf("got %v, want ErrWire", err)
			}
		})
	}
}

func TestMsgEncodeBounds(t *testing.T) {
	long := strings.Repeat("x", maxIDLen+1)
	cases := []struct {
		name string
		m    agree.Msg
	}{
		{"no kind", agree.Msg{}},
		{"unknown kind", agree.Msg{Kind: agree.Nack + 1}},
		{"long member", agree.Msg{Kind: agree.Commit, Value: &agree.Value{Epoch: agree.Epoch{Members: []string{long}}}}},
		{"empty member", agree.Msg{Kind: agree.Commit, Value: &agree.Value{Epoch: agree.Epoch{Members: []string{""}}}}},
		{"long ballot ID", agree.Msg{Kind: agree.Prepare, Ballot: agree.Ballot{N: 1, By: long}}},
		{"too many lost", agree.Msg{Kind: agree.Report, Lost: make([]string, maxMembers+1)}},
		{"oversize", agree.Msg{Kind: agree.Accept, Lost: manyIDs(maxMembers), Cands: manyIDs(maxMembers), Value: &agree.Value{Epoch: agree.Epoch{Members: manyIDs(maxMembers)}, Targets: manyIDs(maxMembers)}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := marshalMsg(c.m); err == nil {
				t.Fatal("encoded an invalid message")
			}
		})
	}
}

// manyIDs returns n distinct IDs of the longest allowed length.
func manyIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%0*d", maxIDLen, i)
	}
	return out
}

func TestChunkHeader(t *testing.T) {
	cases := []struct {
		name          string
		total, off, n uint64
		ok            bool
	}{
		{"first", 100, 0, 50, true},
		{"last", 100, 50, 50, true},
		{"empty state", 0, 0, 0, true},
		{"past end", 100, 60, 50, false},
		{"offset past total", 10, 11, 0, false},
		{"huge total", maxState + 1, 0, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := make([]byte, chunkHeader+c.n)
			putChunkHeader(b, c.total, c.off)
			total, off, err := parseChunkHeader(b)
			if c.ok != (err == nil) {
				t.Fatalf("err %v, want ok=%v", err, c.ok)
			}
			if c.ok && (total != c.total || off != c.off) {
				t.Fatalf("got %d/%d, want %d/%d", total, off, c.total, c.off)
			}
		})
	}
}

// FuzzMsg: the decoder never panics, and whatever it accepts re-encodes
// and decodes to the same message.
func FuzzMsg(f *testing.F) {
	for _, c := range wireCases {
		b, err := marshalMsg(c.m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := unmarshalMsg(b)
		if err != nil {
			if !errors.Is(err, ErrWire) {
				t.Fatalf("error %v does not wrap ErrWire", err)
			}
			return
		}
		out, err := marshalMsg(m)
		if err != nil {
			t.Fatalf("decoded %+v does not re-encode: %v", m, err)
		}
		again, err := unmarshalMsg(out)
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("re-decode: %+v %v, want %+v", again, err, m)
		}
	})
}

func FuzzChunkHeader(f *testing.F) {
	b := make([]byte, chunkHeader+3)
	putChunkHeader(b, 10, 7)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		total, off, err := parseChunkHeader(b)
		if err != nil {
			return
		}
		if off+uint64(len(b)-chunkHeader) > total || total > maxState {
			t.Fatalf("accepted out-of-bounds chunk: total %d off %d len %d", total, off, len(b)-chunkHeader)
		}
	})
}
