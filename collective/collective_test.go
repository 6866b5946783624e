package collective_test

import (
	"testing"

	"github.com/ringtrain/ringtrain/collective/collectivetest"
	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/mem"
)

// memFactory builds endpoints on a fresh in-memory network.
func memFactory(t testing.TB, ids []string) []transport.Endpoint {
	eps, err := mem.NewNetwork().Endpoints(ids...)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]transport.Endpoint, len(eps))
	for i, e := range eps {
		t.Cleanup(func() { e.Close() })
		out[i] = e
	}
	return out
}

func TestConformanceMem(t *testing.T) {
	collectivetest.Run(t, memFactory, collectivetest.Options{MaxPeers: 16, Large: !testing.Short()})
}
