"""A test worker: a small MLP on synthetic data, trained through ringtrain's elastic loop.

Started by the tests with RINGTRAIN_* in the environment. Writes its final
parameters, the job's step history and its own per-step sample indices to
--out (torch.save), and a line "step N" to stdout after every applied step.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import torch  # noqa: E402

import ringtrain  # noqa: E402
import ringtrain.torch as rtt  # noqa: E402

IN, HID, OUT = 20, 32, 4


def dataset(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, IN, generator=g)
    w = torch.randn(IN, OUT, generator=g)
    y = (x @ w).argmax(1)
    return x, y


def model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(IN, HID), torch.nn.Tanh(), torch.nn.Linear(HID, OUT))


def loss_of(m, x, y, weight):
    """Cross-entropy summed over the samples, times weight (1/global batch): the global mean's share."""
    return torch.nn.functional.cross_entropy(m(x), y, reduction="sum") * weight


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--samples", type=int, default=1600)
    ap.add_argument("--mode", default="dist", choices=["dist", "flat"])
    ap.add_argument("--bucket-bytes", type=int, default=0)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    x, y = dataset(a.samples, a.seed)
    m = model(a.seed + int(os.environ.get("RINGTRAIN_WORKER_SEED", "0")))  # different inits: the first epoch's sync must fix it
    node = ringtrain.init(fingerprint="worker-%d-%d" % (a.batch, a.samples))
    base = torch.optim.SGD(m.parameters(), lr=a.lr, momentum=0.9)
    # op sum: each worker's loss is its share of the global mean, so the shares add up.
    opt = rtt.DistributedOptimizer(base, m, bucket_bytes=a.bucket_bytes or None, op="sum") if a.mode == "dist" else base
    sampler = ringtrain.ElasticSampler(a.samples, a.batch, seed=a.seed)
    state = rtt.TorchState(m, opt, sampler=sampler)
    log = []

    def train_step(state, b):
        idx = sampler.indices(b.rank, b.size)
        _, _, g = sampler.share(b.rank, b.size)
        opt.zero_grad()
        if idx:
            t = torch.tensor(idx, dtype=torch.long)
            loss_of(m, x[t], y[t], 1.0 / g).backward()
        if a.mode == "flat":
            # One all-reduce of all gradients after backward (sum of the
            # per-worker shares of the global mean).
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in m.parameters()]
            flat = torch.cat([g_.view(-1) for g_ in grads])
            rtt.allreduce_(flat, "sum")
            off = 0
            for p in m.parameters():
                p.grad = flat[off:off + p.numel()].view_as(p).clone()
                off += p.numel()
        opt.step()
        log.append((state.step, b.epoch, b.rank, b.size, list(idx)))
        print("step %d size %d" % (state.step + 1, b.size), flush=True)
        if a.sleep:
            time.sleep(a.sleep)

    b = rtt.run(train_step, state, steps=a.steps)
    torch.save({"params": {k: v.clone() for k, v in m.state_dict().items()}, "history": state.history, "log": log,
                "step": state.step, "size": b.size, "node": node.id}, a.out)
    if a.mode == "dist":
        opt.close()
    node.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
