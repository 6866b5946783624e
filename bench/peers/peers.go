// Package peers drives the libraries ringtrain's all-reduce is compared
// with: OpenMPI's MPI_Allreduce over its TCP transport and PyTorch's gloo
// all-reduce, both from Debian packages (openmpi-bin libopenmpi-dev
// python3-torch). Their peer programs (programs/mpi_allreduce.c and
// programs/gloo_allreduce.py,
// embedded here) follow the same schedule, input and exact check as
// ringtrain's bench workers and speak the bench driver's READY/GO protocol
// on stdin/stdout, so the driver measures all systems the same way.
//
// Invariants: programs are written and compiled into the caller's
// directory only; peers run on the hosts (and, with network namespaces,
// inside the namespaces) of the Placement, never elsewhere.
package peers

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed programs/mpi_allreduce.c
var mpiSource []byte

//go:embed programs/gloo_allreduce.py
var glooSource []byte

// Python is the interpreter with Debian's python3-torch.
const Python = "/usr/bin/python3"

// Config is the schedule every peer follows.
type Config struct {
	Dir       string // scratch directory for programs and files
	Sizes     []int64
	Warmup    int
	Iters     int
	OpTimeout time.Duration
}

// Placement says where the n ranks run.
type Placement struct {
	Hosts          []string // rank i's address
	Namespaces     []string // rank i's network namespace; nil on loopback
	Iface          string   // the network interface ranks use ("lo", "eth0")
	RendezvousAddr string   // host:port on rank 0 for a rendezvous service
}

// Runner launches one library's peers.
type Runner struct {
	Name   string // "openmpi" or "gloo"
	cfg    Config
	binary string // the compiled MPI program or the gloo script
}

// Launch is the commands to start, whose stdouts speak READY/GO.
type Launch struct {
	argv [][]string
	env  [][]string
}

// Cmds makes the commands.
func (l Launch) Cmds(ctx context.Context) []*exec.Cmd {
	var cmds []*exec.Cmd
	for i, a := range l.argv {
		c := exec.CommandContext(ctx, a[0], a[1:]...)
		c.Env = append(os.Environ(), l.env[i]...)
		cmds = append(cmds, c)
	}
	return cmds
}

func (c Config) scheduleArgs() []string {
	args := []string{strconv.Itoa(c.Warmup), strconv.Itoa(c.Iters)}
	for _, s := range c.Sizes {
		args = append(args, strconv.FormatInt(s, 10))
	}
	return args
}

// NewMPI compiles the MPI peer with mpicc; it fails (and the caller skips
// OpenMPI) when OpenMPI is not installed.
func NewMPI(ctx context.Context, cfg Config) (*Runner, error) {
	for _, tool := range []string{"mpicc", "mpirun"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found (apt-get install -y openmpi-bin libopenmpi-dev)", tool)
		}
	}
	src := filepath.Join(cfg.Dir, "mpi_allreduce.c")
	bin := filepath.Join(cfg.Dir, "mpi_allreduce")
	if err := os.WriteFile(src, mpiSource, 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, "mpicc", "-O2", "-o", bin, src).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mpicc: %w: %s", err, out)
	}
	// The rsh agent that starts OpenMPI's daemons: the "host" it is given
	// is a network namespace name.
	agent := filepath.Join(cfg.Dir, "netns-agent.sh")
	script := "#!/bin/sh\n# OpenMPI launch agent: $1 is a network namespace, the rest a shell command.\nns=\"$1\"; shift\nexec ip netns exec \"$ns\" /bin/sh -c \"$*\"\n"
	if err := os.WriteFile(agent, []byte(script), 0o755); err != nil {
		return nil, err
	}
	return &Runner{Name: "openmpi", cfg: cfg, binary: bin}, nil
}

// NewGloo checks for PyTorch with gloo and writes the peer script; it
// fails (and the caller skips gloo) when PyTorch is not installed.
func NewGloo(ctx context.Context, cfg Config) (*Runner, error) {
	out, err := exec.CommandContext(ctx, Python, "-c", "import torch.distributed as d; assert d.is_gloo_available()").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("PyTorch with gloo not found for %s (apt-get install -y python3-torch): %s", Python, bytes.TrimSpace(out))
	}
	script := filepath.Join(cfg.Dir, "gloo_allreduce.py")
	if err := os.WriteFile(script, glooSource, 0o644); err != nil {
		return nil, err
	}
	return &Runner{Name: "gloo", cfg: cfg, binary: script}, nil
}

// Launch returns the commands that run the peers of n = len(p.Hosts) ranks.
func (r *Runner) Launch(p Placement) (Launch, error) {
	n := len(p.Hosts)
	if n < 1 || (p.Namespaces != nil && len(p.Namespaces) != n) {
		return Launch{}, fmt.Errorf("%s: bad placement of %d ranks", r.Name, n)
	}
	inNS := func(i int, argv []string) []string {
		if p.Namespaces == nil {
			return argv
		}
		return append([]string{"ip", "netns", "exec", p.Namespaces[i]}, argv...)
	}
	switch r.Name {
	case "openmpi":
		// One mpirun for all ranks, itself inside rank 0's namespace so
		// the daemons it starts can reach it; its stdin/stdout are rank
		// 0's.
		argv := []string{"mpirun", "--allow-run-as-root", "-np", strconv.Itoa(n),
			"--mca", "pml", "ob1", "--mca", "btl", "tcp,self",
			"--mca", "btl_tcp_if_include", p.Iface, "--mca", "oob_tcp_if_include", p.Iface}
		if p.Namespaces == nil {
			argv = append(argv, "--oversubscribe")
		} else {
			hostfile := filepath.Join(r.cfg.Dir, fmt.Sprintf("hosts-%d", n))
			var b strings.Builder
			for _, ns := range p.Namespaces {
				fmt.Fprintf(&b, "%s slots=1\n", ns)
			}
			if err := os.WriteFile(hostfile, []byte(b.String()), 0o644); err != nil {
				return Launch{}, err
			}
			argv = append(argv, "--hostfile", hostfile,
				"--mca", "plm_rsh_agent", filepath.Join(r.cfg.Dir, "netns-agent.sh"),
				"--mca", "plm_rsh_no_tree_spawn", "1")
		}
		argv = append(argv, r.binary)
		argv = append(argv, r.cfg.scheduleArgs()...)
		return Launch{argv: [][]string{inNS(0, argv)}, env: [][]string{nil}}, nil
	case "gloo":
		var l Launch
		for i := 0; i < n; i++ {
			argv := []string{Python, r.binary, strconv.Itoa(i), strconv.Itoa(n), "tcp://" + p.RendezvousAddr}
			argv = append(argv, r.cfg.scheduleArgs()...)
			l.argv = append(l.argv, inNS(i, argv))
			l.env = append(l.env, []string{"GLOO_SOCKET_IFNAME=" + p.Iface})
		}
		return l, nil
	}
	return Launch{}, fmt.Errorf("unknown peer %q", r.Name)
}
