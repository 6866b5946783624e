package peers

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLaunchPlacesRanks(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, Sizes: []int64{1024, 4096}, Warmup: 1, Iters: 3, OpTimeout: time.Second}
	ns := []string{"rtar-1-0", "rtar-1-1", "rtar-1-2"}
	hosts := []string{"10.211.0.10", "10.211.0.11", "10.211.0.12"}
	cases := []struct {
		name      string
		runner    string
		place     Placement
		procs     int
		wantFirst []string // first argv elements of process 0
		contains  []string // in process 0's argv
	}{
		{"mpi loopback", "openmpi", Placement{Hosts: hosts, Iface: "lo"}, 1,
			[]string{"mpirun", "--allow-run-as-root", "-np", "3"},
			[]string{"--oversubscribe", "btl_tcp_if_include", "lo", "tcp,self", filepath.Join(dir, "mpi_allreduce"), "1", "3", "1024", "4096"}},
		{"mpi namespaces", "openmpi", Placement{Hosts: hosts, Namespaces: ns, Iface: "eth0"}, 1,
			[]string{"ip", "netns", "exec", "rtar-1-0", "mpirun"},
			[]string{"--hostfile", "plm_rsh_agent", filepath.Join(dir, "netns-agent.sh"), "eth0"}},
		{"gloo namespaces", "gloo", Placement{Hosts: hosts, Namespaces: ns, Iface: "eth0", RendezvousAddr: "10.211.0.10:7102"}, 3,
			[]string{"ip", "netns", "exec", "rtar-1-0", Python, filepath.Join(dir, "gloo_allreduce.py"), "0", "3", "tcp://10.211.0.10:7102"},
			[]string{"1", "3", "1024", "4096"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &Runner{Name: c.runner, cfg: cfg}
			switch c.runner {
			case "openmpi":
				r.binary = filepath.Join(dir, "mpi_allreduce")
			case "gloo":
				r.binary = filepath.Join(dir, "gloo_allreduce.py")
			}
			l, err := r.Launch(c.place)
			if err != nil {
				t.Fatal(err)
			}
			if len(l.argv) != c.procs {
				t.Fatalf("%d processes, want %d", len(l.argv), c.procs)
			}
			a := l.argv[0]
			if len(a) < len(c.wantFirst) || !slices.Equal(a[:len(c.wantFirst)], c.wantFirst) {
				t.Fatalf("argv %q, want it to start %q", a, c.wantFirst)
			}
			for _, w := range c.contains {
				if !slices.Contains(a, w) {
					t.Errorf("argv %q lacks %q", a, w)
				}
			}
			if c.runner == "gloo" {
				// Rank i runs in namespace i.
				for i, argv := range l.argv {
					if argv[3] != ns[i] || argv[6] != string(rune('0'+i)) {
						t.Errorf("rank %d argv %q", i, argv)
					}
				}
				if !slices.Contains(l.env[0], "GLOO_SOCKET_IFNAME=eth0") {
					t.Errorf("env %q", l.env[0])
				}
			}
			if c.name == "mpi namespaces" {
				b, err := os.ReadFile(filepath.Join(dir, "hosts-3"))
				if err != nil || strings.Count(string(b), "slots=1") != 3 || !strings.Contains(string(b), "rtar-1-2") {
					t.Errorf("hostfile %q, %v", b, err)
				}
			}
		})
	}
}

func TestLaunchRejectsBadPlacement(t *testing.T) {
	r := &Runner{Name: "gloo", cfg: Config{Dir: t.TempDir()}}
	if _, err := r.Launch(Placement{Hosts: []string{"a", "b"}, Namespaces: []string{"only-one"}}); err == nil {
		t.Fatal("accepted 2 hosts with 1 namespace")
	}
	if _, err := r.Launch(Placement{}); err == nil {
		t.Fatal("accepted no ranks")
	}
}
