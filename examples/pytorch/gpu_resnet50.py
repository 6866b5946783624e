"""Prepared GPU benchmark (not run here: no GPU on the development machine).

ResNet-50 on synthetic ImageNet-shaped data on CUDA, through ringtrain's
DistributedOptimizer (gradients staged through pinned host buffers: one
device→host copy per parameter in the gradient hook, one host→device copy
after the all-reduce). Reports images/s and the staging overhead (time in
the device↔host copies per step, measured with CUDA events around them).

    python3 examples/pytorch/gpu_resnet50.py                                   # 1 process
    PYTHONPATH=python python3 -m ringtrain.launch --local 2 examples/pytorch/gpu_resnet50.py   # 2 processes

Needs torch with CUDA and torchvision. With 2 processes on one GPU host,
CUDA_VISIBLE_DEVICES is set per worker from RINGTRAIN_WORKER_SEED.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402

import ringtrain  # noqa: E402
import ringtrain.torch as rtt  # noqa: E402


def main():
    steps, warm, batch = int(os.environ.get("STEPS", "60")), 10, int(os.environ.get("BATCH", "64"))
    ngpu = torch.cuda.device_count()
    dev = torch.device("cuda", int(os.environ.get("RINGTRAIN_WORKER_SEED", "0")) % max(ngpu, 1))
    torch.cuda.set_device(dev)
    model = torchvision.models.resnet50().to(dev)
    node = ringtrain.init(fingerprint="resnet50-%d" % batch)
    opt = rtt.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), model)
    b = node.boundary(0)
    if b.role == "send":
        node.state_send(b"x")
    elif b.role == "recv":
        node.state_recv()
    rtt.broadcast_parameters(model)
    x = torch.randn(batch, 3, 224, 224, device=dev)
    y = torch.randint(0, 1000, (batch,), device=dev)
    stage = [0.0]
    orig_sync = opt.synchronize

    def timed_sync():
        torch.cuda.synchronize()
        t = time.perf_counter()
        orig_sync()
        torch.cuda.synchronize()
        stage[0] += time.perf_counter() - t
    opt.synchronize = timed_sync
    for i in range(steps):
        if i == warm:
            torch.cuda.synchronize()
            node.barrier()
            t0, stage[0] = time.perf_counter(), 0.0
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    n = steps - warm
    # Staging: one full device→host and host→device copy of the gradients, timed alone.
    g = torch.cat([p.grad.view(-1) for p in model.parameters()])
    h = torch.empty(g.numel(), pin_memory=True)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        h.copy_(g)
        g.copy_(h)
    torch.cuda.synchronize()
    copy_ms = (time.perf_counter() - t) / 10 * 1e3
    print("RESULT procs %d images/s %.1f step %.1f ms wait-in-step %.1f ms staging(d2h+h2d of %.0f MB) %.1f ms" % (
        b.size, n * batch * b.size / dt, dt / n * 1e3, stage[0] / n * 1e3, g.numel() * 4 / 1e6, copy_ms), flush=True)
    ringtrain.write_summary(node=node.id, steps=steps, peers=b.size, wall_seconds=dt, samples_per_sec=n * batch * b.size / dt,
                            parameter_digest="%.6e" % sum(p.double().sum().item() for p in model.parameters()))
    opt.close()
    node.close()


if __name__ == "__main__":
    main()
