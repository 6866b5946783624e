package scaling

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ringtrain/ringtrain/bench/sim"
	"github.com/ringtrain/ringtrain/collective"
)

// limitLetter abbreviates a limit in the summary table.
func limitLetter(l string) string {
	switch sim.Limit(l) {
	case sim.LimitLink:
		return "L"
	case sim.LimitCPU, sim.LimitPlateau:
		return "Q"
	case sim.LimitCompute:
		return "C"
	case sim.LimitPSServer:
		return "S"
	case sim.LimitChunk:
		return "A"
	}
	return "?"
}

// summaryColumn is one column of the 100-GPU table: a ring mode the
// trainer has (overlap mode and wire dtype) at one link rate and core
// count, or the parameter-server comparison.
type summaryColumn struct {
	design     string
	mode, wire string
	gbit       float64
	cores      float64
}

func (c summaryColumn) header() string {
	if c.design == string(sim.DesignPS) {
		return fmt.Sprintf("TF 0.8 PS %gG", c.gbit)
	}
	return fmt.Sprintf("%s %s %gG %gc", c.mode, c.wire, c.gbit, c.cores)
}

// trainerFlags are the cmd/trainer flags that select mode mw with buckets
// of bucketBytes (float32 bytes): "default flags" for the trainer's
// default (bucketed, collective.DefaultBucketBytes, fp32).
func trainerFlags(mw modeWire, bucketBytes float64) string {
	var f []string
	switch {
	case mw.mode == "none":
		f = append(f, "--bucket-bytes 0")
	case int(bucketBytes) != collective.DefaultBucketBytes:
		f = append(f, fmt.Sprintf("--bucket-bytes %d", int(bucketBytes)))
	}
	if mw.wire != collective.Float32 {
		f = append(f, "--wire-dtype "+mw.wire.String())
	}
	if len(f) == 0 {
		return "default flags"
	}
	return strings.Join(f, " ")
}

// defaultMode is the trainer's default mode among mws (bucketed fp32), or
// the first of them.
func defaultMode(mws []modeWire) modeWire {
	for _, mw := range mws {
		if mw.mode == "bucketed" && mw.wire == collective.Float32 {
			return mw
		}
	}
	return mws[0]
}

// writeSummary writes scaling_summary.md into dir: the efficiency at the
// largest n of every ring mode × wire dtype at 25 and 100 Gbit/s with the
// most cores and the trainer's default mode with the fewest cores, each
// column a mode the trainer has (the legend names its flags), then the
// parameter servers' first mode as a separate comparison; the letters say
// what limits the step.
func writeSummary(dir string, o scalingOpts, rows []simRow) (string, error) {
	maxN := 0
	for _, r := range rows {
		maxN = max(maxN, r.N)
	}
	rates := slices.DeleteFunc(slices.Clone(o.gbits), func(g float64) bool { return g != 25 && g != 100 })
	most, least := slices.Max(o.cores), slices.Min(o.cores)
	mws := modeWires(o.modes, o.wires)
	var cols []summaryColumn
	for _, g := range rates {
		for _, mw := range mws {
			cols = append(cols, summaryColumn{"ring", mw.mode, mw.wire.String(), g, most})
		}
	}
	if least != most {
		d := defaultMode(mws)
		for _, g := range rates {
			cols = append(cols, summaryColumn{"ring", d.mode, d.wire.String(), g, least})
		}
	}
	var psCols []summaryColumn
	for _, g := range rates {
		psCols = append(psCols, summaryColumn{"ps", mws[0].mode, mws[0].wire.String(), g, most})
	}
	type key struct{ gpu, model string }
	var keys []key
	cell := map[key]map[summaryColumn]string{}
	for _, r := range rows {
		if r.N != maxN {
			continue
		}
		k := key{r.GPU, r.Model}
		if cell[k] == nil {
			keys = append(keys, k)
			cell[k] = map[summaryColumn]string{}
		}
		c := summaryColumn{r.Design, r.Mode, r.Wire, r.Gbit, r.Cores}
		cell[k][c] = fmt.Sprintf("%.1f%% %s", 100*r.Efficiency, limitLetter(r.Limit))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Efficiency at %d GPUs, 1 GPU per node, transport %s, α = %g µs, ring chunk %g KiB, trainer buckets %d B.\n",
		maxN, o.transport, o.alphaUS, o.chunkKiB, int(o.bucketBytes))
	b.WriteString("Every column is a mode of the trainer (cmd/trainer flags), at a link rate (Gbit/s) and transport cores per node:\n\n")
	for _, mw := range mws {
		what := "collective.Bucketer buckets, each all-reduced as soon as backward has made its gradients ready"
		if mw.mode == "none" {
			what = "one all-reduce of the whole gradient arena after backward"
		}
		fmt.Fprintf(&b, "- `%s %s`: `%s` (%s, %s on the wire)\n", mw.mode, mw.wire, trainerFlags(mw, o.bucketBytes), what, mw.wire)
	}
	b.WriteString("\nLimit: L link, Q transport CPU (or one connection's cap), C compute (communication hidden), S parameter-server link, A per-chunk overhead.\n\n")
	table := func(cols []summaryColumn) {
		b.WriteString("| GPU | model |")
		for _, c := range cols {
			b.WriteString(" " + c.header() + " |")
		}
		b.WriteString("\n|---|---|" + strings.Repeat("---|", len(cols)) + "\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "| %s | %s |", k.gpu, k.model)
			for _, c := range cols {
				v := cell[k][c]
				if v == "" {
					v = "-"
				}
				b.WriteString(" " + v + " |")
			}
			b.WriteString("\n")
		}
	}
	table(cols)
	fmt.Fprintf(&b, "\nFor comparison, not a mode of the trainer: the TensorFlow 0.8 parameter-server design (%d servers, %s %s step), %g cores:\n\n",
		o.psServers, mws[0].mode, mws[0].wire, most)
	table(psCols)
	path := filepath.Join(dir, "scaling_summary.md")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}
