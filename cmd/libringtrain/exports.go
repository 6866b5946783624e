package main

/*
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>

enum { RT_OK = 0, RT_ERR = 1, RT_EINVAL = 2, RT_ECOMM = 3, RT_ECLOSED = 4 };
enum { RT_FP32 = 0, RT_BF16 = 1, RT_FP16 = 2 };
enum { RT_SUM = 0, RT_AVG = 1, RT_MAX = 2, RT_MIN = 3 };
enum { RT_ROLE_NONE = 0, RT_ROLE_SEND = 1, RT_ROLE_RECV = 2 };

// What rt_boundary reports about the epoch the next step runs in.
typedef struct {
	uint64_t epoch;   // membership epoch number
	uint64_t step;    // steps applied to the state this epoch continues from
	int32_t rank;     // this node's position in the ring
	int32_t size;     // members
	int32_t role;     // RT_ROLE_*: send (call rt_state_send) or receive (rt_state_recv) state
	int32_t changed;  // a new epoch: members changed
	int32_t left;     // this node left (after rt_leave): call rt_close
} rt_boundary_t;
*/
import "C"

import (
	"context"
	"errors"
	"strings"
	"time"
	"unsafe"

	"github.com/ringtrain/ringtrain/data"
	"github.com/ringtrain/ringtrain/node"
)

var theLib = newLibrary()

//export rt_init
func rt_init(config *C.char, out *C.int64_t) C.int {
	return C.int(theLib.call("init", func() error {
		h, err := theLib.init([]byte(C.GoString(config)))
		if err == nil && out != nil {
			*out = C.int64_t(h)
		}
		return err
	}))
}

// rt_boundary ends a step (done: steps applied to this node's state;
// failed: the step's collective failed, with err_msg) and returns the epoch
// of the next step. leave announces a graceful leave.
//
//export rt_boundary
func rt_boundary(h C.int64_t, done C.uint64_t, failed C.int, errMsg *C.char, leave C.int, out *C.rt_boundary_t) C.int {
	return C.int(theLib.call("boundary", func() error {
		msg := "step failed"
		if errMsg != nil {
			msg = C.GoString(errMsg)
		}
		b, err := theLib.boundary(int64(h), uint64(done), failed != 0, msg, leave != 0)
		if out != nil {
			*out = C.rt_boundary_t{epoch: C.uint64_t(b.Epoch), step: C.uint64_t(b.Step), rank: C.int32_t(b.Rank), size: C.int32_t(b.Size),
				role: C.int32_t(b.Role), changed: cbool(b.Changed), left: cbool(b.Left)}
		}
		return err
	}))
}

// rt_members writes the last boundary's members, comma-separated in ring
// order and NUL-terminated, into buf (cap bytes) and returns the length
// needed (without the NUL); negative on error.
//
//export rt_members
func rt_members(h C.int64_t, buf *C.char, capacity C.size_t) C.int64_t {
	var n int64 = -1
	theLib.call("members", func() error {
		s, err := get[*session](theLib, int64(h), "node")
		if err != nil {
			return err
		}
		s.mu.Lock()
		m := strings.Join(s.last.Members, ",")
		s.mu.Unlock()
		n = int64(len(m))
		copyOut(buf, capacity, m)
		return nil
	})
	return C.int64_t(n)
}

// rt_node_id and rt_gossip_addr describe this node (same buffer rules as rt_members).
//
//export rt_node_id
func rt_node_id(h C.int64_t, buf *C.char, capacity C.size_t) C.int64_t {
	return describe(h, buf, capacity, func(s *session) string { return s.n.ID() })
}

//export rt_gossip_addr
func rt_gossip_addr(h C.int64_t, buf *C.char, capacity C.size_t) C.int64_t {
	return describe(h, buf, capacity, func(s *session) string { return s.n.GossipAddr() })
}

func describe(h C.int64_t, buf *C.char, capacity C.size_t, f func(*session) string) C.int64_t {
	var n int64 = -1
	theLib.call("describe", func() error {
		s, err := get[*session](theLib, int64(h), "node")
		if err != nil {
			return err
		}
		v := f(s)
		n = int64(len(v))
		copyOut(buf, capacity, v)
		return nil
	})
	return C.int64_t(n)
}

//export rt_allreduce
func rt_allreduce(h C.int64_t, buf unsafe.Pointer, count C.int64_t, dt C.int, op C.int) C.int {
	return C.int(theLib.call("all-reduce", func() error {
		return theLib.allReduce(int64(h), buf, int64(count), dtype(dt), int32(op))
	}))
}

