"""Train a small CNN on MNIST with PyTorch over ringtrain, one process per worker.

On one machine (N local workers, ephemeral secret):

    python3 -m ringtrain.launch --local 4 examples/pytorch/mnist.py

By hand, one process per node (every option has its RINGTRAIN_* twin):

    RINGTRAIN_SECRET_FILE=secret RINGTRAIN_MIN_PEERS=2 python3 examples/pytorch/mnist.py                  # node 1
    RINGTRAIN_SECRET_FILE=secret RINGTRAIN_SEEDS=host1:7946 python3 examples/pytorch/mnist.py             # node 2

The data is the MNIST copy the Go module ships (data/mnist/*.gz). Workers may
join or fail while it runs: the elastic loop syncs joiners from the most
advanced worker and retries a failed step in the next membership epoch.
"""

import argparse
import gzip
import hashlib
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
import ringtrain  # noqa: E402
import ringtrain.torch as rtt  # noqa: E402

MNIST_DIR = os.path.join(HERE, "..", "..", "data", "mnist")
MEAN, STD = 0.1307, 0.3081  # as data.NewSet in Go


def load_idx(path):
    with gzip.open(path, "rb") as f:
        b = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", b[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError("%s: not an unsigned-byte IDX file" % path)
    dims = struct.unpack(">" + "I" * ndim, b[4:4 + 4 * ndim])
    return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def mnist(split, data_dir=MNIST_DIR):
    x = load_idx(os.path.join(data_dir, "%s-images-idx3-ubyte.gz" % split)).astype(np.float32)
    y = load_idx(os.path.join(data_dir, "%s-labels-idx1-ubyte.gz" % split)).astype(np.int64)
    x = (x / 255 - MEAN) / STD
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5)
        self.conv2 = nn.Conv2d(8, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def digest(model):
    h = hashlib.sha256()
    for _, t in sorted(model.state_dict().items()):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def evaluate(model, x, y, b):
    """Sharded evaluation: each worker scores its slice, the counts are summed."""
    lo, hi = b.rank * len(y) // b.size, (b.rank + 1) * len(y) // b.size
    model.eval()
    with torch.no_grad():
        out = model(x[lo:hi])
        counts = torch.tensor([(out.argmax(1) == y[lo:hi]).sum().item(), F.cross_entropy(out, y[lo:hi], reduction="sum").item()], dtype=torch.float32)
    model.train()
    rtt.allreduce_(counts, "sum")
    return counts[0].item() / len(y), counts[1].item() / len(y)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=1, help="data epochs")
    ap.add_argument("--steps", type=int, default=0, help="global steps (0: --epochs)")
    ap.add_argument("--batch", type=int, default=64, help="per-worker batch")
    ap.add_argument("--lr", type=float, default=0.05, help="learning rate for one worker's batch (scaled linearly)")
    ap.add_argument("--warmup-steps", type=int, default=50)
    ap.add_argument("--bucket-bytes", type=int, default=0)
    ap.add_argument("--wire-dtype", default="fp32")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train-samples", type=int, default=0, help="use the first N training samples (0: all)")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("RINGTRAIN_THREADS", "1")))
    torch.manual_seed(a.seed)
    x, y = mnist("train")
    if a.train_samples:
        x, y = x[:a.train_samples], y[:a.train_samples]
    tx, ty = mnist("t10k")
    model = CNN()
    fingerprint = hashlib.sha256(repr([(k, tuple(v.shape)) for k, v in model.state_dict().items()] + [a.batch, a.lr, len(y)]).encode()).hexdigest()[:16]
    node = ringtrain.init(fingerprint=fingerprint)
    opt = rtt.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9), model,
                                   bucket_bytes=a.bucket_bytes or None, wire_dtype=a.wire_dtype)
    sampler = ringtrain.ElasticSampler(len(y), a.batch, seed=a.seed)
    scaling = rtt.LinearScaling(a.lr, a.batch, warmup=a.warmup_steps)
    state = rtt.TorchState(model, opt, sampler=sampler, scaling=scaling)
    start, loss_v, samples = time.time(), 0.0, 0
    last_report = [0.0]

    def total_steps(size):
        if a.steps:
            return a.steps
        per = (len(y) + size * a.batch - 1) // (size * a.batch)
        done_epochs_steps = state.step  # approximate: steps so far plus what is left at this size
        left = (a.epochs - sampler.epoch) * per - (sampler.cursor // (size * a.batch))
        return done_epochs_steps + max(left, 0)

    def train_step(state, b):
        nonlocal loss_v, samples
        idx = torch.tensor(sampler.indices(b.rank, b.size), dtype=torch.long)
        lo, hi, g = sampler.share(b.rank, b.size)
        scaling.apply(opt, state.step, b.size * a.batch)
        opt.zero_grad()
        if len(idx):
            loss = F.cross_entropy(model(x[idx]), y[idx]) * (len(idx) * b.size / g)  # mean over the global batch
            loss.backward()
            loss_v = loss.item()
        opt.step()
        samples += g
        now = time.time()
        if now - last_report[0] > 1.0:
            last_report[0] = now
            ringtrain.report_progress(node=node.id, step=state.step + 1, total_steps=total_steps(b.size), data_epoch=sampler.epoch,
                                      loss=round(loss_v, 4), samples_per_s=round(samples / (now - start), 1), peers=b.size,
                                      membership_epoch=b.epoch)

    b = rtt.run(train_step, state, steps=a.steps or None,
                should_stop=None if a.steps else (lambda s: s.sampler.epoch >= a.epochs))
    acc, test_loss = (0.0, 0.0)
    if not b.left:
        acc, test_loss = evaluate(model, tx, ty, b)
    wall = time.time() - start
    ringtrain.report_progress(node=node.id, step=state.step, total_steps=state.step, data_epoch=sampler.epoch, loss=round(loss_v, 4),
                              accuracy=acc, samples_per_s=round(samples / wall, 1), peers=b.size, membership_epoch=b.epoch)
    ringtrain.write_summary(node=node.id, test_accuracy=acc, test_loss=test_loss, steps=state.step, peers=b.size, membership_epoch=b.epoch,
                            wall_seconds=wall, samples_per_sec=samples / wall, parameter_digest=digest(model), failed_steps=opt.comm_errors)
    opt.close()
    node.close()


if __name__ == "__main__":
    main()
