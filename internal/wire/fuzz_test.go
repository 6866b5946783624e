package wire

import (
	"bytes"
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
