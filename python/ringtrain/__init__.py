"""ringtrain: data-parallel training over a ring all-reduce with no central server.

This package binds the Go core (libringtrain.so, through ctypes): a node joins
the cluster through its seed list, and between training steps a *boundary*
tells it the membership epoch the next step runs in (rank, size, and whether
it must send or receive the training state). Collectives work in place on
host buffers (numpy arrays here; torch tensors in :mod:`ringtrain.torch`).

    import ringtrain
    node = ringtrain.init(seeds="host1:7946", secret_file="secret", min_peers=4)
    b = node.boundary(done=0)
    node.allreduce(array, op="avg")

Every keyword of :func:`init` has the trainer's flag name (underscores for
dashes) and the same environment twin (``RINGTRAIN_SEEDS``, ``RINGTRAIN_SECRET``, ...).
``go_threads`` caps the Go runtime's threads in this process (GOMAXPROCS); by
default, when ``LOCAL_WORLD_SIZE`` says how many workers share the host (torchrun
and ``ringtrain.launch`` set it), each gets ``cpus // LOCAL_WORLD_SIZE`` (at least 1).

Errors: :class:`InvalidArgument` (also a ``ValueError``) for bad input, which
leaves the node as it was; :class:`CommError` when a collective or state
transfer failed (the epoch's ring is broken: report the step as failed at the
next boundary and continue); :class:`NotInitialized` before :func:`init`.
"""

import ctypes
import json
import os
import time

from . import _lib
from .data import ElasticSampler, order, share_of  # noqa: F401

__all__ = ["init", "Node", "Boundary", "RingtrainError", "InvalidArgument", "CommError", "NotInitialized",
           "ElasticSampler", "order", "share_of", "node", "report_progress", "write_summary"]


class RingtrainError(RuntimeError):
    """A ringtrain call failed; the message names node, peer, epoch and operation."""


class InvalidArgument(RingtrainError, ValueError):
    """Bad input (dtype, layout, size, handle): nothing was sent, the node is unaffected."""


class CommError(RingtrainError):
    """A collective or state transfer failed: report the step as failed at the next boundary."""


class NotInitialized(RingtrainError):
    """ringtrain.init() has not been called (or the node is closed)."""


class Closed(NotInitialized):
    """The node is closed."""


_CODES = {_lib.EINVAL: InvalidArgument, _lib.ECOMM: CommError, _lib.ECLOSED: Closed}


def _check(code, what=""):
    if code != _lib.OK:
        raise _CODES.get(code, RingtrainError)(_lib.last_error() or ("ringtrain: %s failed with code %d" % (what, code)))


# Config keys: the trainer's flag names, plus the binding's own.
CONFIG_KEYS = ("seeds", "listen", "advertise", "quic-listen", "quic-advertise", "node-id", "secret", "secret-file",
               "insecure", "min-peers", "chunk-bytes", "op-timeout", "wire-dtype", "fingerprint", "log-level",
               "go-threads", "state-file", "transport", "lanes")

DTYPES = {"fp32": _lib.FP32, "float32": _lib.FP32, "bf16": _lib.BF16, "bfloat16": _lib.BF16,
          "fp16": _lib.FP16, "float16": _lib.FP16}
OPS = {"sum": _lib.SUM, "avg": _lib.AVG, "average": _lib.AVG, "mean": _lib.AVG, "max": _lib.MAX, "min": _lib.MIN}


def op_code(op):
    if isinstance(op, int) and op in OPS.values():
        return op
    try:
        return OPS[str(op).lower()]
    except KeyError:
        raise InvalidArgument("ringtrain: unknown reduction %r (want sum, avg, max or min)" % (op,)) from None


