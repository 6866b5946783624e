#!/usr/bin/python3
"""Training throughput of ringtrain's two ready models in PyTorch on CPU.

Same architectures, batch, loss and optimizer as model.BenchmarkTrainStep
(MLP 784-256-128-10; LeNet-like CNN conv5x5x20-pool-conv5x5x50-pool-500-
dropout-10; softmax cross-entropy; SGD with momentum 0.9), random inputs.
Prints the median samples/s of several timed runs per model.

Run with Debian's interpreter: /usr/bin/python3 bench/torch_throughput.py
[--threads N] [--runs 5] [--seconds 2]
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn


def mlp():
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Dropout(0.5), nn.Linear(500, 10))


def bench(name, net, shape, batch, runs, seconds):
    torch.manual_seed(1)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    net.train()

    def step():
        opt.zero_grad(set_to_none=False)
        loss_fn(net(x), y).backward()
        opt.step()

    for _ in range(5):  # warm-up
        step()
    rates = []
    for _ in range(runs):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            step()
            n += 1
        rates.append(n * batch / (time.perf_counter() - t0))
    print(f"torch {name} batch={batch} threads={torch.get_num_threads()} samples/s median={statistics.median(rates):.1f} "
          f"runs={' '.join(f'{r:.1f}' for r in rates)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}; BLAS: {torch.__config__.show().split('BLAS_INFO=')[1].split(',')[0]}")
    bench("mlp", mlp(), (784,), a.batch, a.runs, a.seconds)
    bench("cnn", cnn(), (1, 28, 28), a.batch, a.runs, a.seconds)


if __name__ == "__main__":
    main()
