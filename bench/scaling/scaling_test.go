package scaling

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/bench/profile"
	"github.com/ringtrain/ringtrain/bench/sim"
)

const testProfile = "../calibration/h200_torch2.11.json"

func TestParseScalingRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"bad n", []string{"--n", "8,x"}},
		{"zero n", []string{"--n", "0"}},
		{"bad rate", []string{"--gbit", "-1"}},
		{"bad cores", []string{"--cores", "many"}},
		{"bad mode", []string{"--modes", "sometimes"}},
		{"stray argument", []string{"--simulate", "now"}},
		{"measure alpha without emulation", []string{"--measure-alpha", "--simulate"}},
		{"measure alpha on mem", []string{"--emulate", "--measure-alpha"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseScaling(tc.args); err == nil {
				t.Fatalf("parseScaling(%q) accepted", tc.args)
			}
		})
	}
	o, err := parseScaling(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := scaling(context.Background(), o, &bytes.Buffer{}); err == nil {
		t.Fatal("no --simulate and no --validate: accepted")
	}
}

// TestSimulateWritesResults runs a small grid end to end and checks the files.
func TestSimulateWritesResults(t *testing.T) {
	dir := t.TempDir()
	o, err := parseScaling([]string{"--simulate", "--profile", testProfile, "--gpus", "h200,p100", "--models", "resnet50",
		"--n", "8,100", "--gbit", "25,100", "--cores", "8,32", "--out", dir})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := scaling(context.Background(), o, &out); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "scaling_sim.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	// 2 GPUs × 2 modes × 2 wire dtypes (fp32, bf16 by default) × 2 designs ×
	// 2 rates × 2 core counts × 2 n, plus a header.
	if want := 2*2*2*2*2*2*2 + 1; len(recs) != want {
		t.Fatalf("%d CSV records, want %d", len(recs), want)
	}
	var rows []simRow
	b, err := os.ReadFile(filepath.Join(dir, "scaling_sim.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rows); err != nil || len(rows) != len(recs)-1 {
		t.Fatalf("JSON: %d rows, %v", len(rows), err)
	}
	wires := map[string]float64{}
	for _, r := range rows {
		if !(r.Efficiency > 0 && r.Efficiency <= 1) {
			t.Errorf("%+v: efficiency out of (0,1]", r)
		}
		wires[r.Wire] = r.WireBytes
	}
	if len(wires) != 2 || wires["fp32"] != 4 || wires["bf16"] != 2 {
		t.Errorf("wire dtypes and their bytes per parameter %v, want fp32 4 and bf16 2", wires)
	}
	pngs, _ := filepath.Glob(filepath.Join(dir, "*.png"))
	if len(pngs) != 8 {
		t.Fatalf("%d plots, want 8 (2 GPUs × 2 modes × 2 wire dtypes)", len(pngs))
	}
	md, err := os.ReadFile(filepath.Join(dir, "scaling_summary.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| none fp32 25G 32c | none bf16 25G 32c | bucketed fp32 25G 32c | bucketed bf16 25G 32c |", "| bucketed fp32 25G 8c |",
		"- `bucketed fp32`: `default flags`", "- `none bf16`: `--bucket-bytes 0 --wire-dtype bf16`", "- `bucketed bf16`: `--wire-dtype bf16`",
		"| GPU | model | TF 0.8 PS 25G | TF 0.8 PS 100G |", "| P100 | resnet50 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("scaling_summary.md lacks %q:\n%s", want, md)
		}
	}
	for _, want := range []string{"transport tcp with 8 cores caps a ring peer at 1.38 GB/s per direction (transport-plateau)", "Efficiency at 100 GPUs with each feature", "P100  resnet50"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestValidateFile: an emulated run measured exactly at the simulator's
// prediction reports 0% error; one 25% faster reports -20%.
func TestValidateFile(t *testing.T) {
	f, err := profile.Load(testProfile)
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Find("resnet50", "")
	if err != nil {
		t.Fatal(err)
	}
	e := sim.Emulated{Backend: "quic-shaped", Model: "resnet50", N: 4, LinkBitsPerSec: 40e6, Scale: 2000, ChunkBytes: 16 << 10, MeasuredImagesPerSec: 1}
	tr, err := sim.FitShaped("quic-shaped", sim.ShapedQUICPoints(), 0, 2.0/4)
	if err != nil {
		t.Fatal(err)
	}
	v, err := sim.Validate(p, e, sim.Net{Transport: tr, Ring: sim.Ring{ReduceBytesPerSec: sim.DefaultReduceBytesPerSec}})
	if err != nil {
		t.Fatal(err)
	}
	exact, fast := e, e
	exact.MeasuredImagesPerSec = v.PredictedImagesPerSec
	fast.MeasuredImagesPerSec = v.PredictedImagesPerSec * 1.25
	b, _ := json.Marshal([]sim.Emulated{exact, fast})
	path := filepath.Join(t.TempDir(), "emulated.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := parseScaling([]string{"--validate", path, "--profile", testProfile})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := scaling(context.Background(), o, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"+0.0%", "-20.0%", "worst |error| 20.0%", "NOT met"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
