package scaling

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ringtrain/ringtrain/bench/sim"
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
		return fmt.Sprintf("TF 0.8 PS (comparison) %s %s %gG", c.mode, c.wire, c.gbit)
	}
	return fmt.Sprintf("%s %s %gG %gc", c.mode, c.wire, c.gbit, c.cores)
}

// writeSummary writes scaling_summary.md into dir: the efficiency at the
// largest n of every ring mode × wire dtype at 25 and 100 Gbit/s with the
// most cores, the first mode × wire with the fewest cores, and the
// parameter servers' first mode, each column naming its mode; the letters
// say what limits the step.
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
		for _, g := range rates {
			cols = append(cols, summaryColumn{"ring", mws[0].mode, mws[0].wire.String(), g, least})
		}
	}
	for _, g := range rates {
		cols = append(cols, summaryColumn{"ps", mws[0].mode, mws[0].wire.String(), g, most})
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
	fmt.Fprintf(&b, "Efficiency at %d GPUs, 1 GPU per node, transport %s, α = %g µs, trainer buckets %d B.\n", maxN, o.transport, o.alphaUS, int(o.bucketBytes))
	b.WriteString("Columns: overlap mode (none: one all-reduce after backward; bucketed: collective.Bucketer buckets launched as backward makes them ready), wire dtype, link Gbit/s, transport cores.\n")
	b.WriteString("Limit: L link, Q QUIC CPU, C compute (communication hidden), S parameter-server link, A per-chunk overhead.\n\n")
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
	path := filepath.Join(dir, "scaling_summary.md")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}
