package membership

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestMsgRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		m    msg
	}{
		{"report", msg{Kind: kindReport, Flags: flagFailed | flagNoState, Epoch: 4, Promised: 5, Step: 1000, Seq: 17, Lost: []string{"n3"}}},
		{"propose", msg{Kind: kindPropose, Epoch: 6, Base: 4, Proposer: "n0", Members: []string{"n0", "n1", "n9"}, Step: 12, Source: "n1", Targets: []uint32{2}}},
		{"ack ok", msg{Kind: kindAck, Flags: flagOK, Epoch: 6, Proposer: "n0"}},
		{"nack", msg{Kind: kindAck, Epoch: 6, Proposer: "n2", Promised: 7, Source: "n1", Base: 5}},
		{"commit", msg{Kind: kindCommit, Epoch: 1 << 50, Proposer: "a", Members: []string{"a"}}},
		{"continue", msg{Kind: kindContinue, Epoch: 3, Seq: 99}},
		{"abort", msg{Kind: kindAbort, Epoch: 3, Proposer: "z"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := c.m.marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := unmarshalMsg(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, c.m) {
				t.Fatalf("round trip: got %+v, want %+v", *got, c.m)
			}
		})
	}
}

func TestMsgRejects(t *testing.T) {
	good, err := (&msg{Kind: kindPropose, Epoch: 2, Proposer: "a", Members: []string{"a", "b"}, Targets: []uint32{1}}).marshal()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"bad version", append([]byte{2}, good[1:]...)},
		{"bad kind", append([]byte{good[0], 0}, good[2:]...)},
		{"unknown flags", append([]byte{good[0], good[1], 0x80}, good[3:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(append([]byte{}, good...), 1)},
		{"target out of range", append(append([]byte{}, good[:len(good)-1]...), 2)},
		{"huge count", []byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x7f}},
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
	cases := []struct {
		name string
		m    msg
	}{
		{"no kind", msg{}},
		{"long ID", msg{Kind: kindCommit, Members: []string{strings.Repeat("x", maxIDLen+1)}}},
		{"empty ID", msg{Kind: kindCommit, Members: []string{""}}},
		{"too many", msg{Kind: kindCommit, Members: make([]string, maxMembers+1)}},
		{"bad target", msg{Kind: kindCommit, Members: []string{"a"}, Targets: []uint32{1}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := c.m.marshal(); err == nil {
				t.Fatal("encoded an invalid message")
			}
		})
	}
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

func FuzzMsg(f *testing.F) {
	for _, m := range []msg{
		{Kind: kindReport, Flags: flagFailed, Epoch: 4, Promised: 5, Step: 1000, Seq: 2, Lost: []string{"n3"}},
		{Kind: kindCommit, Epoch: 6, Proposer: "n0", Members: []string{"n0", "n1"}, Source: "n0", Targets: []uint32{1}},
	} {
		b, _ := m.marshal()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := unmarshalMsg(b)
		if err != nil {
			return
		}
		out, err := m.marshal()
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
