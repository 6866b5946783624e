package checkpoint

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func sample() ([]Tensor, map[string]string) {
	w := make([]float32, 6)
	for i := range w {
		w[i] = float32(i) - 1.5
	}
	return []Tensor{
			F32("layer0.weight", []int{2, 3}, w),
			F32("layer0.bias", []int{3}, []float32{1, 2, 3}),
			{Name: "ringtrain.state", DType: "U8", Shape: []int{5}, Data: []byte("hello")},
			F32("empty", []int{0, 4}, nil),
		}, map[string]string{
			"step": "42", "format": "ringtrain/1",
		}
}

func TestRoundTrip(t *testing.T) {
	ts, meta := sample()
	b, err := Encode(ts, meta)
	if err != nil {
		t.Fatal(err)
	}
	if hl := int(b[0]) | int(b[1])<<8; (8+hl)%8 != 0 {
		t.Errorf("data not 8-byte aligned: header %d bytes", hl)
	}
	got, gm, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ts) || gm["step"] != "42" {
		t.Fatalf("got %d tensors, meta %v", len(got), gm)
	}
	for i := range ts {
		if got[i].Name != ts[i].Name || got[i].DType != ts[i].DType || fmt.Sprint(got[i].Shape) != fmt.Sprint(ts[i].Shape) || string(got[i].Data) != string(ts[i].Data) {
			t.Fatalf("tensor %d: got %+v, want %+v", i, got[i], ts[i])
		}
	}
	v, err := got[0].Floats()
	if err != nil || v[5] != 3.5 {
		t.Fatalf("Floats: %v %v", v, err)
	}
	if n, err := MetaInt(gm, "step"); err != nil || n != 42 {
		t.Fatalf("MetaInt: %d %v", n, err)
	}
}

func TestEncodeRejects(t *testing.T) {
	cases := []struct {
		name string
		t    Tensor
	}{
		{"shape mismatch", Tensor{Name: "x", DType: "F32", Shape: []int{3}, Data: make([]byte, 8)}},
		{"unknown dtype", Tensor{Name: "x", DType: "Q7", Shape: []int{1}, Data: make([]byte, 1)}},
		{"reserved name", Tensor{Name: "__metadata__", DType: "U8", Shape: []int{1}, Data: make([]byte, 1)}},
		{"negative dim", Tensor{Name: "x", DType: "U8", Shape: []int{-1}, Data: nil}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Encode([]Tensor{tc.t}, nil); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	hdr := func(s string) []byte {
		b := make([]byte, 8)
		b[0] = byte(len(s))
		return append(b, s...)
	}
	cases := []struct {
		name string
		b    []byte
	}{
		{"short", []byte{1, 2}},
		{"header past end", []byte{200, 0, 0, 0, 0, 0, 0, 0, '{'}},
		{"huge header length", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"bad json", hdr("{")},
		{"offsets past end", hdr(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`)},
		{"shape vs offsets", append(hdr(`{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,4]}}`), 1, 2, 3, 4)},
		{"hole", append(hdr(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}`), 1, 2, 3, 4)},
		{"negative offset", append(hdr(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[-2,0]}}`), 1, 2)},
		{"overflowing shape", hdr(`{"a":{"dtype":"F64","shape":[4611686018427387904,4],"data_offsets":[0,0]}}`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := Decode(tc.b); !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v, want ErrFormat", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	ts, meta := sample()
	b, _ := Encode(ts, meta)
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, meta, err := Decode(b)
		if err != nil {
			return
		}
		// What decodes must re-encode and decode to the same tensors.
		b2, err := Encode(ts, meta)
		if err != nil {
			t.Fatalf("decoded tensors do not re-encode: %v", err)
		}
		ts2, _, err := Decode(b2)
		if err != nil || len(ts2) != len(ts) {
			t.Fatalf("round trip: %v", err)
		}
		for i := range ts {
			if ts[i].Name != ts2[i].Name || string(ts[i].Data) != string(ts2[i].Data) {
				t.Fatalf("round trip changed tensor %d", i)
			}
		}
	})
}

func TestPythonReadsIt(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	ts, meta := sample()
	path := filepath.Join(t.TempDir(), "model.safetensors")
	if err := WriteFile(path, ts, meta); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "testdata/read_safetensors.py", path).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"meta step 42", "tensor layer0.weight F32 2x3 sum=6", "tensor layer0.bias F32 3 sum=6", "tensor ringtrain.state U8 5 bytes=5"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("python output lacks %q:\n%s", want, out)
		}
	}
}

// TestKilledWriterLeavesPrevious kills a process in the middle of writing a
// large checkpoint over an existing one: the old one must still load.
func TestKilledWriterLeavesPrevious(t *testing.T) {
	if os.Getenv("CHECKPOINT_CHILD") != "" {
		big := make([]float32, 16<<20) // 64 MiB: the write takes a while
		// Bounded, so an orphaned child ends by itself.
		for range 200 {
			_ = WriteFile(os.Getenv("CHECKPOINT_CHILD"), []Tensor{F32("w", []int{len(big)}, big)}, map[string]string{"step": "2"})
		}
		return
	}
	path := filepath.Join(t.TempDir(), "ckpt.safetensors")
	ts, meta := sample()
	if err := WriteFile(path, ts, meta); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledWriterLeavesPrevious$")
	cmd.Env = append(os.Environ(), "CHECKPOINT_CHILD="+path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once a temporary file exists, i.e. during a write.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if tmp, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".ckpt.safetensors.tmp-*")); len(tmp) > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("child never started writing")
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	got, gm, err := ReadFile(path)
	if err != nil {
		t.Fatalf("previous checkpoint no longer loads: %v", err)
	}
	// The kill lands during a write; if it came right after a rename the
	// file is the child's complete checkpoint, which is intact too. What
	// must never happen is a torn or unloadable file.
	switch {
	case gm["step"] == "42" && len(got) == len(ts):
	case gm["step"] == "2" && len(got) == 1 && len(got[0].Data) == 64<<20:
		t.Log("the kill came just after a complete write")
	default:
		t.Fatalf("checkpoint damaged: step %q, %d tensors", gm["step"], len(got))
	}
	// The next write cleans up the dead writer's temporary file.
	if err := WriteFile(path, ts, meta); err != nil {
		t.Fatal(err)
	}
	if tmp, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".ckpt.safetensors.tmp-*")); len(tmp) > 0 {
		t.Fatalf("stale temporary files remain: %v", tmp)
	}
}
