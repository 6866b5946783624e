package mem_test

import (
	"testing"

	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/mem"
	"github.com/ringtrain/ringtrain/transport/transporttest"
)

// Factory builds endpoints on a fresh in-memory network.
func factory(t testing.TB, ids []string) []transport.Endpoint {
	n := mem.NewNetwork()
	eps := make([]transport.Endpoint, len(ids))
	for i, id := range ids {
		e, err := n.Endpoint(id)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		eps[i] = e
	}
	return eps
}

func TestConformance(t *testing.T) { transporttest.Run(t, factory) }
