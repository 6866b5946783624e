package scaling

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"

	"github.com/ringtrain/ringtrain/bench/profile"
	"github.com/ringtrain/ringtrain/bench/sim"
)

// simRow is one simulated configuration, as written to CSV and JSON.
type simRow struct {
	GPU          string  `json:"gpu"`
	Model        string  `json:"model"`
	Batch        int     `json:"batch_per_gpu"`
	Design       string  `json:"design"`
	Mode         string  `json:"mode"`
	Wire         string  `json:"wire"`
	Gbit         float64 `json:"link_gbit"`
	Cores        float64 `json:"transport_cores"`
	Transport    string  `json:"transport"`
	N            int     `json:"n"`
	StepMs       float64 `json:"step_ms"`
	OneGPUMs     float64 `json:"one_gpu_step_ms"`
	ImagesPerSec float64 `json:"images_per_s"`
	Efficiency   float64 `json:"efficiency"`
	CommMs       float64 `json:"comm_ms"`
	ExposedMs    float64 `json:"exposed_comm_ms"`
	RateGBs      float64 `json:"node_rate_gb_per_s"`
	RateLimit    string  `json:"rate_limit"`
	Limit        string  `json:"limit"`
	Buckets      int     `json:"buckets"`
	ChunkKiB     float64 `json:"chunk_kib"`
	AlphaUS      float64 `json:"alpha_us"`
	PSServers    int     `json:"ps_servers,omitempty"`
	PerNode      int     `json:"gpus_per_node,omitempty"`
	Hierarchical bool    `json:"hierarchical,omitempty"`
	WireBytes    float64 `json:"grad_bytes_per_param"`
}

func gpuName(p profile.Profile) string {
	if p.Derived != "" {
		return p.GPU
	}
	return "H200"
}

// step builds the sim.Step of a design and trainer mode.
func (o scalingOpts) step(design sim.Design, mw modeWire) sim.Step {
	st := sim.Step{Design: design, Wire: mw.wire}
	if design == sim.DesignPS {
		st.PSServers = o.psServers
	} else {
		st.GPUsPerNode, st.Hierarchical, st.IntraBytesPerSec = o.perNode, o.hier, o.intraGBs*1e9
	}
	if mw.mode == "bucketed" {
		st.Overlap, st.BucketBytes = true, o.bucketBytes
	}
	return st
}

// simulateGrid runs every profile × mode × wire dtype × design × rate ×
// cores × n.
func simulateGrid(ctx context.Context, o scalingOpts, profs []profile.Profile) ([]simRow, error) {
	var rows []simRow
	for _, p := range profs {
		tl := p.Timeline()
		for _, mw := range modeWires(o.modes, o.wires) {
			// One bucket plan (the trainer's) for every design, rate and n.
			plan, err := o.step(sim.DesignRing, mw).Buckets(tl)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", p.Model, mw, err)
			}
			for _, design := range []sim.Design{sim.DesignRing, sim.DesignPS} {
				for _, gbit := range o.gbits {
					for _, cores := range o.cores {
						if err := ctx.Err(); err != nil {
							return nil, err
						}
						net, err := o.baseNet(gbit, cores)
						if err != nil {
							return nil, err
						}
						st := o.step(design, mw)
						st.Plan = plan
						for _, n := range o.ns {
							r, err := sim.Simulate(tl, p.BatchPerGPU, n, net, st)
							if err != nil {
								return nil, fmt.Errorf("%s %s n=%d: %w", p.Model, design, n, err)
							}
							rows = append(rows, simRow{GPU: gpuName(p), Model: p.Model, Batch: p.BatchPerGPU,
								Design: string(design), Mode: mw.mode, Wire: mw.wire.String(), Gbit: gbit, Cores: cores, Transport: net.Transport.Name,
								N: n, StepMs: sig6(1000 * r.StepSec), OneGPUMs: sig6(1000 * r.OneGPUSec), ImagesPerSec: sig6(r.ImagesPerSec),
								Efficiency: sig6(r.Efficiency), CommMs: sig6(1000 * r.CommSec), ExposedMs: sig6(1000 * r.ExposedSec),
								RateGBs: sig6(r.BytesPerSec / 1e9), RateLimit: string(r.RateLimit), Limit: string(r.Limit),
								Buckets: r.Buckets, ChunkKiB: o.chunkKiB, AlphaUS: o.alphaUS, PSServers: st.PSServers,
								PerNode: st.GPUsPerNode, Hierarchical: st.Hierarchical, WireBytes: float64(mw.wire.Size())})
						}
					}
				}
			}
		}
	}
	return rows, nil
}

