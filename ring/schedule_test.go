package ring

import (
	"fmt"
	"slices"
	"testing"
)

func TestOrder(t *testing.T) {
	cases := []struct {
		name string
		in   []string
		want []string
	}{
		{"empty", nil, []string{}},
		{"sorted", []string{"a", "b"}, []string{"a", "b"}},
		{"unsorted with duplicates", []string{"c", "a", "c", "b"}, []string{"a", "b", "c"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			if got := Order(in); !slices.Equal(got, tc.want) {
				t.Fatalf("Order(%v) = %v, want %v", tc.in, got, tc.want)
			}
			if !slices.Equal(in, tc.in) {
				t.Fatalf("Order modified its argument")
			}
		})
	}
}

type mk func(rank, size, n, chunk int) *Schedule

// checkPairing: what rank r sends, in order, is what rank r+1 receives.
func checkPairing(t *testing.T, size, n, chunk int, f mk) {
	t.Helper()
	for r := range size {
		s, next := f(r, size, n, chunk), f((r+1)%size, size, n, chunk)
		if size == 1 {
			continue
		}
		if len(s.Sends) != len(next.Recvs) {
			t.Fatalf("rank %d sends %d chunks, rank %d receives %d", r, len(s.Sends), (r+1)%size, len(next.Recvs))
		}
		for i, snd := range s.Sends {
			rcv := next.Recvs[i]
			if snd.Len != rcv.Len || snd.Off != rcv.Off || snd.Len == 0 {
				t.Fatalf("chunk %d: rank %d sends [%d,+%d), rank %d receives [%d,+%d)", i, r, snd.Off, snd.Len, (r+1)%size, rcv.Off, rcv.Len)
			}
			if snd.Len > max(chunk, 1) {
				t.Fatalf("chunk %d longer than %d", snd.Len, chunk)
			}
			if snd.After >= len(s.Recvs) || (snd.After >= 0 && (s.Recvs[snd.After].Off != snd.Off || s.Recvs[snd.After].Len != snd.Len)) {
				t.Fatalf("send %d waits for receive %d, which is not the same range", i, snd.After)
			}
			if snd.Sync < snd.After || snd.Sync >= len(s.Recvs) {
				t.Fatalf("send %d: Sync %d outside [After %d, %d receives)", i, snd.Sync, snd.After, len(s.Recvs))
			}
		}
	}
}

// checkForward: a receive is marked Forward exactly when the first send
// waiting for it sends its range; in an all-reduce that is every receive
// but those of the last all-gather step.
func checkForward(t *testing.T, s *Schedule, lastStep int) {
	t.Helper()
	first := map[int]Send{}
	for _, snd := range s.Sends {
		if _, ok := first[snd.After]; !ok && snd.After >= 0 {
			first[snd.After] = snd
		}
	}
	for i, r := range s.Recvs {
		snd, ok := first[i]
		want := ok && snd.Off == r.Off && snd.Len == r.Len
		if r.Forward != want {
			t.Fatalf("receive %d [%d,+%d) Forward = %v, want %v", i, r.Off, r.Len, r.Forward, want)
		}
		if lastStep >= 0 && r.Forward != (i < len(s.Recvs)-lastStep) {
			t.Fatalf("receive %d of %d Forward = %v with %d receives in the last step", i, len(s.Recvs), r.Forward, lastStep)
		}
	}
}

func TestForward(t *testing.T) {
	for _, size := range []int{2, 3, 5, 8} {
		for _, n := range []int{1, size + 1, 1000} {
			for _, chunk := range []int{1, 3, 64, 1 << 20} {
				t.Run(fmt.Sprintf("size=%d/n=%d/chunk=%d", size, n, chunk), func(t *testing.T) {
					for r := range size {
						s := AllReduce(r, size, n, chunk)
						_, l := segment(mod(r-(size-2), size), size, n) // received in the last all-gather step
						checkForward(t, s, (l+chunk-1)/chunk)
						checkForward(t, AllGather(r, size, n, chunk), -1)
						for root := range size {
							checkForward(t, Broadcast(r, size, root, n, chunk), -1)
						}
					}
				})
			}
		}
	}
}

