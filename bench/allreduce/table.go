package allreduce

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Row is one measured (system, n, size) point, in nccl-tests terms: algbw =
// S/t and, for an all-reduce, busbw = algbw·2(n−1)/n, t being the median
// over the timed iterations of the slowest rank's time.
type Row struct {
	System    string    `json:"system"`    // ringtrain, ps, openmpi, gloo, rawquic
	Transport string    `json:"transport"` // quic, mem, tcp
	Links     string    `json:"links"`     // loopback or a tc rate such as 40mbit
	N         int       `json:"n"`         // all-reducing peers (workers)
	Servers   int       `json:"servers,omitempty"`
	Bytes     int64     `json:"bytes"` // S
	Count     int64     `json:"count"` // float32 elements
	Times     []float64 `json:"times_s"`
	Median    float64   `json:"median_s"`
	Min       float64   `json:"min_s"`
	Max       float64   `json:"max_s"`
	AlgBW     float64   `json:"algbw_Bps"`
	BusBW     float64   `json:"busbw_Bps"`
	// CPUPerGiB is the CPU time (user+system) of all peer processes over
	// the timed iterations per GiB of bus traffic n·S·2(n−1)/n per
	// iteration (for the rawquic row: per GiB carried).
	CPUPerGiB float64 `json:"cpu_s_per_gib"`
	// RefPct is busbw as a percentage of the raw quic-go goodput measured
	// on the same links in the same run (0 when there is none).
	RefPct float64 `json:"ref_pct,omitempty"`
	// Wire is ringtrain's wire dtype when not fp32 (busbw still counts the
	// float32 bytes S); BucketBytes its bucket size when bucketed.
	Wire        string `json:"wire,omitempty"`
	BucketBytes int    `json:"bucket_bytes,omitempty"`
	// Lanes is ringtrain's --lanes when above 1.
	Lanes int `json:"lanes,omitempty"`
}

// Label is the system as the table names it: ringtrain with a 16-bit wire
// is "ringtrain-bf16", with 3 lanes "ringtrain-lanes3", bucketed
// "ringtrain/b4MiB".
func (r Row) Label() string {
	l := r.System
	if r.Wire != "" {
		l += "-" + r.Wire
	}
	if r.Lanes > 1 {
		l += "-lanes" + strconv.Itoa(r.Lanes)
	}
	if r.BucketBytes > 0 {
		l += "/b" + sizeName(int64(r.BucketBytes))
	}
	return l
}

// sizeName writes a byte count the way --sizes reads it (4MiB, 256KiB).
func sizeName(b int64) string {
	switch {
	case b >= 1<<20 && b%(1<<20) == 0:
		return strconv.FormatInt(b>>20, 10) + "MiB"
	case b >= 1<<10 && b%(1<<10) == 0:
		return strconv.FormatInt(b>>10, 10) + "KiB"
	}
	return strconv.FormatInt(b, 10)
}

// busFactor is nccl-tests' all-reduce bus-bandwidth factor 2(n−1)/n.
func busFactor(n int) float64 {
	if n <= 1 {
		return 0
	}
	return 2 * float64(n-1) / float64(n)
}

// median of xs (the mean of the middle two for an even count); xs is not
// modified.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// newRow computes a row's statistics from per-iteration times and the CPU
// seconds all peers spent on them.
func newRow(system, transport, links string, n int, bytes int64, times []float64, cpu float64) Row {
	r := Row{System: system, Transport: transport, Links: links, N: n, Bytes: bytes, Count: bytes / 4, Times: times}
	r.Median = median(times)
	r.Min, r.Max = math.Inf(1), math.Inf(-1)
	for _, t := range times {
		r.Min, r.Max = math.Min(r.Min, t), math.Max(r.Max, t)
	}
	if r.Median > 0 {
		r.AlgBW = float64(bytes) / r.Median
		r.BusBW = r.AlgBW * busFactor(n)
	}
	if traffic := float64(len(times)) * float64(n) * float64(bytes) * busFactor(n); traffic > 0 {
		r.CPUPerGiB = cpu / (traffic / (1 << 30))
	}
	return r
}

// slowest returns, per iteration, the largest time over ranks: an
// all-reduce is done when its last rank is.
func slowest(perRank [][]float64) []float64 {
	var out []float64
	for _, ts := range perRank {
		for i, t := range ts {
			if i >= len(out) {
				out = append(out, t)
			}
			out[i] = math.Max(out[i], t)
		}
	}
	return out
}

// writeTable prints rows in the style of nccl-tests.
func writeTable(w io.Writer, rows []Row) {
	width := 10
	for _, r := range rows {
		width = max(width, len(r.Label()))
	}
	fmt.Fprintf(w, "#%*s %5s %8s %3s %3s %12s %11s %10s %10s %10s %9s %9s %9s %6s\n",
		width-1, "system", "trans", "links", "n", "P", "size(B)", "count", "time(ms)", "algbw(MB/s)", "busbw(MB/s)", "min(ms)", "max(ms)", "cpu-s/GiB", "%ref")
	for _, r := range rows {
		p, ref := "-", "-"
		if r.Servers > 0 {
			p = strconv.Itoa(r.Servers)
		}
		if r.RefPct > 0 {
			ref = fmt.Sprintf("%.1f", r.RefPct)
		}
		fmt.Fprintf(w, "%*s %5s %8s %3d %3s %12d %11d %10.2f %10.3f %11.3f %9.2f %9.2f %9.2f %6s\n",
			width, r.Label(), r.Transport, r.Links, r.N, p, r.Bytes, r.Count, r.Median*1e3, r.AlgBW/1e6, r.BusBW/1e6,
			r.Min*1e3, r.Max*1e3, r.CPUPerGiB, ref)
	}
}

