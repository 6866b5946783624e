// Package allreduce is "bench allreduce": ringtrain's ring all-reduce
// against the link limit (one raw quic-go stream on the same links), the
// TensorFlow 0.8 parameter-server design, OpenMPI and gloo, in one run on
// the same links (bench/cluster: loopback or tbf-shaped namespaces), or all
// ringtrain peers in one process over rate-limited transport/mem links.
//
// Invariants: every system follows the same schedule (warm-up and timed
// rounds per size, each a barrier then one in-place float32 sum) and checks
// every result exactly; a round's time is its slowest rank's; the CPU figure
// is every peer's own getrusage over the timed rounds; whatever was measured
// before a failure is still reported.
package allreduce

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/bench/cluster"
	"github.com/ringtrain/ringtrain/bench/netns"
	"github.com/ringtrain/ringtrain/bench/peers"
	"github.com/ringtrain/ringtrain/collective"
)

// allReduceFlags are the options of "bench allreduce".
type allReduceFlags struct {
	ns          []int
	sizes       []int64
	warmup      int
	iters       int
	links       string
	transport   string
	systems     map[string]bool
	servers     int
	chunk       int
	psChunk     int
	opTimeout   time.Duration
	refDuration time.Duration
	jsonPath    string
	csvPath     string
	plots       bool
	profileDir  string
	from        string
	wires       []collective.DType
	lanes       []int
	bucketBytes int
}

// job is one of the systems this package runs itself: ringtrain with one
// wire dtype, or the parameter server.
type job struct {
	system string
	wire   collective.DType
	lanes  int // ringtrain's --lanes (0 or 1: one connection per peer)
}

// name is how rows and errors name the job: "ringtrain",
// "ringtrain-bf16", "ringtrain-lanes3".
func (j job) name() string {
	return roleSpec{System: j.system, Wire: j.wire.String(), Lanes: j.lanes}.name()
}

// jobs lists, in order, ringtrain once per --wire-dtype and --lanes and
// the parameter server, as --systems asks.
func (f *allReduceFlags) jobs() []job {
	var out []job
	if f.systems["ringtrain"] {
		for _, w := range f.wires {
			for _, l := range f.lanes {
				out = append(out, job{"ringtrain", w, l})
			}
		}
	}
	if f.systems["ps"] {
		out = append(out, job{system: "ps"})
	}
	return out
}

// roles are a job's participants with n workers.
func (f *allReduceFlags) roles(j job, n int) []roleSpec {
	chunk := f.chunk
	if j.system == "ps" {
		chunk = f.psChunk
	}
	roles := jobRoles(j.system, n, f.servers, chunk)
	for i := range roles {
		if j.system == "ringtrain" {
			roles[i].Wire, roles[i].BucketBytes, roles[i].Lanes = j.wire.String(), f.bucketBytes, j.lanes
		}
	}
	return roles
}

