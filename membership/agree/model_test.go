package agree

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSpinModel checks spin/agree.pml exhaustively (Debian package spin,
// and a C compiler): the protocol's model must hold its assertions, and
// the model with the broken majority rule of issue 12 must violate them,
// which shows the model can catch the bug it is there for.
func TestSpinModel(t *testing.T) {
	if testing.Short() {
		t.Skip("exhaustive spin model check (a few seconds)")
	}
	for _, tool := range []string{"spin", "cc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (CI installs it: apt-get install spin gcc): %v", tool, err)
		}
	}
	model, err := os.ReadFile(filepath.Join("spin", "agree.pml"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		defs    []string
		violate string // "" : no error; else text of the violated assertion
	}{
		{"protocol, 3 members", []string{"-DN=3"}, ""},
		{"broken majority, 3 members", []string{"-DN=3", "-DBROKEN"}, "assertion violated ((2*"},
		{"broken majority, 4 members", []string{"-DN=4", "-DBROKEN"}, "assertion violated ((2*"},
		{"broken majority, agreement", []string{"-DN=3", "-DBROKEN", "-DNOMAJORITY"}, "assertion violated ((decided==0)||(decided==v))"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "agree.pml"), model, 0o644); err != nil {
				t.Fatal(err)
			}
			run := func(name string, args ...string) string {
				cmd := exec.CommandContext(ctx, name, args...)
				cmd.Dir = dir
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("%s %v: %v\n%s", name, args, err, out)
				}
				return string(out)
			}
			run("spin", append(append([]string{"-a"}, c.defs...), "agree.pml")...)
			run("cc", "-O2", "-w", "-DSAFETY", "-DCOLLAPSE", "-DMEMLIM=1024", "-o", "pan", "pan.c")
			out := run("./pan", "-m100000")
			var stats []string
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "State-vector") || strings.Contains(l, "states, stored") || strings.Contains(l, "elapsed time") {
					stats = append(stats, strings.TrimSpace(l))
				}
			}
			if c.violate == "" {
				if !strings.Contains(out, "errors: 0") || strings.Contains(out, "Search not completed") ||
					strings.Contains(out, "too small") || strings.Contains(out, "MEMLIM") {
					t.Fatalf("spin found an error or did not search the whole state space:\n%s", out)
				}
				t.Logf("figure: %s: %s", c.name, strings.Join(stats, "; "))
				return
			}
			if !strings.Contains(out, c.violate) {
				t.Fatalf("want a violation of %q, got:\n%s", c.violate, out)
			}
			t.Logf("caught as expected: %s", c.violate)
		})
	}
}