// writeRatios prints the comparisons the benchmark exists for: ringtrain
// against each other system at the same (links, n, size), and how each
// system's busbw and time change with n.
func writeRatios(w io.Writer, rows []Row) {
	type key struct {
		links string
		n     int
		bytes int64
	}
	// ringtrain's own reference is its fp32, unbucketed row.
	ring := map[key]Row{}
	for _, r := range rows {
		if r.Label() == "ringtrain" {
			ring[key{r.Links, r.N, r.Bytes}] = r
		}
	}
	var lines []string
	for _, r := range rows {
		rr, ok := ring[key{r.Links, r.N, r.Bytes}]
		if !ok || r.Label() == "ringtrain" || r.System == "rawquic" || r.BusBW == 0 {
			continue
		}
		// At equal n and size, the busbw ratio is also the inverse time
		// ratio.
		if r.System == "ringtrain" {
			lines = append(lines, fmt.Sprintf("# %-8s n=%-3d %10d B: %s vs ringtrain busbw %.3f",
				r.Links, r.N, r.Bytes, r.Label(), r.BusBW/rr.BusBW))
			continue
		}
		lines = append(lines, fmt.Sprintf("# %-8s n=%-3d %10d B: ringtrain/%s busbw %.3f",
			r.Links, r.N, r.Bytes, r.System, rr.BusBW/r.BusBW))
	}
	// Scaling in n: relative to the smallest n measured for the same
	// system, links and size.
	type skey struct {
		system, links string
		bytes         int64
	}
	base := map[skey]Row{}
	for _, r := range rows {
		k := skey{r.Label(), r.Links, r.Bytes}
		if b, ok := base[k]; r.System != "rawquic" && (!ok || r.N < b.N) {
			base[k] = r
		}
	}
	for _, r := range rows {
		b, ok := base[skey{r.Label(), r.Links, r.Bytes}]
		if !ok || b.N == r.N || b.BusBW == 0 || b.Median == 0 {
			continue
		}
		lines = append(lines, fmt.Sprintf("# %-8s %10d B: %s n=%d vs n=%d: busbw %.3f, time %.3f",
			r.Links, r.Bytes, r.Label(), r.N, b.N, r.BusBW/b.BusBW, r.Median/b.Median))
	}
	if len(lines) > 0 {
		fmt.Fprintln(w, "# ratios")
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	}
}

// writeCSV writes rows as CSV with a header.
func writeCSV(path string, rows []Row) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	cw := csv.NewWriter(f)
	_ = cw.Write([]string{"system", "transport", "links", "n", "servers", "bytes", "count", "iters",
		"median_s", "min_s", "max_s", "algbw_Bps", "busbw_Bps", "cpu_s_per_gib", "ref_pct", "wire", "bucket_bytes"})
	g := func(x float64) string { return strconv.FormatFloat(x, 'g', 6, 64) }
	for _, r := range rows {
		_ = cw.Write([]string{r.System, r.Transport, r.Links, strconv.Itoa(r.N), strconv.Itoa(r.Servers),
			strconv.FormatInt(r.Bytes, 10), strconv.FormatInt(r.Count, 10), strconv.Itoa(len(r.Times)),
			g(r.Median), g(r.Min), g(r.Max), g(r.AlgBW), g(r.BusBW), g(r.CPUPerGiB), g(r.RefPct), r.Wire, strconv.Itoa(r.BucketBytes)})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeJSON writes rows as an indented JSON array.
func writeJSON(path string, rows []Row) error {
	b, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// parseSize parses "1024", "4KiB", "16MiB", "1GiB" (also KB/MB/GB as
// powers of two, and k/m/g).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffixes []string
		m        int64
	}{{[]string{"GiB", "GB", "G", "g"}, 1 << 30}, {[]string{"MiB", "MB", "M", "m"}, 1 << 20}, {[]string{"KiB", "KB", "K", "k"}, 1 << 10}, {[]string{"B"}, 1}} {
		done := false
		for _, suf := range u.suffixes {
			if v, ok := strings.CutSuffix(t, suf); ok {
				t, mult, done = v, u.m, true
				break
			}
		}
		if done {
			break
		}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return v * mult, nil
}

// parseSizes parses a comma list of sizes and ranges "MIN:MAX" (stepping by
// a factor of factor), rounding each size down to whole float32 elements.
func parseSizes(spec string, factor int64) ([]int64, error) {
	if factor < 2 {
		return nil, fmt.Errorf("size factor %d < 2", factor)
	}
	var out []int64
	for _, part := range strings.Split(spec, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		a, err := parseSize(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = parseSize(hi); err != nil {
				return nil, err
			}
		}
		for s := a; s <= b; s *= factor {
			if s >= 4 {
				out = append(out, s/4*4)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no sizes in %q", spec)
	}
	return out, nil
}

// parseCounts parses a comma list of positive counts ("2,4,8").
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}
