package allreduce

import (
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// writePlots writes base+"-busbw.png" (busbw vs size, one line per system
// and n) and, when more than one n was measured, base+"-time-vs-n.png"
// (all-reduce time vs n at the largest size, ring vs parameter server and
// the others).
func writePlots(base string, rows []Row) error {
	if err := plotBusBW(base+"-busbw.png", rows); err != nil {
		return err
	}
	return plotTimeVsN(base+"-time-vs-n.png", rows)
}

func plotBusBW(path string, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = "all-reduce bus bandwidth, links " + rows[0].Links
	p.X.Label.Text = "size (bytes)"
	p.Y.Label.Text = "busbw (MB/s)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	series := map[string]plotter.XYs{}
	var names []string
	for _, r := range rows {
		if r.System == "rawquic" || r.Bytes == 0 {
			continue
		}
		name := fmt.Sprintf("%s n=%d", r.Label(), r.N)
		if _, ok := series[name]; !ok {
			names = append(names, name)
		}
		series[name] = append(series[name], plotter.XY{X: float64(r.Bytes), Y: r.BusBW / 1e6})
	}
	if len(names) == 0 {
		return nil
	}
	var vs []any
	for _, n := range names {
		vs = append(vs, n, series[n])
	}
	if err := plotutil.AddLinePoints(p, vs...); err != nil {
		return err
	}
	// The reference goodput as a horizontal line across the sizes (which
	// also keeps a one-size plot readable).
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, xy := range series {
		for _, pt := range xy {
			lo, hi = math.Min(lo, pt.X), math.Max(hi, pt.X)
		}
	}
	for _, r := range rows {
		if r.System == "rawquic" {
			ref, err := plotter.NewLine(plotter.XYs{{X: lo / 2, Y: r.BusBW / 1e6}, {X: hi * 2, Y: r.BusBW / 1e6}})
			if err != nil {
				return err
			}
			ref.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
			p.Add(ref)
			p.Legend.Add(fmt.Sprintf("raw quic-go stream (%s)", r.Links), ref)
		}
	}

	// Loopback sweeps span orders of magnitude: a log axis keeps the
	// small sizes readable.
	ylo, yhi := math.Inf(1), math.Inf(-1)
	for _, xy := range series {
		for _, pt := range xy {
			ylo, yhi = math.Min(ylo, pt.Y), math.Max(yhi, pt.Y)
		}
	}
	if ylo > 0 && yhi/ylo > 100 {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	} else {
		p.Y.Min = 0
	}
	p.Legend.Top = true
	p.Legend.Left = true
	return p.Save(9*vg.Inch, 6*vg.Inch, path)
}

func plotTimeVsN(path string, rows []Row) error {
	var largest int64
	ns := map[int]bool{}
	for _, r := range rows {
		if r.System != "rawquic" {
			largest = max(largest, r.Bytes)
			ns[r.N] = true
		}
	}
	if len(ns) < 2 {
		return nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("all-reduce time vs n at %d bytes, links %s", largest, rows[0].Links)
	p.X.Label.Text = "n (peers)"
	p.Y.Label.Text = "median time (s)"
	series := map[string]plotter.XYs{}
	var names []string
	for _, r := range rows {
		if r.System == "rawquic" || r.Bytes != largest {
			continue
		}
		if _, ok := series[r.Label()]; !ok {
			names = append(names, r.Label())
		}
		series[r.Label()] = append(series[r.Label()], plotter.XY{X: float64(r.N), Y: r.Median})
	}
	var vs []any
	for _, n := range names {
		xy := series[n]
		sort.Slice(xy, func(i, j int) bool { return xy[i].X < xy[j].X })
		vs = append(vs, n, xy)
	}
	if err := plotutil.AddLinePoints(p, vs...); err != nil {
		return err
	}
	p.Legend.Top = true
	p.Legend.Left = true
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}
