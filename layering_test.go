// Package ringtrain_test checks the architecture of DESIGN.md §1: imports
// point down only.
package ringtrain_test

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/ringtrain/ringtrain/"

// forbidden lists, for each package (and its subpackages), import path
// prefixes that must not appear among its dependencies.
var forbidden = []struct {
	pkg string
	not []string
}{
	{"model", []string{mod + "transport", mod + "ring", mod + "collective", mod + "membership", mod + "train", mod + "optim", mod + "data"}},
	{"optim", []string{mod + "transport", mod + "ring", mod + "collective", mod + "membership", mod + "train", mod + "data"}},
	{"data", []string{mod + "transport", mod + "ring", mod + "collective", mod + "membership", mod + "train", mod + "model"}},
	{"ring", []string{mod + "collective", mod + "membership", mod + "train", mod + "transport/quic", mod + "transport/tcp", mod + "transport/mem", mod + "internal/wire", "github.com/quic-go"}},
	{"collective", []string{mod + "membership", mod + "train", mod + "transport/quic", mod + "transport/tcp", mod + "internal/wire", "github.com/quic-go", "github.com/hashicorp/memberlist"}},
	{"membership", []string{mod + "collective", mod + "ring", mod + "train", mod + "internal/wire"}},
	{"half", []string{strings.TrimSuffix(mod, "/")}}, // numeric conversions only: nothing of ours
	{"transport", []string{mod + "ring", mod + "collective", mod + "membership", mod + "train"}},
	// The rules the transports share know no transport.
	{"transport/internal", []string{mod + "transport/quic", mod + "transport/tcp", mod + "transport/mem", mod + "internal/wire", "github.com/quic-go"}},
	{"node", []string{mod + "train", mod + "cmd"}},
}

func TestImportsPointDown(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}:{{join .Deps " "}}:{{join .Imports " "}}`, "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, rest, _ := strings.Cut(line, ":")
		deps, imports, _ := strings.Cut(rest, ":")
		rel := strings.TrimPrefix(pkg, mod)
		for _, f := range forbidden {
			if rel != f.pkg && !strings.HasPrefix(rel, f.pkg+"/") {
				continue
			}
			if strings.HasSuffix(rel, "test") { // conformance suites may build fixtures
				continue
			}
			for _, d := range strings.Fields(deps) {
				for _, bad := range f.not {
					if d == bad || strings.HasPrefix(d, bad+"/") {
						t.Errorf("%s imports %s (DESIGN §1: imports point down only)", rel, d)
					}
				}
			}
		}
		// Only transport/quic may import internal/wire (directly: whoever
		// uses transport/quic depends on it indirectly).
		if !strings.HasPrefix(rel, "transport/quic") && rel != "internal/wire" {
			for _, d := range strings.Fields(imports) {
				if d == mod+"internal/wire" {
					t.Errorf("%s imports internal/wire; only transport/quic may", rel)
				}
			}
		}
	}
}
