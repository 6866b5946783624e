package allreduce

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ringtrain/ringtrain/bench/cluster"
	"github.com/ringtrain/ringtrain/transport"
	"github.com/ringtrain/ringtrain/transport/mem"
)

// runMemJob runs one job with every participant in this process over
// transport/mem. rate (bytes per second, 0 = unlimited) limits each
// direction of every link, as mem.Link does. It returns each worker's
// results and the process CPU time per size over the timed iterations.
func runMemJob(ctx context.Context, roles []roleSpec, rate float64, spec measureSpec) ([]measureResult, []float64, error) {
	net := mem.NewNetwork()
	eps := make([]transport.Endpoint, len(roles))
	defer func() {
		for _, ep := range eps {
			if ep != nil {
				ep.Close()
			}
		}
	}()
	for i, r := range roles {
		ep, err := net.Endpoint(r.id())
		if err != nil {
			return nil, nil, err
		}
		eps[i] = ep
	}
	if rate > 0 {
		for i := range roles {
			for j := i + 1; j < len(roles); j++ {
				net.SetLink(roles[i].id(), roles[j].id(), mem.Link{Rate: rate})
			}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]measureResult, len(roles))
	errs := make([]error, len(roles))
	var wg sync.WaitGroup
	for i, r := range roles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if errs[i] != nil {
					cancel() // the others would wait for this one
				}
			}()
			p, err := newParticipant(ctx, eps[i], r, spec.OpTimeout)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", r.id(), err)
				return
			}
			// All participants share this process: the first one's
			// reading of the process CPU time covers all of them.
			var cpu func() float64
			if i == 0 {
				cpu = cluster.SelfCPU
			}
			if results[i], err = measure(ctx, p, spec, cpu); err != nil {
				errs[i] = fmt.Errorf("%s: %w", r.id(), err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	var workers []measureResult
	for i, r := range roles {
		if !r.Server {
			workers = append(workers, results[i])
		}
	}
	return workers, results[0].CPU, nil
}