// TestStepBoundary: a step's first send waits for all but the last receive
// of the previous step, the others for all of it; the first step's sends
// and a broadcast's wait for nothing more than their data.
func TestStepBoundary(t *testing.T) {
	cases := []struct {
		name string
		s    *Schedule
		want []Send
	}{
		{"allreduce size=2 n=6 chunk=1 rank 0", AllReduce(0, 2, 6, 1), []Send{
			{Off: 0, Len: 1, After: -1, Sync: -1}, {Off: 1, Len: 1, After: -1, Sync: -1}, {Off: 2, Len: 1, After: -1, Sync: -1},
			{Off: 3, Len: 1, After: 0, Sync: 1}, {Off: 4, Len: 1, After: 1, Sync: 2}, {Off: 5, Len: 1, After: 2, Sync: 2},
		}},
		{"allreduce size=2 n=4 chunk=2 rank 1 (one chunk a step)", AllReduce(1, 2, 4, 2), []Send{
			{Off: 2, Len: 2, After: -1, Sync: -1}, {Off: 0, Len: 2, After: 0, Sync: 0},
		}},
		{"broadcast size=3 root 0 rank 1", Broadcast(1, 3, 0, 3, 1), []Send{
			{Off: 0, Len: 1, After: 0, Sync: 0}, {Off: 1, Len: 1, After: 1, Sync: 1}, {Off: 2, Len: 1, After: 2, Sync: 2},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !slices.Equal(tc.s.Sends, tc.want) {
				t.Fatalf("sends %+v, want %+v", tc.s.Sends, tc.want)
			}
		})
	}
}

func TestSchedulesPair(t *testing.T) {
	for _, size := range []int{1, 2, 3, 5, 8, 16} {
		for _, n := range []int{0, 1, size - 1, size + 1, 1000} {
			for _, chunk := range []int{1, 3, 64, 1 << 20} {
				name := fmt.Sprintf("size=%d/n=%d/chunk=%d", size, n, chunk)
				t.Run("allreduce/"+name, func(t *testing.T) { checkPairing(t, size, n, chunk, AllReduce) })
				t.Run("allgather/"+name, func(t *testing.T) { checkPairing(t, size, n, chunk, AllGather) })
			}
		}
	}
}

// TestAllReduceCoverage: in reduce-scatter each rank reduces every element
// once except those of its own segment r (which it only sends), so each
// element is reduced size-1 times in all; exactly one of those reductions
// is final.
func TestAllReduceCoverage(t *testing.T) {
	for _, size := range []int{2, 3, 4, 7} {
		for _, n := range []int{1, 10, 101} {
			t.Run(fmt.Sprintf("size=%d/n=%d", size, n), func(t *testing.T) {
				finals := make([]int, n)
				for r := range size {
					s := AllReduce(r, size, n, 4)
					reduced := make([]int, n)
					for _, rc := range s.Recvs {
						for i := rc.Off; i < rc.Off+rc.Len; i++ {
							if rc.Reduce {
								reduced[i]++
							}
							if rc.Final {
								finals[i]++
							}
						}
					}
					seg0, segLen := segment(r, size, n)
					for i := range n {
						want := 1
						if i >= seg0 && i < seg0+segLen {
							want = 0
						}
						if reduced[i] != want {
							t.Fatalf("rank %d reduces element %d %d times, want %d", r, i, reduced[i], want)
						}
					}
				}
				for i, f := range finals {
					if f != 1 {
						t.Fatalf("element %d finalized %d times across ranks", i, f)
					}
				}
			})
		}
	}
}

func TestBroadcastChain(t *testing.T) {
	for _, size := range []int{1, 2, 5} {
		for root := range size {
			for r := range size {
				s := Broadcast(r, size, root, 10, 3)
				d := (r - root + size) % size
				wantRecv, wantSend := 4, 4 // ceil(10/3)
				if d == 0 {
					wantRecv = 0
				}
				if d == size-1 {
					wantSend = 0
				}
				if len(s.Recvs) != wantRecv || len(s.Sends) != wantSend {
					t.Errorf("size %d root %d rank %d: %d recvs, %d sends; want %d, %d", size, root, r, len(s.Recvs), len(s.Sends), wantRecv, wantSend)
				}
			}
		}
	}
}
