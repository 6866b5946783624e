"""A test worker that feeds ringtrain bad input and checks that the job continues."""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import torch  # noqa: E402

import ringtrain  # noqa: E402
import ringtrain.torch as rtt  # noqa: E402

res = {}


def expect(name, exc, f):
    try:
        f()
    except exc as e:
        res[name] = "%s: %s" % (type(e).__name__, e)
        return
    except Exception as e:  # noqa: BLE001
        res[name] = "WRONG %s: %s" % (type(e).__name__, e)
        return
    res[name] = "WRONG: no exception"


def sync(n, b):
    if b.role == "send":
        n.state_send(b"state")
    elif b.role == "recv":
        assert n.state_recv() == b"state"


expect("before_init", ringtrain.NotInitialized, lambda: rtt.allreduce_(torch.ones(3)))
n = ringtrain.init()
b = n.boundary(0)
sync(n, b)
expect("non_contiguous", ringtrain.InvalidArgument, lambda: rtt.allreduce_(torch.zeros(4, 4).t()))
expect("int64", ringtrain.InvalidArgument, lambda: rtt.allreduce_(torch.zeros(4, dtype=torch.int64)))
expect("float64", ringtrain.InvalidArgument, lambda: rtt.allreduce_(torch.zeros(4, dtype=torch.float64)))
expect("bad_op", ringtrain.InvalidArgument, lambda: rtt.allreduce_(torch.zeros(4), op="median"))
expect("bad_root", ringtrain.InvalidArgument, lambda: rtt.broadcast_(torch.zeros(4), root=7))
expect("not_a_tensor", ringtrain.InvalidArgument, lambda: rtt.allreduce_([1.0, 2.0]))
# The same epoch still works: nothing was sent for the refused calls.
t = torch.full((5,), float(b.rank + 1))
rtt.allreduce_(t, "sum")
res["after_invalid"] = t.tolist()
# Different sizes on different ranks: the ring notices, every member gets a CommError.
err = None
try:
    rtt.allreduce_(torch.ones(1000 if b.rank == 0 else 3000), "sum")
    res["sizes"] = "WRONG: no exception"
except ringtrain.CommError as e:
    err = e
    res["sizes"] = "%s: %s" % (type(e).__name__, e)
# Report the failed step; the next epoch works.
b = n.boundary(0, failed=err)
sync(n, b)
t = torch.full((5,), float(b.rank + 1), dtype=torch.bfloat16)
rtt.allreduce_(t, "sum")
res["after_failure"] = t.float().tolist()
res["epoch"] = b.epoch
b = n.boundary(1)
n.close()
expect("after_close", ringtrain.NotInitialized, lambda: n.boundary(2))
print("RESULT " + json.dumps(res), flush=True)
