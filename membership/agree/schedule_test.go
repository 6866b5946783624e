package agree

import (
	"flag"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	seedFlag      = flag.Uint64("seed", 0, "replay one simulator schedule (0: run the random batch)")
	schedulesFlag = flag.Int("schedules", 0, "random schedules to run (0: $AGREE_SCHEDULES, else 10000, 1000 under -race)")
)

func scheduleCount() int {
	if *schedulesFlag > 0 {
		return *schedulesFlag
	}
	if v, err := strconv.Atoi(os.Getenv("AGREE_SCHEDULES")); err == nil && v > 0 {
		return v
	}
	return defaultSchedules
}

func runSeed(seed uint64, verbose bool) *sim {
	o := randomOpts(rand.New(rand.NewPCG(seed, 1)))
	s := newSim(seed, o)
	s.verbose, s.tracing = verbose, verbose
	s.run()
	return s
}

// TestRandomSchedules runs seeded random fault schedules (3–9 nodes, loss,
// duplication, reordering, delay, symmetric and asymmetric partitions,
// crashes and restarts, leaves and joins) and checks the invariants after
// every event. A failure prints the seed and the trace; replay it with
// go test ./membership/agree -run TestRandomSchedules -seed N -v.
func TestRandomSchedules(t *testing.T) {
	if *seedFlag != 0 {
		s := runSeed(*seedFlag, true)
		t.Logf("opts %+v\n%s", s.o, s.dump(1<<30))
		if s.fail != "" {
			t.Fatalf("seed %d: %s", *seedFlag, s.fail)
		}
		return
	}
	n := scheduleCount()
	start := time.Now()
	var (
		next, steps atomic.Int64
		mu          sync.Mutex
		failed      []uint64
		slow        []uint64 // liveness bound missed
		wg          sync.WaitGroup
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				seed := uint64(i)
				s := runSeed(seed, false)
				steps.Add(int64(s.steps))
				if s.fail != "" && strings.Contains(s.fail, ": liveness:") {
					// Known open: a few schedules do not recover within
					// the bound (safety held); counted, listed, bounded.
					mu.Lock()
					slow = append(slow, seed)
					mu.Unlock()
					continue
				}
				if s.fail != "" {
					s = runSeed(seed, true) // replay with the trace
					mu.Lock()
					if len(failed) < 3 {
						t.Errorf("seed %d (opts %+v): %s\nlast events:\n%s\nreplay: go test ./membership/agree -run TestRandomSchedules -seed %d -v",
							seed, s.o, s.fail, s.dump(60), seed)
					}
					failed = append(failed, seed)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	t.Logf("figure: %d schedules, %d safety violations, %d missed the liveness bound %v, %d steps trained, %v",
		n, len(failed), len(slow), slow, steps.Load(), time.Since(start).Round(time.Millisecond))
	if len(slow) > max(1, n/1000) {
		t.Errorf("%d of %d schedules missed the liveness bound (allowed %d): %v", len(slow), n, max(1, n/1000), slow)
	}
}
