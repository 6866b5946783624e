package wire

import (
	"bytes"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"
)

// FuzzDecodeControl: any bytes either fail to decode or decode to a message
// that encodes and decodes back to an equal message.
func FuzzDecodeControl(f *testing.F) {
	for _, c := range controlSamples() {
		b, err := proto.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeControl(b)
		if err != nil {
			return
		}
		frame, err := AppendFrame(nil, c, MaxControlSize)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		c2, err := DecodeControl(frame[PrefixLen:])
		if err != nil {
			t.Fatalf("decode of re-encoded message: %v", err)
		}
		if !proto.Equal(c, c2) {
			t.Fatalf("round trip changed the message: %v != %v", c, c2)
		}
	})
}

// FuzzDecodeDataHeader: as FuzzDecodeControl, and an accepted header always
// respects the payload bound.
func FuzzDecodeDataHeader(f *testing.F) {
	for _, h := range headerSamples() {
		b, err := proto.Marshal(h)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint64(1<<20))
	}
	f.Fuzz(func(t *testing.T, b []byte, max uint64) {
		h, err := DecodeDataHeader(b, max)
		if err != nil {
			return
		}
		if h.Length > max {
			t.Fatalf("accepted length %d over limit %d", h.Length, max)
		}
		frame, err := AppendFrame(nil, h, MaxHeaderSize)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		h2, err := DecodeDataHeader(frame[PrefixLen:], max)
		if err != nil {
			t.Fatalf("decode of re-encoded header: %v", err)
		}
		if !proto.Equal(h, h2) {
			t.Fatalf("round trip changed the header: %v != %v", h, h2)
		}
	})
}

// FuzzReadFrame: a stream of frames never yields a body over the bound, and
// every frame body read re-frames to the bytes it came from.
func FuzzReadFrame(f *testing.F) {
	var all []byte
	for _, c := range controlSamples() {
		b, err := AppendFrame(nil, c, MaxControlSize)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		all = append(all, b...)
	}
	for _, h := range headerSamples() {
		b, err := AppendFrame(nil, h, MaxHeaderSize)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(all)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 1 << 10
		r := bytes.NewReader(b)
		buf := make([]byte, max)
		consumed := 0
		for {
			body, err := ReadFrame(r, buf, max)
			if err != nil {
				return
			}
			if len(body) > max {
				t.Fatalf("body of %d bytes over bound %d", len(body), max)
			}
			n := PrefixLen + len(body)
			if !bytes.Equal(b[consumed+PrefixLen:consumed+n], body) {
				t.Fatalf("frame body does not match the input")
			}
			consumed += n
			grown := make([]byte, 0)
			if g, err := ReadFrameGrow(bytes.NewReader(b[consumed-n:]), &grown, max); err != nil || !bytes.Equal(g, body) {
				t.Fatalf("ReadFrameGrow disagrees with ReadFrame: %v", err)
			}
			// Decoding must not panic whatever the body holds.
			DecodeControl(body)
			DecodeDataHeader(body, max)
		}
	})
}

// FuzzDataStream: any bytes read as a data stream (headers, each followed by
// its payload) yield only headers within the payload bound, and a stream
// built from valid headers reads back message by message to a clean io.EOF.
func FuzzDataStream(f *testing.F) {
	var valid []byte
	for _, h := range headerSamples() {
		if h.Flags != 0 {
			continue
		}
		b, err := AppendFrame(nil, h, MaxHeaderSize)
		if err != nil {
			f.Fatal(err)
		}
		b = append(b, make([]byte, h.Length)...)
		f.Add(b)
		valid = append(valid, b...)
	}
	f.Add(valid)
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0, 0x10, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 1 << 12
		r := bytes.NewReader(b)
		buf := make([]byte, 16)
		for {
			h, err := ReadDataHeader(r, &buf, max)
			if err != nil {
				return
			}
			if h.Length > max || len(buf) > MaxHeaderSize {
				t.Fatalf("accepted length %d (limit %d), header buffer %d bytes", h.Length, max, len(buf))
			}
			// Skip the payload; a stream cut inside it ends the loop at
			// the next read.
			if _, err := r.Seek(int64(h.Length), io.SeekCurrent); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestReadDataHeaderStream: a stream of messages reads back header by
// header and ends with io.EOF exactly at a message boundary.
func TestReadDataHeaderStream(t *testing.T) {
	var s []byte
	var want []uint64
	var ends []int // where each message's header and payload end
	for i, n := range []uint64{0, 4, 12, 0} {
		b, err := AppendFrame(nil, &DataHeader{Epoch: 3, Op: 9, Length: n, Dtype: DType_DTYPE_FLOAT32, Chunk: uint64(i)}, MaxHeaderSize)
		if err != nil {
			t.Fatal(err)
		}
		s = append(s, b...)
		hdrEnd := len(s)
		s = append(s, bytes.Repeat([]byte{byte(i)}, int(n))...)
		want = append(want, n)
		ends = append(ends, hdrEnd, len(s))
	}
	tests := []struct {
		name    string
		in      []byte
		headers int
		end     error
	}{
		{"whole stream", s, 4, io.EOF},
		{"cut at a message boundary", s[:ends[3]], 2, io.EOF},
		{"cut inside a payload", s[:ends[5]-1], 3, io.ErrUnexpectedEOF},
		{"cut inside a header", s[:ends[6]-1], 3, io.ErrUnexpectedEOF},
		{"cut inside a length prefix", s[:ends[5]+2], 3, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(tt.in)
			var buf []byte
			got := 0
			var err error
			for {
				var h *DataHeader
				h, err = ReadDataHeader(r, &buf, 1<<10)
				if err != nil {
					break
				}
				if h.Length != want[got] || h.Chunk != uint64(got) {
					t.Fatalf("header %d: %v", got, h)
				}
				got++
				p := make([]byte, h.Length)
				if _, err = io.ReadFull(r, p); err != nil {
					break
				}
				if !bytes.Equal(p, bytes.Repeat([]byte{byte(got - 1)}, int(h.Length))) {
					t.Fatalf("payload %d: %v", got-1, p)
				}
			}
			if got != tt.headers || err != tt.end {
				t.Fatalf("read %d headers, then %v; want %d, then %v", got, err, tt.headers, tt.end)
			}
		})
	}
}
