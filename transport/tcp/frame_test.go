package tcp

import (
	"errors"
	"testing"

	"github.com/ringtrain/ringtrain/transport"
)

func hdr(k kind, epoch, op uint64, length uint32) [headerLen]byte {
	var b [headerLen]byte
	copy(b[:], appendHeader(nil, header{kind: k, tag: transport.Tag{Epoch: epoch, Op: op}, length: length}))
	return b
}

// TestDecodeHeader: every kind's length bound, exactly at and past it.
func TestDecodeHeader(t *testing.T) {
	const maxMsg = 1 << 20
	tests := []struct {
		name string
		in   [headerLen]byte
		ok   bool
	}{
		{"begin empty", hdr(kindBegin, 1, 2, 0), true},
		{"begin at MaxMessage", hdr(kindBegin, 1, 2, maxMsg), true},
		{"begin over MaxMessage", hdr(kindBegin, 1, 2, maxMsg+1), false},
		{"data of one byte", hdr(kindData, 1, 2, 1), true},
		{"empty data", hdr(kindData, 1, 2, 0), false},
		{"data at the sub-frame bound", hdr(kindData, 1, 2, maxSubFrame), true},
		{"data over the sub-frame bound", hdr(kindData, 1, 2, maxSubFrame+1), false},
		{"cancel", hdr(kindCancel, 1, 2, 0), true},
		{"cancel with a length", hdr(kindCancel, 1, 2, 1), false},
		{"refuse with a length", hdr(kindRefuse, 1, 2, 5), false},
		{"goodbye", hdr(kindGoodbye, 0, 0, 0), true},
		{"idle", hdr(kindIdle, 0, 0, 0), true},
		{"idle with a length", hdr(kindIdle, 0, 0, 1), false},
		{"unknown kind 11", hdr(11, 0, 0, 0), false},
		{"abort at its bound", hdr(kindAbort, 1, 2, maxControlPayload), true},
		{"abort over its bound", hdr(kindAbort, 1, 2, maxControlPayload+1), false},
		{"credit", hdr(kindCredit, 1, 2, 4096), true},
		{"credit of nothing", hdr(kindCredit, 1, 2, 0), false},
		{"hello at its bound", hdr(kindHello, 0, 0, maxHelloLen), true},
		{"hello over its bound", hdr(kindHello, 0, 0, maxHelloLen+1), false},
		{"unknown kind 0", hdr(0, 0, 0, 0), false},
		{"unknown kind 200", hdr(200, 0, 0, 0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			h, err := decodeHeader(&in, maxMsg)
			if tt.ok != (err == nil) {
				t.Fatalf("decodeHeader: %v, want ok=%v", err, tt.ok)
			}
			if err != nil {
				if !errors.Is(err, transport.ErrProtocol) {
					t.Fatalf("error %v does not wrap ErrProtocol", err)
				}
				return
			}
			if got := appendHeader(nil, h); string(got) != string(tt.in[:]) {
				t.Fatalf("re-encoded %x, want %x", got, tt.in)
			}
		})
	}
}

// TestHelloAckRoundTrip: the handshake payloads decode to what was encoded,
// and truncated or padded payloads are refused.
func TestHelloAckRoundTrip(t *testing.T) {
	h := helloMsg{version: protocolVersion, incarnation: 0xdeadbeef, epoch: 7, lanes: 3, lane: 2, bundle: 0x1234, to: "node-3"}
	b := h.appendTo(nil)
	if got, err := decodeHello(b); err != nil || got != h {
		t.Fatalf("hello: got %+v, %v; want %+v", got, err, h)
	}
	// Another version decodes to its version alone, for a clear refusal.
	old := []byte{0, 2, 1, 2, 3}
	if got, err := decodeHello(old); err != nil || got != (helloMsg{version: 2}) {
		t.Fatalf("version-2 hello: got %+v, %v; want only version 2", got, err)
	}
	withLane := func(lanes, lane uint8) []byte {
		m := h
		m.lanes, m.lane = lanes, lane
		return m.appendTo(nil)
	}
	a := ackMsg{accepted: false, incarnation: 9, reason: "busy"}
	ab := a.appendTo(nil)
	if got, err := decodeAck(ab); err != nil || got != a {
		t.Fatalf("ack: got %+v, %v; want %+v", got, err, a)
	}
	bad := []struct {
		name string
		err  error
	}{
		{"hello cut short", func() error { _, err := decodeHello(b[:len(b)-1]); return err }()},
		{"hello padded", func() error { _, err := decodeHello(append(b, 0)); return err }()},
		{"hello header only", func() error { _, err := decodeHello(b[:10]); return err }()},
		{"hello version only", func() error { _, err := decodeHello(b[:1]); return err }()},
		{"hello of no lanes", func() error { _, err := decodeHello(withLane(0, 0)); return err }()},
		{"hello lane past the bundle", func() error { _, err := decodeHello(withLane(2, 2)); return err }()},
		{"ack cut short", func() error { _, err := decodeAck(ab[:len(ab)-1]); return err }()},
		{"ack bad flag", func() error { c := append([]byte(nil), ab...); c[0] = 2; _, err := decodeAck(c); return err }()},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, transport.ErrProtocol) {
				t.Fatalf("got %v, want ErrProtocol", tt.err)
			}
		})
	}
}

// FuzzFrame: the decoders never panic, and whatever they accept is within
// its bounds and encodes back to the same bytes.
func FuzzFrame(f *testing.F) {
	for _, b := range [][headerLen]byte{hdr(kindBegin, 1, 2, 100), hdr(kindData, 1, 2, 5), hdr(kindCredit, 3, 4, 9), hdr(kindAbort, 0, 1, 3)} {
		f.Add(b[:])
	}
	f.Add(helloMsg{version: protocolVersion, lanes: 2, lane: 1, bundle: 5, to: "a"}.appendTo(nil))
	f.Add(ackMsg{accepted: true}.appendTo(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeHello(b) //nolint:errcheck // must not panic
		decodeAck(b)   //nolint:errcheck // must not panic
		if len(b) < headerLen {
			return
		}
		var hb [headerLen]byte
		copy(hb[:], b)
		h, err := decodeHeader(&hb, DefaultMaxMessage)
		if err != nil {
			return
		}
		if h.kind == kindData && (h.length == 0 || h.length > maxSubFrame) {
			t.Fatalf("accepted a data frame of %d bytes", h.length)
		}
		if h.kind == kindBegin && int(h.length) > DefaultMaxMessage {
			t.Fatalf("accepted a message of %d bytes", h.length)
		}
		if got := appendHeader(nil, h); string(got) != string(hb[:]) {
			t.Fatalf("re-encoded %x, want %x", got, hb)
		}
	})
}