// rt_allreduce_async starts an all-reduce; buf must stay valid and
// untouched until rt_wait on *req returns.
//
//export rt_allreduce_async
func rt_allreduce_async(h C.int64_t, buf unsafe.Pointer, count C.int64_t, dt C.int, op C.int, req *C.int64_t) C.int {
	return C.int(theLib.call("all-reduce", func() error {
		r, err := theLib.allReduceAsync(int64(h), buf, int64(count), dtype(dt), int32(op))
		if err == nil && req != nil {
			*req = C.int64_t(r)
		}
		return err
	}))
}

// rt_wait waits for a request and frees it.
//
//export rt_wait
func rt_wait(req C.int64_t) C.int {
	return C.int(theLib.call("wait", func() error { return theLib.wait(int64(req)) }))
}

// rt_test sets *done to 1 when the request has finished.
//
//export rt_test
func rt_test(req C.int64_t, done *C.int) C.int {
	return C.int(theLib.call("test", func() error {
		d, err := theLib.test(int64(req))
		if done != nil {
			*done = cbool(d)
		}
		return err
	}))
}

//export rt_broadcast
func rt_broadcast(h C.int64_t, buf unsafe.Pointer, count C.int64_t, dt C.int, root C.int) C.int {
	return C.int(theLib.call("broadcast", func() error {
		return theLib.broadcast(int64(h), buf, int64(count), dtype(dt), int32(root))
	}))
}

//export rt_allgather
func rt_allgather(h C.int64_t, send unsafe.Pointer, count C.int64_t, dt C.int, recv unsafe.Pointer, recvCount C.int64_t) C.int {
	return C.int(theLib.call("all-gather", func() error {
		return theLib.allGather(int64(h), send, int64(count), dtype(dt), recv, int64(recvCount))
	}))
}

//export rt_barrier
func rt_barrier(h C.int64_t) C.int {
	return C.int(theLib.call("barrier", func() error { return theLib.barrier(int64(h)) }))
}

// rt_state_send sends this node's state to the members the last boundary
// named (role send) and waits until they have it.
//
//export rt_state_send
func rt_state_send(h C.int64_t, state unsafe.Pointer, n C.size_t) C.int {
	return C.int(theLib.call("state send", func() error {
		s, err := get[*session](theLib, int64(h), "node")
		if err != nil {
			return err
		}
		var b []byte
		if n > 0 {
			if state == nil {
				return errInvalidf("state send: null state of %d bytes", n)
			}
			// Only read during the call (membership copies it into chunks).
			b = unsafe.Slice((*byte)(state), int(n))
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.opTimeout())
		defer cancel()
		return syncErr(s.n.SendState(ctx, b))
	}))
}

// rt_state_recv receives the state the last boundary said this node needs
// (role recv) into *state (malloc'ed; free it with rt_free_bytes) and *n.
//
//export rt_state_recv
func rt_state_recv(h C.int64_t, state *unsafe.Pointer, n *C.size_t) C.int {
	return C.int(theLib.call("state receive", func() error {
		s, err := get[*session](theLib, int64(h), "node")
		if err != nil {
			return err
		}
		if state == nil || n == nil {
			return errInvalidf("state receive: null output pointers")
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.opTimeout())
		defer cancel()
		b, err := s.n.RecvState(ctx)
		if err != nil {
			return syncErr(err)
		}
		*state = C.CBytes(b)
		*n = C.size_t(len(b))
		return nil
	}))
}

//export rt_free_bytes
func rt_free_bytes(p unsafe.Pointer) { C.free(p) }

// rt_leave makes the next rt_boundary announce a graceful leave (and ends
// a wait for admission at once).
//
//export rt_leave
func rt_leave(h C.int64_t) C.int {
	return C.int(theLib.call("leave", func() error {
		s, err := get[*session](theLib, int64(h), "node")
		if err != nil {
			return err
		}
		s.n.RequestLeave()
		return nil
	}))
}

//export rt_close
func rt_close(h C.int64_t) C.int {
	return C.int(theLib.call("close", func() error { return theLib.close(int64(h)) }))
}

// rt_last_error copies the calling thread's last error message into buf
// and returns its full length (0: the last call succeeded).
//
//export rt_last_error
func rt_last_error(buf *C.char, capacity C.size_t) C.int64_t {
	m := theLib.lastErr()
	copyOut(buf, capacity, m)
	return C.int64_t(len(m))
}

// syncErr: a state call in the wrong role is the host's mistake (the node
// is unaffected); any other failure is a failed transfer.
func syncErr(err error) error {
	if errors.Is(err, node.ErrNoSyncRole) {
		return errInvalidf("%v", err)
	}
	return comm(err)
}

// opTimeout bounds one state transfer.
func (s *session) opTimeout() time.Duration { return 10 * time.Minute }

func cbool(b bool) C.int32_t {
	if b {
		return 1
	}
	return 0
}

