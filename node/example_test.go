package node_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"slices"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/node"
)

// Example starts three nodes on 127.0.0.1 from a seed list (each would be
// its own process, on its own host, in a real job) and all-reduces a
// gradient across them.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	results := make(chan string)
	var seeds []string // the first node starts the cluster, the others join through it
	for _, id := range []string{"a", "b", "c"} {
		n, err := node.Start(ctx, node.Config{ID: id, Seeds: seeds, MinPeers: 3, Secret: []byte("our cluster secret"), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			log.Fatal(err)
		}
		defer n.Close()
		seeds = append(seeds, n.GossipAddr())
		go func() { // each node's training loop; here just one all-reduce
			b, err := n.Boundary(ctx, node.Step{}) // waits for the first epoch: 3 members
			grad := []float32{float32(b.Rank + 1), 1}
			if err == nil {
				err = b.Group.AllReduce(ctx, grad, collective.Sum)
			}
			results <- fmt.Sprintf("%s: rank %d of %d, sum %v, err %v", n.ID(), b.Rank, b.Size, grad, err)
		}()
	}
	printSorted(results, 3)
	// Output:
	// a: rank 0 of 3, sum [6 3], err <nil>
	// b: rank 1 of 3, sum [6 3], err <nil>
	// c: rank 2 of 3, sum [6 3], err <nil>
}

// printSorted prints n lines from c in sorted order (the nodes finish in
// any order).
func printSorted(c <-chan string, n int) {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = <-c
	}
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
}
