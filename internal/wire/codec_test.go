package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"
)

// controlSamples holds one Control of every body type.
func controlSamples() []*Control {
	return []*Control{
		{Body: &Control_Hello{Hello: &Hello{NodeId: "a", ToNodeId: "b", ProtocolVersion: ProtocolVersion, Epoch: 3, Incarnation: 0xdeadbeef}}},
		{Body: &Control_HelloAck{HelloAck: &HelloAck{Accepted: true, ProtocolVersion: ProtocolVersion, Epoch: 3, Incarnation: 7}}},
		{Body: &Control_HelloAck{HelloAck: &HelloAck{Reason: "duplicate connection"}}},
		{Body: &Control_Abort{Abort: &Abort{Epoch: 2, Op: 9, Reason: "peer c lost"}}},
		{Body: &Control_Error{Error: &Error{Epoch: 1, Op: 4, Code: ErrorCode_ERROR_CODE_EPOCH, Message: "stale", ReceiverEpoch: 5}}},
		{Body: &Control_EpochProposal{EpochProposal: &EpochProposal{Epoch: 4, Leader: "a", Members: []string{"a", "b", "c"}, Step: 100}}},
		{Body: &Control_EpochCommit{EpochCommit: &EpochCommit{Epoch: 4, Leader: "a", Members: []string{"a", "c"}, Step: 100, StateDigest: []byte{1, 2, 3}}}},
		{Body: &Control_StateSyncRequest{StateSyncRequest: &StateSyncRequest{Epoch: 4, NodeId: "d", HaveStep: 99}}},
		{Body: &Control_Goodbye{Goodbye: &Goodbye{DataStreams: 1234}}},
		{Body: &Control_GoodbyeAck{GoodbyeAck: &GoodbyeAck{}}},
	}
}

func headerSamples() []*DataHeader {
	return []*DataHeader{
		{},
		{Epoch: 1, Op: 2, Length: 1 << 20, Dtype: DType_DTYPE_FLOAT32, Chunk: 3, Offset: 3 << 20},
		{Epoch: 1, Op: 2, Length: 7},
		{Epoch: 5, Op: 1 << 63, Flags: uint32(DataFlag_DATA_FLAG_ABORT), AbortReason: "timeout"},
	}
}

func TestControlRoundTrip(t *testing.T) {
	for _, c := range controlSamples() {
		t.Run(string(c.ProtoReflect().WhichOneof(c.ProtoReflect().Descriptor().Oneofs().ByName("body")).Name()), func(t *testing.T) {
			frame, err := AppendFrame(nil, c, MaxControlSize)
			if err != nil {
				t.Fatal(err)
			}
			body, err := ReadFrame(bytes.NewReader(frame), make([]byte, MaxControlSize), MaxControlSize)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeControl(body)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, c) {
				t.Fatalf("round trip: got %v, want %v", got, c)
			}
		})
	}
}

func TestDataHeaderChecks(t *testing.T) {
	tests := []struct {
		name string
		h    *DataHeader
		want error
	}{
		{"empty", &DataHeader{}, nil},
		{"float32", &DataHeader{Length: 8, Dtype: DType_DTYPE_FLOAT32}, nil},
		{"at limit", &DataHeader{Length: 1024}, nil},
		{"over limit", &DataHeader{Length: 1025}, ErrFrameSize},
		{"partial float", &DataHeader{Length: 6, Dtype: DType_DTYPE_FLOAT32}, ErrMalformed},
		{"unknown dtype", &DataHeader{Dtype: 9}, ErrMalformed},
		{"unknown flag", &DataHeader{Flags: 2}, ErrMalformed},
		{"abort with payload", &DataHeader{Flags: 1, Length: 4}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := proto.Marshal(tt.h)
			if err != nil {
				t.Fatal(err)
			}
			_, err = DecodeDataHeader(b, 1024)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("DecodeDataHeader = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReadFrameBounds(t *testing.T) {
	prefix := func(n uint32, body ...byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, n), body...)
	}
	tests := []struct {
		name string
		in   []byte
		max  int
		want error
	}{
		{"empty stream", nil, 16, io.EOF},
		{"short prefix", []byte{0, 0}, 16, io.ErrUnexpectedEOF},
		{"short body", prefix(4, 1, 2), 16, io.ErrUnexpectedEOF},
		{"over max", prefix(17), 16, ErrFrameSize},
		{"huge", prefix(0xffffffff), 16, ErrFrameSize},
		{"over buffer", prefix(40), 1 << 20, ErrFrameSize},
		{"exact", prefix(2, 9, 9), 16, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(tt.in), make([]byte, 32), tt.max)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("ReadFrame = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestControlWithoutBodyRejected(t *testing.T) {
	if _, err := DecodeControl(nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("DecodeControl(empty) = %v, want ErrMalformed", err)
	}
}

func TestAppendFrameRefusesOversize(t *testing.T) {
	c := &Control{Body: &Control_Abort{Abort: &Abort{Reason: string(bytes.Repeat([]byte("x"), 100))}}}
	dst, err := AppendFrame([]byte{1}, c, 50)
	if !errors.Is(err, ErrFrameSize) || len(dst) != 1 {
		t.Fatalf("AppendFrame = %d bytes, %v; want ErrFrameSize and dst untouched", len(dst), err)
	}
}

func TestReadFrameGrow(t *testing.T) {
	big := bytes.Repeat([]byte{7}, 300)
	in := append(binary.BigEndian.AppendUint32(nil, 3), 1, 2, 3)
	in = append(append(in, binary.BigEndian.AppendUint32(nil, 300)...), big...)
	in = append(in, binary.BigEndian.AppendUint32(nil, 301)...)
	r := bytes.NewReader(in)
	buf := make([]byte, 16)
	tests := []struct {
		name    string
		want    []byte
		wantErr error
		wantCap int
	}{
		{"fits", []byte{1, 2, 3}, nil, 16},
		{"grows", big, nil, 300},
		{"over max", nil, ErrFrameSize, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadFrameGrow(r, &buf, 300)
			if !errors.Is(err, tt.wantErr) || !bytes.Equal(got, tt.want) || len(buf) != tt.wantCap {
				t.Fatalf("got %d bytes, %v, buffer %d; want %d bytes, %v, buffer %d", len(got), err, len(buf), len(tt.want), tt.wantErr, tt.wantCap)
			}
		})
	}
}
