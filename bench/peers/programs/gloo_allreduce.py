"""PyTorch gloo all-reduce peer for ringtrain's bench.

One rank per process, started by the bench driver (inside the rank's
network namespace). Same schedule, input and exact check as ringtrain's
workers; takes part in the driver's READY/GO handshake and prints one JSON
line: per size the rank's time of every timed round and its CPU time over
the timed rounds.

usage: gloo_allreduce.py RANK WORLD INIT_METHOD WARMUP ITERS SIZE_BYTES...
"""
import json
import resource
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist


def cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main():
    rank, world, init = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    warmup, iters = int(sys.argv[4]), int(sys.argv[5])
    sizes = [int(s) for s in sys.argv[6:]]
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        sys.exit("gloo_allreduce: no GO on stdin")
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world,
                            timeout=timedelta(minutes=10))
    out = {"times_s": [], "cpu_s": []}
    for size in sizes:
        count = size // 4
        src = (torch.arange(count, dtype=torch.int64) % 5 + rank + 1).to(torch.float32)
        buf = torch.empty_like(src)
        times = []
        c0 = 0.0
        for r in range(warmup + iters):
            if r == warmup:
                c0 = cpu_seconds()
            buf.copy_(src)
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            dt = time.perf_counter() - t0
            if r >= warmup:
                times.append(dt)
        out["cpu_s"].append(cpu_seconds() - c0)
        want = (torch.arange(count, dtype=torch.int64) % 5 * world + world * (world + 1) // 2).to(torch.float32)
        if not torch.equal(buf, want):
            sys.exit("gloo_allreduce: rank %d: wrong sum for %d B" % (rank, size))
        out["times_s"].append(times)
    dist.destroy_process_group()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
