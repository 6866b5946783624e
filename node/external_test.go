package node_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// externalMain uses only public packages: node, collective and
// transport/quic (whose Config takes the secret as bytes). A program in
// another module cannot import internal/ packages, so this compiles only
// if no public API needs an internal type.
const externalMain = `package main

import (
	"context"
	"log"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/node"
	"github.com/ringtrain/ringtrain/transport/quic"
)

func main() {
	ctx := context.Background()
	cfg, err := node.ConfigFromMap(map[string]string{"seeds": "10.0.0.1:7946", "secret": "sixteen-byte-key", "min-peers": "2"})
	if err != nil {
		log.Fatal(err)
	}
	n, err := node.Start(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	b, err := n.Boundary(ctx, node.Step{NoState: true})
	if err != nil {
		log.Fatal(err)
	}
	if b.Sync.Has(n.ID()) {
		if _, err := n.RecvState(ctx); err != nil {
			log.Fatal(err)
		}
	}
	buf := make([]float32, 4)
	if err := b.Group.AllReduce(ctx, buf, collective.Avg); err != nil {
		log.Fatal(err)
	}
	ep, err := quic.Listen(quic.Config{ID: "raw", Secret: []byte("sixteen-byte-key")})
	if err != nil {
		log.Fatal(err)
	}
	ep.Close()
}
`

// TestExternalModule builds externalMain in a module of its own that
// requires this one (replaced by this checkout), offline from the module
// cache this test binary's build already filled.
func TestExternalModule(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mod := "module example.com/user\n\ngo 1.26.0\n\nrequire github.com/ringtrain/ringtrain v0.0.0\n\nreplace github.com/ringtrain/ringtrain => " + root + "\n"
	for name, body := range map[string][]byte{"go.mod": []byte(mod), "go.sum": sum, "main.go": []byte(externalMain)} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "build", "-mod=mod", "-o", os.DevNull, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOWORK=off", "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("a program in another module does not build from the public API: %v\n%s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Logf("go build: %s", s)
	}
}
