package scaling

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"text/tabwriter"

	"github.com/ringtrain/ringtrain/bench/profile"
	"github.com/ringtrain/ringtrain/bench/sim"
	"github.com/ringtrain/ringtrain/collective"
)

// feature is one change to ringtrain (or its deployment) whose effect on the
// largest-n efficiency the feature table estimates.
type feature struct {
	name  string
	apply func(net *sim.Net, st *sim.Step) error
}

// features returns the variants, each applied to the base configuration.
func (o scalingOpts) features() []feature {
	overlap := func(net *sim.Net, st *sim.Step) error {
		st.Overlap, st.BucketBytes = true, o.bucketBytes
		return nil
	}
	fp16 := func(net *sim.Net, st *sim.Step) error { st.Wire = collective.Float16; return nil }
	cores64 := func(net *sim.Net, st *sim.Step) error { net.Transport.Cores = 64; return nil }
	all := func(fs ...func(*sim.Net, *sim.Step) error) func(*sim.Net, *sim.Step) error {
		return func(net *sim.Net, st *sim.Step) error {
			for _, f := range fs {
				if err := f(net, st); err != nil {
					return err
				}
			}
			return nil
		}
	}
	perNode := func(hier bool) func(*sim.Net, *sim.Step) error {
		return func(net *sim.Net, st *sim.Step) error {
			st.GPUsPerNode, st.Hierarchical, st.IntraBytesPerSec = 4, hier, o.intraGBs*1e9
			return nil
		}
	}
	return []feature{
		{"base", func(*sim.Net, *sim.Step) error { return nil }},
		{"bucketed overlap", overlap},
		{"4 MiB chunks", func(net *sim.Net, st *sim.Step) error { net.Ring.ChunkBytes = 4 << 20; return nil }},
		{"64 cores", cores64},
		{"fp16 grads", fp16},
		{"tcp lanes", func(net *sim.Net, st *sim.Step) error {
			// TLS over several TCP connections per neighbour (the
			// trainer's --lanes): the tcp cost per byte without the
			// one-connection cap.
			tr, err := sim.TransportPreset("tcp-tls", net.Transport.Cores)
			net.Transport = tr
			return err
		}},
		{"overlap+fp16", all(overlap, fp16)},
		{"overlap+fp16+64c", all(overlap, fp16, cores64)},
		{"4/node flat", perNode(false)},
		{"4/node hier", perNode(true)},
	}
}

// featRow is the efficiency of every feature for one configuration.
type featRow struct {
	gpu, model string
	gbit       float64
	cores      float64
	n          int
	eff        []float64
	limit      []string
}

// featureTable simulates every feature at the largest n, 25 and 100 Gbit/s
// (those of --gbit), with the most transport cores of --cores, starting from
// the first mode of --modes.
func featureTable(o scalingOpts, profs []profile.Profile) ([]featRow, error) {
	n := slices.Max(o.ns)
	cores := slices.Max(o.cores)
	var rows []featRow
	// The features change the bucket plan only through overlap and the
	// wire dtype: one plan of each per profile.
	type planKey struct {
		overlap bool
		wire    collective.DType
	}
	for _, p := range profs {
		tl := p.Timeline()
		plans := map[planKey][]sim.Bucket{}
		for _, gbit := range o.gbits {
			if gbit != 25 && gbit != 100 {
				continue
			}
			fr := featRow{gpu: gpuName(p), model: p.Model, gbit: gbit, cores: cores, n: n}
			for _, f := range o.features() {
				net, err := o.baseNet(gbit, cores)
				if err != nil {
					return nil, err
				}
				st := o.step(sim.DesignRing, modeWire{o.modes[0], o.wires[0]})
				if err := f.apply(&net, &st); err != nil {
					return nil, err
				}
				k := planKey{st.Overlap, st.Wire}
				if plans[k] == nil {
					if plans[k], err = st.Buckets(tl); err != nil {
						return nil, fmt.Errorf("feature %s, %s: %w", f.name, p.Model, err)
					}
				}
				st.Plan = plans[k]
				r, err := sim.Simulate(tl, p.BatchPerGPU, n, net, st)
				if err != nil {
					return nil, fmt.Errorf("feature %s, %s: %w", f.name, p.Model, err)
				}
				fr.eff = append(fr.eff, r.Efficiency)
				fr.limit = append(fr.limit, string(r.Limit))
			}
			rows = append(rows, fr)
		}
	}
	return rows, nil
}

// writeFeatures prints the feature table and writes scaling_features.csv.
func writeFeatures(out io.Writer, dir string, rows []featRow) error {
	if len(rows) == 0 {
		return nil
	}
	o := scalingOpts{}
	names := make([]string, 0, 10)
	for _, f := range o.features() {
		names = append(names, f.name)
	}
	fmt.Fprintf(out, "\nEfficiency at %d GPUs with each feature (ring, %g transport cores; base limit in brackets)\n", rows[0].n, rows[0].cores)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "gpu\tmodel\tGbit/s")
	for _, n := range names {
		fmt.Fprintf(tw, "\t%s", n)
	}
	fmt.Fprintln(tw)
	f, err := os.Create(filepath.Join(dir, "scaling_features.csv"))
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"gpu", "model", "link_gbit", "transport_cores", "n", "feature", "efficiency", "limit"})
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%g", r.gpu, r.model, r.gbit)
		for i, e := range r.eff {
			if i == 0 {
				fmt.Fprintf(tw, "\t%.1f%% [%s]", 100*e, r.limit[0])
			} else {
				fmt.Fprintf(tw, "\t%.1f%%", 100*e)
			}
			w.Write([]string{r.gpu, r.model, strconv.FormatFloat(r.gbit, 'g', -1, 64), strconv.FormatFloat(r.cores, 'g', -1, 64),
				strconv.Itoa(r.n), names[i], strconv.FormatFloat(e, 'f', 4, 64), r.limit[i]})
		}
		fmt.Fprintln(tw)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return tw.Flush()
}