// copyOut writes s, truncated to capacity-1 bytes, and a NUL into buf.
func copyOut(buf *C.char, capacity C.size_t, s string) {
	if buf == nil || capacity == 0 {
		return
	}
	dst := unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(capacity))
	n := copy(dst[:len(dst)-1], s)
	dst[n] = 0
}

// rt_data_order writes data.Order(seed, epoch, n) into out (n int32s): the
// bindings' ports of the sample order are tested against it.
//
//export rt_data_order
func rt_data_order(seed, epoch C.uint64_t, n C.int64_t, out unsafe.Pointer) C.int {
	return C.int(theLib.call("data order", func() error {
		if n < 0 || n > 1<<31-1 || (n > 0 && out == nil) {
			return errInvalidf("data order: n %d", n)
		}
		copy(unsafe.Slice((*int32)(out), int(n)), data.Order(uint64(seed), uint64(epoch), int(n)))
		return nil
	}))
}

// rt_data_share writes data.ShareOf's Lo, Hi and Global into out[0:3].
//
//export rt_data_share
func rt_data_share(cursor, n, rank, size, perPeer C.int64_t, out *C.int64_t) C.int {
	return C.int(theLib.call("data share", func() error {
		if out == nil {
			return errInvalidf("data share: null output")
		}
		s := data.ShareOf(int(cursor), int(n), int(rank), int(size), int(perPeer))
		o := unsafe.Slice(out, 3)
		o[0], o[1], o[2] = C.int64_t(s.Lo), C.int64_t(s.Hi), C.int64_t(s.Global)
		return nil
	}))
}

// rt_bucketer_new plans a bucketed all-reduce of the fp32 arena (count
// elements) whose segments are given as nsegs (offset, length) pairs in
// segs, in the order backward makes them ready. The arena must stay alive
// and in place until rt_free.
//
//export rt_bucketer_new
func rt_bucketer_new(h C.int64_t, arena unsafe.Pointer, count C.int64_t, segs *C.int64_t, nsegs C.int64_t, bucketBytes C.int64_t, op C.int, wire C.int, out *C.int64_t) C.int {
	return C.int(theLib.call("bucketer", func() error {
		if nsegs < 0 || nsegs > 1<<24 || (nsegs > 0 && segs == nil) || out == nil {
			return errInvalidf("bucketer: %d segments", nsegs)
		}
		var ss []int64
		if nsegs > 0 {
			for _, v := range unsafe.Slice(segs, 2*int(nsegs)) { // copied: segs is not kept
				ss = append(ss, int64(v))
			}
		}
		b, err := theLib.newBucketer(int64(h), arena, int64(count), ss, int64(bucketBytes), int32(op), dtype(wire))
		if err == nil {
			*out = C.int64_t(b)
		}
		return err
	}))
}

// rt_bucketer_buckets returns the number of buckets planned (negative on error).
//
//export rt_bucketer_buckets
func rt_bucketer_buckets(b C.int64_t) C.int64_t {
	var n int64 = -1
	theLib.call("bucketer", func() error {
		bk, err := get[*bucketer](theLib, int64(b), "bucketer")
		if err == nil {
			n = int64(len(bk.b.Buckets()))
		}
		return err
	})
	return C.int64_t(n)
}

// rt_bucketer_start begins one step's round on the node's current epoch.
//
//export rt_bucketer_start
func rt_bucketer_start(b C.int64_t) C.int {
	return C.int(theLib.call("bucketed all-reduce", func() error {
		bk, err := get[*bucketer](theLib, int64(b), "bucketer")
		if err != nil {
			return err
		}
		return bk.start()
	}))
}

// rt_bucketer_ready marks segment seg final; full buckets launch at once.
//
//export rt_bucketer_ready
func rt_bucketer_ready(b C.int64_t, seg C.int64_t) C.int {
	return C.int(theLib.call("bucketed all-reduce", func() error {
		bk, err := get[*bucketer](theLib, int64(b), "bucketer")
		if err != nil {
			return err
		}
		return bk.markReady(int64(seg))
	}))
}

// rt_bucketer_wait launches the rest of the round and waits for it.
//
//export rt_bucketer_wait
func rt_bucketer_wait(b C.int64_t) C.int {
	return C.int(theLib.call("bucketed all-reduce", func() error {
		bk, err := get[*bucketer](theLib, int64(b), "bucketer")
		if err != nil {
			return err
		}
		return bk.wait()
	}))
}

// rt_free frees a request (waiting for it) or a bucketer (finishing its round).
//
//export rt_free
func rt_free(h C.int64_t) C.int {
	return C.int(theLib.call("free", func() error { return theLib.free(int64(h)) }))
}