func parseAllReduceFlags(args []string) (*allReduceFlags, error) {
	fs := flag.NewFlagSet("allreduce", flag.ContinueOnError)
	nList := fs.String("n", "4", "peer counts to run, comma separated (e.g. 2,4,8)")
	sizes := fs.String("sizes", "1KiB:256MiB", "message sizes: comma list of SIZE or MIN:MAX ranges")
	factor := fs.Int64("factor", 4, "step factor within a MIN:MAX size range")
	f := &allReduceFlags{}
	fs.IntVar(&f.warmup, "warmup", 1, "untimed rounds per size")
	fs.IntVar(&f.iters, "iters", 5, "timed rounds per size (the median is reported)")
	fs.StringVar(&f.links, "links", "loopback", "loopback, or a tc rate such as 40mbit: every peer in its own network namespace behind a tbf-shaped link (needs root)")
	fs.StringVar(&f.transport, "transport", "tcp", "tcp (the trainer's default) or quic (one process per peer, over transport/quic or transport/tcp), or mem (all peers in this process over transport/mem, links rate-limited by mem.Link)")
	systems := fs.String("systems", "ringtrain,ps,openmpi,gloo", "systems to measure (openmpi and gloo need --transport quic or tcp and are skipped when not installed)")
	fs.IntVar(&f.servers, "servers", 1, "parameter servers P")
	chunk := fs.String("chunk", "256KiB", "ringtrain chunk size")
	psChunk := fs.String("ps-chunk", "1MiB", "parameter-server message size")
	fs.DurationVar(&f.opTimeout, "op-timeout", 5*time.Minute, "deadline of one barrier+all-reduce round")
	fs.DurationVar(&f.refDuration, "ref-duration", 3*time.Second, "duration of the raw quic-go reference transfer (0 skips it)")
	fs.StringVar(&f.jsonPath, "json", "", "write the rows as JSON to this file")
	fs.StringVar(&f.csvPath, "csv", "", "write the rows as CSV to this file (and PNG plots next to it)")
	fs.BoolVar(&f.plots, "plots", true, "with --csv: also write PNG plots next to it")
	fs.StringVar(&f.from, "from", "", "measure nothing: read the rows of an earlier --json file and print/write them again")
	fs.StringVar(&f.profileDir, "cpuprofile", "", "write CPU profiles of the ringtrain and ps peers into this directory")
	wires := fs.String("wire-dtype", "fp32", "ringtrain's wire dtypes, comma list of fp32, bf16, fp16 (collective Config.Wire): ringtrain runs once per dtype; busbw counts float32 bytes")
	lanes := fs.String("lanes", "1", "ringtrain's lanes, comma list (tcp.Config.Lanes and collective.Config.Lanes, the trainer's --lanes: TCP connections per peer and parts of an all-reduce): ringtrain runs once per value; needs --transport tcp above 1")
	bucket := fs.String("bucket-bytes", "0", "ringtrain: 0 reduces the buffer with one AllReduce; B > 0 cuts it into B-byte segments reduced through collective.Bucketer with B-byte buckets (the trainer's bucketed path)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var err error
	if f.ns, err = parseCounts(*nList); err != nil {
		return nil, err
	}
	if f.sizes, err = parseSizes(*sizes, *factor); err != nil {
		return nil, err
	}
	c, err := parseSize(*chunk)
	if err != nil {
		return nil, err
	}
	pc, err := parseSize(*psChunk)
	if err != nil {
		return nil, err
	}
	f.chunk, f.psChunk = int(c/4*4), int(pc/4*4)
	bb, err := parseSize(*bucket)
	if err != nil && *bucket != "0" {
		return nil, fmt.Errorf("--bucket-bytes: %w", err)
	}
	f.bucketBytes = int(bb / 4 * 4)
	for _, w := range strings.Split(*wires, ",") {
		d, err := collective.ParseDType(w)
		if err != nil {
			return nil, fmt.Errorf("--wire-dtype: %w", err)
		}
		f.wires = append(f.wires, d)
	}
	if f.lanes, err = parseCounts(*lanes); err != nil {
		return nil, fmt.Errorf("--lanes: %w", err)
	}
	for _, l := range f.lanes {
		if l > 16 || (l > 1 && f.transport != "tcp") {
			return nil, fmt.Errorf("--lanes %d: want 1..16, and above 1 --transport tcp", l)
		}
	}
	f.systems = map[string]bool{}
	for _, s := range strings.Split(*systems, ",") {
		switch s = strings.TrimSpace(s); s {
		case "ringtrain", "ps", "openmpi", "gloo":
			f.systems[s] = true
		default:
			return nil, fmt.Errorf("unknown system %q", s)
		}
	}
	if f.transport != "quic" && f.transport != "tcp" && f.transport != "mem" {
		return nil, fmt.Errorf("--transport must be quic, tcp or mem, not %q", f.transport)
	}
	if f.links != "loopback" {
		if _, err := netns.ParseRate(f.links); err != nil {
			return nil, err
		}
	}
	if f.profileDir != "" {
		if f.profileDir, err = filepath.Abs(f.profileDir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(f.profileDir, 0o755); err != nil {
			return nil, err
		}
	}
	if f.iters < 1 || f.warmup < 0 || f.servers < 1 {
		return nil, fmt.Errorf("need --iters ≥ 1, --warmup ≥ 0, --servers ≥ 1")
	}
	return f, nil
}

// Run is "bench allreduce".
func Run(ctx context.Context, args []string) error {
	f, err := parseAllReduceFlags(args)
	if err != nil {
		return err
	}
	spec := measureSpec{Sizes: f.sizes, Warmup: f.warmup, Iters: f.iters, OpTimeout: f.opTimeout}
	var rows []Row
	if f.from != "" {
		b, err := os.ReadFile(f.from)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &rows); err != nil {
			return fmt.Errorf("%s: %w", f.from, err)
		}
	} else if f.transport == "mem" {
		rows, err = allReduceMem(ctx, f, spec)
	} else {
		rows, err = allReduceProcs(ctx, f, spec)
	}
	// Whatever was measured before a failure is still reported.
	report(os.Stdout, rows)
	if werr := writeOutputs(f, rows); werr != nil {
		err = errors.Join(err, werr)
	}
	return err
}

func report(w *os.File, rows []Row) {
	writeTable(w, rows)
	writeRatios(w, rows)
}

func writeOutputs(f *allReduceFlags, rows []Row) error {
	var errs []error
	if f.jsonPath != "" {
		errs = append(errs, writeJSON(f.jsonPath, rows))
	}
	if f.csvPath != "" {
		errs = append(errs, writeCSV(f.csvPath, rows))
		if f.plots {
			base := strings.TrimSuffix(f.csvPath, filepath.Ext(f.csvPath))
			errs = append(errs, writePlots(base, rows))
		}
	}
	return errors.Join(errs...)
}

// rateBytes is the links' rate in bytes per second (0 for loopback).
func rateBytes(links string) float64 {
	if links == "loopback" {
		return 0
	}
	bps, err := netns.ParseRate(links)
	if err != nil {
		return 0
	}
	return bps / 8
}

// rowsFrom turns the workers' results of one job into rows, one per size.
func rowsFrom(j job, transport string, f *allReduceFlags, n int, spec measureSpec, workers []measureResult, cpu []float64) []Row {
	system := j.system
	var rows []Row
	for s, size := range spec.Sizes {
		perRank := make([][]float64, len(workers))
		for i, w := range workers {
			if s < len(w.Times) {
				perRank[i] = w.Times[s]
			}
		}
		var c float64
		if s < len(cpu) {
			c = cpu[s]
		}
		r := newRow(system, transport, f.links, n, size, slowest(perRank), c)
		switch system {
		case "ps":
			r.Servers = f.servers
		case "ringtrain":
			r.BucketBytes = f.bucketBytes
			if j.lanes > 1 {
				r.Lanes = j.lanes
			}
			if j.wire != collective.Float32 {
				r.Wire = j.wire.String()
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// allReduceMem measures with every peer in this process over transport/mem.
func allReduceMem(ctx context.Context, f *allReduceFlags, spec measureSpec) ([]Row, error) {
	rate := rateBytes(f.links)
	var rows []Row
	for _, sys := range []string{"openmpi", "gloo"} {
		if f.systems[sys] {
			fmt.Printf("# %s: skipped, it needs --transport quic or tcp (real sockets)\n", sys)
		}
	}
	if f.systems["ps"] && rate > 0 {
		fmt.Println("# ps over mem: mem.Link limits each pair's link, so a server's n links carry n× the rate a tbf-shaped node link would; use --transport quic --links RATE for the n-scaling of the parameter server")
	}
	for _, n := range f.ns {
		for _, j := range f.jobs() {
			var prof string
			if f.profileDir != "" {
				prof = filepath.Join(f.profileDir, fmt.Sprintf("cpu-mem-%s-n%d.pprof", j.name(), n))
			}
			stop, err := cluster.StartProfile(prof)
			if err != nil {
				return rows, err
			}
			workers, cpu, err := runMemJob(ctx, f.roles(j, n), rate, spec)
			stop()
			if err != nil {
				return rows, fmt.Errorf("%s n=%d over mem: %w", j.name(), n, err)
			}
			for _, r := range rowsFrom(j, "mem", f, n, spec, workers, cpu) {
				if rate > 0 {
					r.RefPct = 100 * r.BusBW / rate // against the nominal link rate
				}
				rows = append(rows, r)
			}
		}
	}
	return rows, nil
}

// allReduceProcs measures with one process per peer, on loopback or in
// network namespaces behind shaped links.
func allReduceProcs(ctx context.Context, f *allReduceFlags, spec measureSpec) (rows []Row, err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	maxN := 0
	for _, n := range f.ns {
		maxN = max(maxN, n)
	}
	// Slots: workers 0..maxN-1, then the parameter servers; at least two
	// for the reference transfer.
	cl, err := cluster.New(ctx, f.links, max(maxN+f.servers, 2))
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, cl.Close()) }()

	var ref *Row
	if f.refDuration > 0 {
		r, err := measureRef(ctx, cl, exe, f)
		if err != nil {
			return nil, fmt.Errorf("raw quic-go reference: %w", err)
		}
		ref = &r
		rows = append(rows, r)
	}
	withRef := func(rs []Row) []Row {
		for i := range rs {
			if ref != nil && ref.BusBW > 0 {
				rs[i].RefPct = 100 * rs[i].BusBW / ref.BusBW
			}
		}
		return rs
	}

	tmp, err := os.MkdirTemp("", "ringtrain-bench-")
	if err != nil {
		return rows, err
	}
	defer os.RemoveAll(tmp)
	pcfg := peers.Config{Dir: tmp, Sizes: spec.Sizes, Warmup: spec.Warmup, Iters: spec.Iters, OpTimeout: spec.OpTimeout}
	var mpi, gloo *peers.Runner
	if f.systems["openmpi"] {
		if mpi, err = peers.NewMPI(ctx, pcfg); err != nil {
			fmt.Printf("# openmpi: skipped: %v\n", err)
		}
	}
	if f.systems["gloo"] {
		if gloo, err = peers.NewGloo(ctx, pcfg); err != nil {
			fmt.Printf("# gloo: skipped: %v\n", err)
		}
	}

	for _, n := range f.ns {
		slots := make([]int, 0, n+f.servers)
		for i := 0; i < n; i++ {
			slots = append(slots, i)
		}
		for i := 0; i < f.servers; i++ {
			slots = append(slots, maxN+i)
		}
		for _, j := range f.jobs() {
			workers, cpu, err := runProcJob(ctx, cl, exe, f.transport, f.roles(j, n), slots, spec, f.profileDir)
			if err != nil {
				return rows, fmt.Errorf("%s n=%d: %w", j.name(), n, err)
			}
			rows = append(rows, withRef(rowsFrom(j, f.transport, f, n, spec, workers, cpu))...)
		}
		for _, pr := range []*peers.Runner{mpi, gloo} {
			if pr == nil {
				continue
			}
			workers, cpu, err := runPeer(ctx, cl, pr, n, spec)
			if err != nil {
				if ctx.Err() != nil {
					return rows, fmt.Errorf("%s n=%d: %w", pr.Name, n, err)
				}
				// A compared library failing is reported, not fatal:
				// the other systems' rows still stand.
				fmt.Printf("# %s n=%d: failed: %v\n", pr.Name, n, err)
				continue
			}
			rows = append(rows, withRef(rowsFrom(job{system: pr.Name}, "tcp", f, n, spec, workers, cpu))...)
		}
	}
	return rows, nil
}

// measureRef runs the raw quic-go reference from slot 0 to slot 1.
func measureRef(ctx context.Context, cl *cluster.Cluster, exe string, f *allReduceFlags) (Row, error) {
	addr, err := cl.Addr(1, 1)
	if err != nil {
		return Row{}, err
	}
	recv := cl.Command(ctx, 1, exe, RawQUICCommand, "--role", "recv", "--addr", addr)
	send := cl.Command(ctx, 0, exe, RawQUICCommand, "--role", "send", "--addr", addr, "--duration", f.refDuration.String())
	bytes, goodput, cpuPerGiB, err := rawQUICRef(ctx, recv, send)
	if err != nil {
		return Row{}, err
	}
	// The reference is one point-to-point transfer of bytes: its algbw
	// and busbw columns are its goodput, its time the transfer's.
	t := float64(bytes) / goodput
	return Row{System: "rawquic", Transport: "quic", Links: f.links, N: 2, Bytes: bytes, AlgBW: goodput, BusBW: goodput,
		CPUPerGiB: cpuPerGiB, Times: []float64{t}, Median: t, Min: t, Max: t}, nil
}

// runPeer runs one of the compared libraries with n ranks on slots 0..n-1.
func runPeer(ctx context.Context, cl *cluster.Cluster, pr *peers.Runner, n int, spec measureSpec) ([]measureResult, []float64, error) {
	// The libraries have no deadline of their own: bound the whole run.
	ctx, cancel := context.WithTimeout(ctx, time.Minute+time.Duration(len(spec.Sizes)*(spec.Warmup+spec.Iters))*spec.OpTimeout)
	defer cancel()
	var hosts []string
	var nsNames []string
	for i := 0; i < n; i++ {
		hosts = append(hosts, cl.Host(i))
		if cl.Shaped() {
			nsNames = append(nsNames, cl.Namespace(i))
		}
	}
	port, err := cl.Addr(0, 2)
	if err != nil {
		return nil, nil, err
	}
	results, err := startPeerRun(ctx, cl, pr, hosts, nsNames, port)
	// OpenMPI's daemons occasionally fail to start across namespaces
	// (mpirun then waits forever in MPI_Init): start-up failures, where
	// nothing was measured yet, are retried.
	for try := 1; try < 3 && errors.Is(err, cluster.ErrNotReady) && ctx.Err() == nil; try++ {
		fmt.Printf("# %s n=%d: start-up failed, retrying: %v\n", pr.Name, n, firstLine(err))
		results, err = startPeerRun(ctx, cl, pr, hosts, nsNames, port)
	}
	if err != nil {
		return nil, nil, err
	}
	cpu := make([]float64, 0)
	for _, r := range results {
		for s, c := range r.CPU {
			for len(cpu) <= s {
				cpu = append(cpu, 0)
			}
			cpu[s] += c
		}
	}
	return results, cpu, nil
}

// startPeerRun launches one run of a compared library and collects its
// ranks' results.
func startPeerRun(ctx context.Context, cl *cluster.Cluster, pr *peers.Runner, hosts, nsNames []string, rendezvous string) ([]measureResult, error) {
	launches, err := pr.Launch(peers.Placement{Hosts: hosts, Namespaces: nsNames, Iface: cl.Iface(), RendezvousAddr: rendezvous})
	if err != nil {
		return nil, err
	}
	cmds := launches.Cmds(ctx)
	names := make([]string, len(cmds))
	results := make([]measureResult, len(cmds))
	out := make([]any, len(cmds))
	for i := range cmds {
		names[i] = fmt.Sprintf("%s rank %d", pr.Name, i)
		out[i] = &results[i]
	}
	if err := cluster.RunProcs(ctx, names, cmds, out); err != nil {
		return nil, err
	}
	return results, nil
}

// firstLine is an error's first line (peers' stderr can be long).
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