// sig6 rounds v to 6 significant digits, all the output files keep.
func sig6(v float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 6, 64), 64)
	return r
}

// writeRows writes scaling_sim.csv and scaling_sim.json into dir.
func writeRows(dir string, rows []simRow) error {
	// One row per line: compact, and diffs stay readable.
	js := []byte("[\n")
	for i, r := range rows {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		js = append(js, b...)
		if i < len(rows)-1 {
			js = append(js, ',')
		}
		js = append(js, '\n')
	}
	js = append(js, "]\n"...)
	if err := os.WriteFile(filepath.Join(dir, "scaling_sim.json"), js, 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "scaling_sim.csv"))
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"gpu", "model", "batch_per_gpu", "design", "mode", "wire", "link_gbit", "transport_cores", "transport", "n",
		"step_ms", "one_gpu_step_ms", "images_per_s", "efficiency", "comm_ms", "exposed_comm_ms", "node_rate_gb_per_s",
		"rate_limit", "limit", "buckets", "chunk_kib", "alpha_us", "ps_servers", "gpus_per_node", "hierarchical",
		"grad_bytes_per_param"})
	ff := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	for _, r := range rows {
		w.Write([]string{r.GPU, r.Model, strconv.Itoa(r.Batch), r.Design, r.Mode, r.Wire, ff(r.Gbit), ff(r.Cores), r.Transport,
			strconv.Itoa(r.N), ff(r.StepMs), ff(r.OneGPUMs), ff(r.ImagesPerSec), ff(r.Efficiency), ff(r.CommMs),
			ff(r.ExposedMs), ff(r.RateGBs), r.RateLimit, r.Limit, strconv.Itoa(r.Buckets), ff(r.ChunkKiB), ff(r.AlphaUS),
			strconv.Itoa(r.PSServers), strconv.Itoa(r.PerNode), strconv.FormatBool(r.Hierarchical), ff(r.WireBytes)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// printSummary prints the efficiency at the largest n for 25 and 100 Gbit/s.
func printSummary(out io.Writer, o scalingOpts, rows []simRow) error {
	maxN := 0
	for _, r := range rows {
		maxN = max(maxN, r.N)
	}
	for _, c := range o.cores {
		net, err := o.baseNet(1e6, c) // a link far faster than any transport
		if err != nil {
			return err
		}
		if x, lim := net.RingRate(1); lim != sim.LimitLink {
			fmt.Fprintf(out, "transport %s with %g cores caps a ring peer at %.2f GB/s per direction (%s): links faster than %.1f Gbit/s are not filled\n",
				o.transport, c, x/1e9, lim, x*8/sim.DefaultGoodput/1e9)
		}
	}
	fmt.Fprintf(out, "Scaling efficiency at %d GPUs (ring = ringtrain, ps = TF 0.8 parameter servers); limit: what bounds the step\n", maxN)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "gpu\tmodel\tdesign\tmode\twire\tGbit/s\tcores\tstep ms\timages/s\tefficiency\tnode GB/s\trate set by\tlimit")
	for _, r := range rows {
		if r.N != maxN || (r.Gbit != 25 && r.Gbit != 100) {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%g\t%g\t%.1f\t%.0f\t%.1f%%\t%.2f\t%s\t%s\n", r.GPU, r.Model, r.Design, r.Mode, r.Wire,
			r.Gbit, r.Cores, r.StepMs, r.ImagesPerSec, 100*r.Efficiency, r.RateGBs, r.RateLimit, r.Limit)
	}
	return tw.Flush()
}
