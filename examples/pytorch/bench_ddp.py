"""Side-by-side throughput: ringtrain's DistributedOptimizer vs PyTorch DDP (gloo),
same model, data and process count, in one run; plus all-reduce busbw of torch
tensors from Python (16 and 64 MiB).

    /usr/bin/python3 examples/pytorch/bench_ddp.py --procs 2 4 --steps 60 --repeats 3

Prints samples/s per configuration (median of --repeats runs, the first 10
steps of each run excluded as warm-up) and the ratio ringtrain/DDP.
"""

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))


def worker(a):
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, HERE)
    from mnist import CNN
    torch.set_num_threads(1)
    torch.manual_seed(1)
    rank, size = int(os.environ["BENCH_RANK"]), int(os.environ["BENCH_SIZE"])
    g = torch.Generator().manual_seed(rank)
    x, y = torch.randn(a.batch, 1, 28, 28, generator=g), torch.randint(0, 10, (a.batch,), generator=g)
    model = CNN()
    if a.kind == "ddp":
        import torch.distributed as dist
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%s" % os.environ["BENCH_PORT"], rank=rank, world_size=size)
        net = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        sync = dist.barrier
    else:
        import ringtrain
        import ringtrain.torch as rtt
        node = ringtrain.init(node_id="b%d" % rank, min_peers=size)
        b = node.boundary(0)
        if b.role == "send":
            node.state_send(b"x")
        elif b.role == "recv":
            node.state_recv()
        net = model
        opt = rtt.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), model)
        sync = node.barrier
    times = []
    for step in range(a.steps):
        if step == 10:
            sync()
            t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    sync()
    dt = time.perf_counter() - t0
    res = "RESULT %f" % ((a.steps - 10) * a.batch * size / dt)
    if a.kind == "ringtrain" and a.busbw:
        for mib in (16, 64):
            t = torch.ones(mib << 18)
            rtt.allreduce_(t, "sum")
            reps = []
            for _ in range(5):
                node.barrier()
                s = time.perf_counter()
                rtt.allreduce_(t, "sum")
                reps.append(time.perf_counter() - s)
            busbw = (mib << 20) / statistics.median(reps) * 2 * (size - 1) / size
            res += " busbw%d %f" % (mib, busbw / 1e6)
    if rank == 0:
        print(res, flush=True)
    if a.kind == "ringtrain":
        opt.close()
        node.close()


def launch(kind, n, a, local_hint=True):
    # LOCAL_WORLD_SIZE as torchrun sets it: ringtrain splits the host's
    # CPUs between the workers' Go runtimes (DDP ignores it).
    env = dict(os.environ, BENCH_SIZE=str(n), RINGTRAIN_SECRET=secrets.token_hex(16), RINGTRAIN_LISTEN="127.0.0.1:0",
               LOCAL_WORLD_SIZE=str(n))
    if not local_hint:
        del env["LOCAL_WORLD_SIZE"]  # Go's default threads, as the Go bench's peers have
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env["BENCH_PORT"] = str(port)
    procs = []
    seedfile = "/tmp/ringtrain-bench-seed-%d" % os.getpid()
    if os.path.exists(seedfile):
        os.remove(seedfile)
    for r in range(n):
        e = dict(env, BENCH_RANK=str(r))
        if kind == "ringtrain":
            if r == 0:
                e["RINGTRAIN_ANNOUNCE"] = seedfile
            else:
                while not os.path.exists(seedfile):
                    time.sleep(0.05)
                e["RINGTRAIN_SEEDS"] = open(seedfile).read().strip()
        cmd = [sys.executable, __file__, "--worker", kind, "--steps", str(a.steps), "--batch", str(a.batch)] + (["--busbw"] if a.busbw else [])
        procs.append(subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    out = procs[0].communicate()[0]
    for p in procs[1:]:
        p.wait()
    line = [l for l in out.splitlines() if l.startswith("RESULT")][0].split()
    vals = {"samples_per_s": float(line[1])}
    for k, v in zip(line[2::2], line[3::2]):
        vals[k] = float(v)
    return vals


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--procs", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--busbw", action="store_true")
    ap.add_argument("--busbw-only", action="store_true", help="only the all-reduce busbw (2 procs)")
    a = ap.parse_args()
    if a.worker:
        a.kind = a.worker
        return worker(a)
    from ringtrain import _lib
    os.environ["RINGTRAIN_LIB"] = _lib.path()
    print("%-5s %-10s %12s %12s %8s" % ("procs", "", "ringtrain", "ddp-gloo", "ratio"))
    for n in ([] if a.busbw_only else a.procs):
        rt, dd = [], []
        for _ in range(a.repeats):  # interleaved: drift hits both alike
            rt.append(launch("ringtrain", n, a)["samples_per_s"])
            dd.append(launch("ddp", n, a)["samples_per_s"])
        mr, md = statistics.median(rt), statistics.median(dd)
        print("%-5d %-10s %12.0f %12.0f %8.2f   (runs: %s | %s)" % (n, "samples/s", mr, md, mr / md,
              " ".join("%.0f" % v for v in rt), " ".join("%.0f" % v for v in dd)), flush=True)
    if a.busbw or a.busbw_only:
        # Interleaved with the Go collective's figure on the same links (the
        # repo's all-reduce bench, 2 peer processes on loopback), so drift
        # on a shared machine hits both alike.
        a.busbw, a.steps = True, 12
        root = os.path.join(HERE, "..", "..")
        gobench = os.path.join(os.environ.get("TMPDIR", "/tmp"), "ringtrain-bench-%d" % os.getpid())
        subprocess.run(["go", "build", "-o", gobench, "./bench"], cwd=root, check=True)
        py, go = {16: [], 64: []}, {16: [], 64: []}
        try:
            for _ in range(a.repeats):
                v = launch("ringtrain", 2, a, local_hint=False)
                for mib in py:
                    py[mib].append(v["busbw%d" % mib])
                js = gobench + ".json"
                subprocess.run([gobench, "allreduce", "--links", "loopback", "--n", "2", "--sizes", "16MiB,64MiB", "--iters", "3",
                                "--systems", "ringtrain", "--ref-duration", "0", "--json", js], cwd=root, check=True,
                               stdout=subprocess.DEVNULL)
                with open(js) as f:
                    for r in json.load(f):  # bench/allreduce's Row
                        if r["system"] == "ringtrain" and r["bytes"] >> 20 in go:
                            go[r["bytes"] >> 20].append(r["busbw_Bps"] / 1e6)
        finally:
            for f in (gobench, gobench + ".json"):
                if os.path.exists(f):
                    os.remove(f)
        print("all-reduce busbw, 2 procs on loopback (MB/s, median of %d): python torch tensors vs Go collective (bench allreduce)" % a.repeats)
        for mib in py:
            mp, mg = statistics.median(py[mib]), statistics.median(go[mib]) if go[mib] else float("nan")
            print("  %3d MiB  python %6.0f   go %6.0f   ratio %.2f   (runs: %s | %s)" % (mib, mp, mg, mp / mg,
                  " ".join("%.0f" % x for x in py[mib]), " ".join("%.0f" % x for x in go[mib])), flush=True)

if __name__ == "__main__":
    main()
