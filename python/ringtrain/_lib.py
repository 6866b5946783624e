"""Finding, building and loading libringtrain.so, and its C prototypes.

The library is found at $RINGTRAIN_LIB; otherwise it is built from the Go
sources of the repository this package sits in (or $RINGTRAIN_SRC) with
``go build -buildmode=c-shared`` into a cache directory keyed by a hash of
those sources, so a changed Go file means a fresh build and an unchanged
tree loads the cached one.
"""

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading

# Return codes and constants of libringtrain.h.
OK, ERR, EINVAL, ECOMM, ECLOSED = 0, 1, 2, 3, 4
FP32, BF16, FP16 = 0, 1, 2
SUM, AVG, MAX, MIN = 0, 1, 2, 3
ROLE_NONE, ROLE_SEND, ROLE_RECV = 0, 1, 2


class BoundaryT(ctypes.Structure):
    _fields_ = [
        ("epoch", ctypes.c_uint64),
        ("step", ctypes.c_uint64),
        ("rank", ctypes.c_int32),
        ("size", ctypes.c_int32),
        ("role", ctypes.c_int32),
        ("changed", ctypes.c_int32),
        ("left", ctypes.c_int32),
    ]


_lock = threading.Lock()
_lib = None


def source_dir():
    """The Go module root holding cmd/libringtrain, or None."""
    d = os.environ.get("RINGTRAIN_SRC")
    if d:
        return d
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    if os.path.exists(os.path.join(root, "go.mod")) and os.path.isdir(os.path.join(root, "cmd", "libringtrain")):
        return root
    return None


def _source_hash(root):
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in ("python", "bench", "examples", "deploy"))
        for f in sorted(filenames):
            if f.endswith(".go") and not f.endswith("_test.go") or f in ("go.mod", "go.sum"):
                p = os.path.join(dirpath, f)
                h.update(os.path.relpath(p, root).encode())
                with open(p, "rb") as fh:
                    h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()[:16]


def _go():
    go = shutil.which("go")
    if go is None and os.path.exists("/usr/local/go/bin/go"):
        go = "/usr/local/go/bin/go"
    return go


def build(root=None, cache=None):
    """Builds libringtrain.so from the Go sources (if not cached) and returns its path."""
    root = root or source_dir()
    if root is None:
        raise RuntimeError("ringtrain: libringtrain.so not found: set RINGTRAIN_LIB to its path, or RINGTRAIN_SRC to the ringtrain source tree")
    go = _go()
    if go is None:
        raise RuntimeError("ringtrain: libringtrain.so not found and no Go toolchain to build it: set RINGTRAIN_LIB, or install Go")
    cache = cache or os.environ.get("RINGTRAIN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ringtrain")
    out_dir = os.path.join(cache, _source_hash(root))
    so = os.path.join(out_dir, "libringtrain.so")
    if os.path.exists(so):
        return so
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=out_dir)
    try:
        r = subprocess.run([go, "build", "-buildmode=c-shared", "-o", os.path.join(tmp, "libringtrain.so"), "./cmd/libringtrain"],
                           cwd=root, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("ringtrain: building libringtrain.so failed:\n" + r.stderr)
        os.replace(os.path.join(tmp, "libringtrain.h"), os.path.join(out_dir, "libringtrain.h"))
        os.replace(os.path.join(tmp, "libringtrain.so"), so)  # atomic: concurrent builders agree
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return so


def path():
    p = os.environ.get("RINGTRAIN_LIB")
    if p:
        if not os.path.exists(p):
            raise RuntimeError("ringtrain: RINGTRAIN_LIB=%s does not exist" % p)
        return p
    return build()


def lib():
    """The loaded library (loaded once per process)."""
    global _lib
    with _lock:
        if _lib is None:
            _lib = _prototypes(ctypes.CDLL(path()))
        return _lib


def _prototypes(L):
    c = ctypes
    i64, u64, vp, sz = c.c_int64, c.c_uint64, c.c_void_p, c.c_size_t
    P = c.POINTER
    sig = {
        "rt_init": (c.c_int, [c.c_char_p, P(i64)]),
        "rt_boundary": (c.c_int, [i64, u64, c.c_int, c.c_char_p, c.c_int, P(BoundaryT)]),
        "rt_members": (i64, [i64, c.c_char_p, sz]),
        "rt_node_id": (i64, [i64, c.c_char_p, sz]),
        "rt_gossip_addr": (i64, [i64, c.c_char_p, sz]),
        "rt_allreduce": (c.c_int, [i64, vp, i64, c.c_int, c.c_int]),
        "rt_allreduce_async": (c.c_int, [i64, vp, i64, c.c_int, c.c_int, P(i64)]),
        "rt_wait": (c.c_int, [i64]),
        "rt_test": (c.c_int, [i64, P(c.c_int)]),
        "rt_broadcast": (c.c_int, [i64, vp, i64, c.c_int, c.c_int]),
        "rt_allgather": (c.c_int, [i64, vp, i64, c.c_int, vp, i64]),
        "rt_barrier": (c.c_int, [i64]),
        "rt_state_send": (c.c_int, [i64, vp, sz]),
        "rt_state_recv": (c.c_int, [i64, P(vp), P(sz)]),
        "rt_free_bytes": (None, [vp]),
        "rt_leave": (c.c_int, [i64]),
        "rt_close": (c.c_int, [i64]),
        "rt_last_error": (i64, [c.c_char_p, sz]),
        "rt_data_order": (c.c_int, [u64, u64, i64, vp]),
        "rt_data_share": (c.c_int, [i64, i64, i64, i64, i64, P(i64)]),
        "rt_bucketer_new": (c.c_int, [i64, vp, i64, vp, i64, i64, c.c_int, c.c_int, P(i64)]),
        "rt_bucketer_buckets": (i64, [i64]),
        "rt_bucketer_start": (c.c_int, [i64]),
        "rt_bucketer_ready": (c.c_int, [i64, i64]),
        "rt_bucketer_wait": (c.c_int, [i64]),
        "rt_free": (c.c_int, [i64]),
    }
    for name, (res, args) in sig.items():
        f = getattr(L, name, None)
        if f is None:
            continue  # an older library: the call raises when used
        f.restype, f.argtypes = res, args
    return L


def last_error():
    L = lib()
    buf = ctypes.create_string_buffer(4096)
    n = L.rt_last_error(buf, len(buf))
    if n >= len(buf):
        buf = ctypes.create_string_buffer(n + 1)
        L.rt_last_error(buf, len(buf))
    return buf.value.decode("utf-8", "replace")


def string_out(fn, h):
    buf = ctypes.create_string_buffer(1024)
    n = fn(h, buf, len(buf))
    if n >= len(buf):
        buf = ctypes.create_string_buffer(n + 1)
        n = fn(h, buf, len(buf))
    return None if n < 0 else buf.value.decode()
