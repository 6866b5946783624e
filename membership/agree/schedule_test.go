package agree

import (
	"flag"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	seedFlag      = flag.Uint64("seed", 0, "replay one simulator schedule (0: run the random batch)")
	schedulesFlag = flag.Int("schedules", 0, "random schedules to run (0: $AGREE_SCHEDULES, else 10000)")
)

// defaultSchedules is what CI runs (with -race, about 10 ms of CPU per
// schedule on the 2-core CI machine).
const defaultSchedules = 10000

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
	el := time.Since(start)
	t.Logf("figure: %d schedules, %d failed (safety or liveness) %v, %d steps trained, %v, %.2f ms/schedule",
		n, len(failed), failed, steps.Load(), el.Round(time.Millisecond), float64(el.Microseconds())/1000/float64(n))
}

// TestLivenessSeeds replays the schedules that once missed the liveness
// bound (safety held), each for the defect it showed.
func TestLivenessSeeds(t *testing.T) {
	cases := []struct {
		name  string
		seeds []uint64
	}{
		// A node that dropped out of its epoch asked only active peers
		// to admit it; a leaving peer that coordinated never heard it and
		// the others waited for the rejoiner's report.
		{"join request to a leaving coordinator", []uint64{4585, 4607, 7267, 8670, 9815}},
		// A leaver left as soon as the value excluding it was decided;
		// the commit to the new members was lost, and without the
		// leaver no majority of the base was left to learn it again.
		{"leaver gone before its successor was applied", []uint64{7222, 7503}},
		// A lingering leaver ignored its old epoch's reports, while the
		// members still took it for their coordinator.
		{"lingering leaver as coordinator", []uint64{472}},
		// The commits of an epoch to its coordinator were all lost and the
		// old coordinator left: the new epoch's members reported to a
		// coordinator that still ran the old one and ignored reports of
		// a later epoch (found beyond the first 10,000 seeds).
		{"coordinator that missed its epoch's commit", []uint64{40822, 172157}},
		// A proposer adopted a first epoch's value that left it out and
		// decided it; every commit to the members was lost, and it ignored
		// their join reports while its own acceptor refused any other
		// first epoch (found in the first 200,000 seeds).
		{"first epoch decided by a non-member", []uint64{36231, 78244, 79569, 195790, 196135}},
		// A leaver that proposed its own exclusion crashed while it
		// lingered; the commit to the last member was lost, and the
		// restarted leaver, which had forgotten the value, left at once
		// (found in the first 1,000,000 seeds).
		{"leaver restarted while it lingered", []uint64{417509, 614466}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, seed := range c.seeds {
				if s := runSeed(seed, false); s.fail != "" {
					s = runSeed(seed, true)
					t.Errorf("seed %d: %s\n%s", seed, s.fail, s.dump(60))
				}
			}
		})
	}
}
