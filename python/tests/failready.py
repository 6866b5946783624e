"""A test worker whose backward hook fails once with a CommError (as when a
peer dies mid-backward): the elastic loop must end that round and retry the
step, not refuse the next round as already in progress."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import torch  # noqa: E402

import ringtrain  # noqa: E402
import ringtrain.torch as rtt  # noqa: E402

STEPS, FAIL_AT = 6, 2

node = ringtrain.init(fingerprint="failready")
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
opt = rtt.DistributedOptimizer(torch.optim.SGD(m.parameters(), lr=0.1), m, bucket_bytes=64)
state = rtt.TorchState(m, opt)
L = node._L
real_ready = L.rt_bucketer_ready
calls = {"failed": 0}


def ready(h, i):
    # The first segment of step FAIL_AT's backward reports a failure, as
    # the Go side does once a bucket of the round has failed.
    if state.step == FAIL_AT and calls["failed"] == 0:
        calls["failed"] += 1
        return ringtrain._lib.ECOMM
    return real_ready(h, i)


L.rt_bucketer_ready = ready
x, y = torch.randn(32, 8), torch.randint(0, 2, (32,))
tries = []


def train_step(state, b):
    tries.append(state.step)
    opt.zero_grad()
    torch.nn.functional.cross_entropy(m(x), y).backward()
    opt.step()


rtt.run(train_step, state, steps=STEPS)
print("tries", tries, "failed", calls["failed"], "steps", state.step, flush=True)
assert state.step == STEPS and calls["failed"] == 1 and tries == [0, 1, 2, 2, 3, 4, 5], tries
opt.close()
node.close()
print("done", flush=True)