def config(**kwargs):
    """The node config: keyword arguments, else RINGTRAIN_* environment twins."""
    cfg = {}
    for k, v in kwargs.items():
        key = k.replace("_", "-")
        if key not in CONFIG_KEYS:
            raise InvalidArgument("ringtrain.init: unknown option %r (known: %s)" % (k, ", ".join(CONFIG_KEYS)))
        if v is not None:
            cfg[key] = ",".join(v) if isinstance(v, (list, tuple)) else v
    for key in CONFIG_KEYS:
        env = "RINGTRAIN_" + key.upper().replace("-", "_")
        if key not in cfg and os.environ.get(env):
            cfg[key] = os.environ[env]
    if "go-threads" not in cfg and not os.environ.get("GOMAXPROCS"):
        # Workers sharing a host (torchrun and ringtrain.launch say how
        # many) split its CPUs: a Go runtime with one thread per CPU in
        # each of them spins beside the framework's compute threads.
        local = os.environ.get("LOCAL_WORLD_SIZE", "")
        if local.isdigit() and int(local) > 0:
            cfg["go-threads"] = max(1, (os.cpu_count() or 1) // int(local))
    return cfg


class Boundary:
    """The epoch the next step runs in."""

    __slots__ = ("epoch", "step", "rank", "size", "role", "changed", "left", "members")

    def __init__(self, b, members):
        self.epoch, self.step, self.rank, self.size = b.epoch, b.step, b.rank, b.size
        self.role = {_lib.ROLE_SEND: "send", _lib.ROLE_RECV: "recv"}.get(b.role, "none")
        self.changed, self.left, self.members = bool(b.changed), bool(b.left), members

    def __repr__(self):
        return "Boundary(epoch=%d, step=%d, rank=%d, size=%d, role=%s, changed=%s, left=%s)" % (
            self.epoch, self.step, self.rank, self.size, self.role, self.changed, self.left)


class Request:
    """An asynchronous all-reduce in flight; keep the buffer alive until wait()."""

    def __init__(self, node, handle, keep, after=None):
        self._node, self._h, self._keep, self._after = node, handle, keep, after

    def test(self):
        done = ctypes.c_int(0)
        _check(self._node._L.rt_test(self._h, ctypes.byref(done)), "test")
        return bool(done.value)

    def wait(self):
        if self._h is None:
            return
        h, self._h = self._h, None
        try:
            _check(self._node._L.rt_wait(h), "wait")
        finally:
            self._keep = None
        if self._after is not None:
            self._after()


class Node:
    """One ringtrain node (one per process)."""

    def __init__(self, **kwargs):
        self._L = _lib.lib()
        self.config = config(**kwargs)
        h = ctypes.c_int64(0)
        _check(self._L.rt_init(json.dumps(self.config).encode(), ctypes.byref(h)), "init")
        self._h = h.value
        self.last = None
        self.id = _lib.string_out(self._L.rt_node_id, self._h)
        self.gossip_addr = _lib.string_out(self._L.rt_gossip_addr, self._h)
        announce = os.environ.get("RINGTRAIN_ANNOUNCE")
        if announce:
            # ringtrain.launch's first child tells the launcher where to join.
            tmp = announce + ".tmp"
            with open(tmp, "w") as f:
                f.write(self.gossip_addr)
            os.replace(tmp, announce)

    # -- membership --------------------------------------------------------
    def boundary(self, done, failed=None, leave=False):
        """Ends a step and returns the Boundary of the next one.

        done: steps applied to this node's state; failed: the step's error
        (a CommError, or any message) if it was not applied; leave: leave
        gracefully. Blocks until this node is admitted to an epoch.
        """
        b = _lib.BoundaryT()
        msg = str(failed).encode()[:2000] if failed else None
        _check(self._L.rt_boundary(self._handle(), int(done), 1 if failed else 0, msg, 1 if leave else 0, ctypes.byref(b)), "boundary")
        members = _lib.string_out(self._L.rt_members, self._h) or ""
        self.last = Boundary(b, members.split(",") if members else [])
        return self.last

    @property
    def rank(self):
        return self.last.rank if self.last else 0

    @property
    def size(self):
        return self.last.size if self.last else 1

    def state_send(self, state):
        """Sends this node's state (bytes) to the members that need it (role send)."""
        state = bytes(state)
        _check(self._L.rt_state_send(self._handle(), state, len(state)), "state send")

    def state_recv(self):
        """Receives the state this node needs (role recv) as bytes."""
        p, n = ctypes.c_void_p(), ctypes.c_size_t()
        _check(self._L.rt_state_recv(self._handle(), ctypes.byref(p), ctypes.byref(n)), "state receive")
        try:
            return ctypes.string_at(p, n.value)
        finally:
            self._L.rt_free_bytes(p)

    def leave(self):
        """Leave gracefully at the next boundary (at once while waiting for admission)."""
        _check(self._L.rt_leave(self._handle()), "leave")

    def close(self):
        if self._h is not None:
            h, self._h = self._h, None
            _check(self._L.rt_close(h), "close")

    def _handle(self):
        if self._h is None:
            raise Closed("ringtrain: the node is closed")
        return self._h

    # -- collectives on raw buffers -----------------------------------------
    def allreduce_ptr(self, ptr, count, dtype, op):
        _check(self._L.rt_allreduce(self._handle(), ptr, count, dtype, op_code(op)), "all-reduce")

    def allreduce_async_ptr(self, ptr, count, dtype, op, keep=None, after=None):
        r = ctypes.c_int64(0)
        _check(self._L.rt_allreduce_async(self._handle(), ptr, count, dtype, op_code(op), ctypes.byref(r)), "all-reduce")
        return Request(self, r.value, keep, after)

    def broadcast_ptr(self, ptr, count, dtype, root=0):
        _check(self._L.rt_broadcast(self._handle(), ptr, count, dtype, int(root)), "broadcast")

    def allgather_ptr(self, send, count, dtype, recv, recv_count):
        _check(self._L.rt_allgather(self._handle(), send, count, dtype, recv, recv_count), "all-gather")

    def barrier(self):
        _check(self._L.rt_barrier(self._handle()), "barrier")

    # -- numpy -----------------------------------------------------------
    def allreduce(self, array, op="sum"):
        """All-reduces a C-contiguous float32/float16 numpy array in place."""
        ptr, n, dt = _numpy_buffer(array, "allreduce")
        self.allreduce_ptr(ptr, n, dt, op)
        return array

    def allreduce_async(self, array, op="sum"):
        ptr, n, dt = _numpy_buffer(array, "allreduce_async")
        return self.allreduce_async_ptr(ptr, n, dt, op, keep=array)

    def broadcast(self, array, root=0):
        ptr, n, dt = _numpy_buffer(array, "broadcast")
        self.broadcast_ptr(ptr, n, dt, root)
        return array

    def allgather(self, array):
        import numpy as np
        ptr, n, dt = _numpy_buffer(array, "allgather")
        out = np.empty((self.size,) + array.shape, dtype=array.dtype)
        self.allgather_ptr(ptr, n, dt, out.ctypes.data, out.size)
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _numpy_buffer(a, what):
    import numpy as np
    if not isinstance(a, np.ndarray):
        raise InvalidArgument("ringtrain.%s: want a numpy array, got %s" % (what, type(a).__name__))
    if not a.flags.c_contiguous or not a.flags.writeable:
        raise InvalidArgument("ringtrain.%s: the array must be C-contiguous and writeable (use np.ascontiguousarray)" % what)
    dt = {np.dtype(np.float32): _lib.FP32, np.dtype(np.float16): _lib.FP16}.get(a.dtype)
    if dt is None:
        raise InvalidArgument("ringtrain.%s: unsupported dtype %s (want float32 or float16)" % (what, a.dtype))
    return a.ctypes.data, a.size, dt


_default = None


def init(**kwargs):
    """Starts this process's node (see the module doc for the options) and returns it."""
    global _default
    if _default is not None:
        raise RingtrainError("ringtrain.init: this process already has a node; call ringtrain.shutdown() first")
    _default = Node(**kwargs)
    return _default


def node():
    """This process's node; NotInitialized before init()."""
    if _default is None or _default._h is None:
        raise NotInitialized("ringtrain: call ringtrain.init() first")
    return _default


def shutdown():
    global _default
    if _default is not None:
        n, _default = _default, None
        n.close()


def report_progress(**fields):
    """Prints one JSON progress line (read by ringtrain.launch, like trainer --local's children)."""
    rec = {"time": time.time(), "msg": "progress"}
    rec.update(fields)
    print(json.dumps(rec), flush=True)


def write_summary(**fields):
    """Writes this node's summary for ringtrain.launch (to $RINGTRAIN_SUMMARY_JSON) and prints it."""
    path = os.environ.get("RINGTRAIN_SUMMARY_JSON")
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(fields, f)
        os.replace(path + ".tmp", path)
    rec = {"msg": "summary"}
    rec.update(fields)
    print(json.dumps(rec), flush=True)
