package scaling

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/ringtrain/ringtrain/bench/sim"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plotEmulated draws, per GPU profile, the emulated runs' scaling efficiency
// against n (measured: solid with points; the simulator's prediction of the
// same runs: dashed), one colour per model and overlap mode. Efficiency is
// against each series' own single peer. It writes base_GPU.png into dir.
func plotEmulated(dir, base string, vs []sim.Validation) ([]string, error) {
	gpuOf := func(v sim.Validation) string {
		if v.GPU == "" {
			return "h200"
		}
		return v.GPU
	}
	type key struct {
		model   string
		overlap bool
	}
	var gpus []string
	for _, v := range vs {
		if g := gpuOf(v); !slices.Contains(gpus, g) {
			gpus = append(gpus, g)
		}
	}
	var files []string
	for _, gpu := range gpus {
		var keys []key
		for _, v := range vs {
			if k := (key{v.Model, v.Overlap}); gpuOf(v) == gpu && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		p := plot.New()
		p.Title.Text = fmt.Sprintf("Scaled emulation (%s) on %s profiles: measured (solid) vs simulator (dashed)", vs[0].Backend, gpu)
		p.X.Label.Text = "peers (emulated GPUs)"
		p.Y.Label.Text = "scaling efficiency"
		// Room above 1 for the legend, clear of the curves.
		p.Y.Min, p.Y.Max = 0, 1.75
		var yt []plot.Tick
		for y := 0.0; y <= 1.0; y += 0.1 {
			yt = append(yt, plot.Tick{Value: y, Label: strconv.FormatFloat(y, 'f', 1, 64)})
		}
		p.Y.Tick.Marker = plot.ConstantTicks(yt)
		p.Legend.Top, p.Legend.Left = true, false
		p.Legend.TextStyle.Font.Size = vg.Points(7)
		p.Add(plotter.NewGrid())
		maxN := 1
		for ki, k := range keys {
			var meas, pred plotter.XYs
			var one, predOne float64
			for _, v := range vs {
				if gpuOf(v) != gpu || v.Model != k.model || v.Overlap != k.overlap {
					continue
				}
				if v.N == 1 {
					one, predOne = v.MeasuredImagesPerSec, v.PredictedImagesPerSec
				}
			}
			if one == 0 {
				continue // no single-peer run: no efficiency
			}
			for _, v := range vs {
				if gpuOf(v) != gpu || v.Model != k.model || v.Overlap != k.overlap {
					continue
				}
				n := float64(v.N)
				meas = append(meas, plotter.XY{X: n, Y: v.MeasuredImagesPerSec / (n * one)})
				pred = append(pred, plotter.XY{X: n, Y: v.PredictedImagesPerSec / (n * predOne)})
				maxN = max(maxN, v.N)
			}
			lm, pm, err := plotter.NewLinePoints(meas)
			if err != nil {
				return nil, err
			}
			ls, err := plotter.NewLine(pred)
			if err != nil {
				return nil, err
			}
			c := plotutil.Color(ki)
			lm.Color, pm.Color, ls.Color = c, c, c
			pm.Radius = vg.Points(2)
			ls.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			p.Add(lm, pm, ls)
			mode := "none"
			if k.overlap {
				mode = "bucketed"
			}
			p.Legend.Add(fmt.Sprintf("%s %s measured", k.model, mode), lm, pm)
			p.Legend.Add(fmt.Sprintf("%s %s simulated", k.model, mode), ls)
		}
		p.X.Min, p.X.Max = 0.5, float64(maxN)+0.5
		var ticks []plot.Tick
		for n := 1; n <= maxN; n++ {
			ticks = append(ticks, plot.Tick{Value: float64(n), Label: strconv.Itoa(n)})
		}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		name := filepath.Join(dir, fmt.Sprintf("%s_%s.png", base, gpu))
		if err := p.Save(8*vg.Inch, 5*vg.Inch, name); err != nil {
			return nil, err
		}
		files = append(files, name)
	}
	return files, nil
}
