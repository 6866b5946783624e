package scaling

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/ringtrain/ringtrain/bench/sim"
	"github.com/ringtrain/ringtrain/collective"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// reference is a published scaling-efficiency point drawn on the plots.
type reference struct {
	label string
	n     float64
	eff   float64
	shape draw.GlyphDrawer
}

// references returns the published points for a model (published.md).
func references(model string) []reference {
	tf08 := "TF 0.8 PS, K40 (56× at 100)"
	hvd := "Horovod, P100, 25 Gbit/s RoCE"
	ec2 := "TF PS, EC2 K80 (2017)"
	goyal := "Goyal et al., P100 (8→256)"
	tri, box, ring, cross := draw.TriangleGlyph{}, draw.BoxGlyph{}, draw.RingGlyph{}, draw.CrossGlyph{}
	switch model {
	case "inception_v3":
		return []reference{{tf08, 100, 0.56, tri}, {hvd, 128, 0.90, box}, {hvd, 512, 0.90, box}, {ec2, 64, 0.938, ring}}
	case "resnet50":
		return []reference{{ec2, 64, 0.818, ring}, {goyal, 256, 0.90, cross}}
	case "resnet101":
		return []reference{{hvd, 128, 0.90, box}, {hvd, 512, 0.90, box}}
	case "vgg16":
		return []reference{{hvd, 128, 0.79, box}, {hvd, 512, 0.68, box}}
	}
	return nil
}

// plotRows draws one PNG per GPU, model and overlap mode: efficiency vs GPUs,
// one colour per link rate; ring with 32 (solid) and 8 (dashed) transport
// cores, parameter servers dotted; published points as marks.
func plotRows(o scalingOpts, rows []simRow) ([]string, error) {
	type key struct{ gpu, model, mode, wire string }
	var keys []key
	for _, r := range rows {
		k := key{r.GPU, r.Model, r.Mode, r.Wire}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	coreSet := slices.Clone(o.cores)
	slices.Sort(coreSet)
	var files []string
	for _, k := range keys {
		p := plot.New()
		how := "one all-reduce after backward"
		if k.mode == "bucketed" {
			how = fmt.Sprintf("trainer's %g MiB buckets overlapping backward", o.bucketBytes/(1<<20))
		}
		if k.wire != collective.Float32.String() {
			how += ", " + k.wire + " wire"
		}
		p.Title.Text = fmt.Sprintf("%s on %s: %s, %s", k.model, k.gpu, how, o.transport)
		p.X.Label.Text = "GPUs"
		p.Y.Label.Text = "scaling efficiency"
		p.X.Scale = plot.LogScale{}
		p.Y.Min, p.Y.Max = 0, 1.05
		maxX := float64(slices.Max(o.ns))
		refs := references(k.model)
		for _, r := range refs {
			maxX = max(maxX, r.n)
		}
		p.X.Min, p.X.Max = float64(slices.Min(o.ns))*0.9, max(maxX*1.1, 10*float64(slices.Max(o.ns)))
		var ticks []plot.Tick
		for _, t := range []float64{1, 2, 4, 8, 16, 32, 64, 100, 128, 256, 512, 1024} {
			if t >= p.X.Min && t <= p.X.Max {
				ticks = append(ticks, plot.Tick{Value: t, Label: strconv.FormatFloat(t, 'f', -1, 64)})
			}
		}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		// The legend sits bottom right, beyond the largest simulated n and
		// below the published points, where no curve runs.
		p.Legend.Top, p.Legend.Left = false, false
		p.Legend.TextStyle.Font.Size = vg.Points(7)
		p.Add(plotter.NewGrid())
		for gi, gbit := range o.gbits {
			for _, series := range []struct {
				design string
				cores  float64
				dashes []vg.Length
				label  string
			}{
				{"ring", coreSet[len(coreSet)-1], nil, "ring"},
				{"ring", coreSet[0], []vg.Length{vg.Points(5), vg.Points(3)}, "ring"},
				{"ps", coreSet[len(coreSet)-1], []vg.Length{vg.Points(1), vg.Points(2)}, fmt.Sprintf("PS×%d", o.psServers)},
			} {
				if series.design == "ring" && len(coreSet) == 1 && series.dashes != nil {
					continue
				}
				var xys plotter.XYs
				cpuBound := false
				for _, r := range rows {
					if r.GPU == k.gpu && r.Model == k.model && r.Mode == k.mode && r.Wire == k.wire && r.Design == series.design &&
						r.Gbit == gbit && r.Cores == series.cores {
						xys = append(xys, plotter.XY{X: float64(r.N), Y: r.Efficiency})
						cpuBound = cpuBound || r.RateLimit != string(sim.LimitLink)
					}
				}
				if len(xys) == 0 {
					continue
				}
				l, pts, err := plotter.NewLinePoints(xys)
				if err != nil {
					return nil, err
				}
				l.Color, pts.Color = plotutil.Color(gi), plotutil.Color(gi)
				l.Dashes = series.dashes
				pts.Radius = vg.Points(1.5)
				p.Add(l, pts)
				label := fmt.Sprintf("%s %g Gbit/s, %g cores", series.label, gbit, series.cores)
				if cpuBound {
					label += " (transport CPU-bound)"
				}
				p.Legend.Add(label, l)
			}
		}
		seen := map[string]bool{}
		for _, r := range refs {
			s, err := plotter.NewScatter(plotter.XYs{{X: r.n, Y: r.eff}})
			if err != nil {
				return nil, err
			}
			s.GlyphStyle.Shape, s.GlyphStyle.Radius = r.shape, vg.Points(4)
			p.Add(s)
			if !seen[r.label] {
				seen[r.label] = true
				p.Legend.Add(r.label, s)
			}
		}
		base := fmt.Sprintf("scaling_%s_%s_%s", k.gpu, k.model, k.mode)
		if k.wire != collective.Float32.String() {
			base += "_" + k.wire
		}
		name := filepath.Join(o.out, base+".png")
		if err := p.Save(8*vg.Inch, 5*vg.Inch, name); err != nil {
			return nil, err
		}
		files = append(files, name)
	}
	return files, nil
}
