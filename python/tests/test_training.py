"""Data-parallel equivalence and bitwise-identical replicas (DESIGN §5 invariants 1 and 2).

n workers with per-worker batch b produce, after 50 steps, the parameters of
one process with batch n·b on the same samples, up to float32 summation
order: |Δ| ≤ 1e-5 + 1e-4·|p| elementwise (the measured worst case is printed).
"""

import os

import pytest
import torch

import worker as W
from ringtrain import ElasticSampler

STEPS, BATCH, SAMPLES, LR, SEED = 50, 8, 1600, 0.1, 3
ATOL, RTOL = 1e-5, 1e-4


def reference(n):
    """One process, batch n·BATCH, the same samples and optimizer."""
    torch.set_num_threads(1)
    x, y = W.dataset(SAMPLES, SEED)
    m = W.model(SEED)
    opt = torch.optim.SGD(m.parameters(), lr=LR, momentum=0.9)
    s = ElasticSampler(SAMPLES, n * BATCH, seed=SEED)
    for _ in range(STEPS):
        idx = torch.tensor(s.indices(0, 1), dtype=torch.long)
        _, _, g = s.share(0, 1)
        opt.zero_grad()
        W.loss_of(m, x[idx], y[idx], 1.0 / g).backward()
        opt.step()
        s.advance(1)
    return {k: v.detach() for k, v in m.state_dict().items()}


def run_job(job, n, mode, extra=()):
    j = job(n)
    argv = [W.__file__, "--steps", str(STEPS), "--batch", str(BATCH), "--samples", str(SAMPLES), "--lr", str(LR), "--mode", mode] + list(extra)
    for i in range(n):
        j.start("w%d" % i, argv + ["--out", "w%d.pt" % i])
    outs = []
    for i in range(n):
        assert j.wait("w%d" % i) == 0, j.output("w%d" % i)
        outs.append(torch.load(os.path.join(j.tmp, "w%d.pt" % i)))
    return outs


def assert_replicas_identical(outs):
    first = outs[0]["params"]
    for o in outs[1:]:
        for k, v in first.items():
            assert torch.equal(v, o["params"][k]), "replica %s differs from %s in %s" % (o["node"], outs[0]["node"], k)
            assert v.numpy().tobytes() == o["params"][k].numpy().tobytes()


def max_diff(a, b):
    return max(((a[k] - b[k]).abs().max().item()) for k in a)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_n_workers_equal_one_process_with_n_times_the_batch(job, n):
    outs = run_job(job, n, os.environ.get("RT_TEST_MODE", "dist"), ["--bucket-bytes", "1024"])
    assert all(o["step"] == STEPS for o in outs)
    assert_replicas_identical(outs)
    ref = reference(n)
    d = max_diff(outs[0]["params"], ref)
    print("n=%d: max |Δ| vs one process with batch %d: %.3g" % (n, n * BATCH, d))
    for k, v in ref.items():
        torch.testing.assert_close(outs[0]["params"][k], v, atol=ATOL, rtol=RTOL)


def test_bucketed_overlapped_equals_one_allreduce_after_backward(job):
    # Many small buckets (1 KiB: every layer split across several) against
    # one all-reduce of the whole gradient after backward.
    bucketed = run_job(job, 2, "dist", ["--bucket-bytes", "256"])
    flat = run_job(job, 2, "flat")
    assert_replicas_identical(bucketed)
    assert_replicas_identical(flat)
    d = max_diff(bucketed[0]["params"], flat[0]["params"])
    print("bucketed vs one all-reduce: max |Δ| %.3g" % d)
    for k, v in flat[0]["params"].items():
        torch.testing.assert_close(bucketed[0]["params"][k], v, atol=ATOL, rtol=RTOL)


def test_lanes_through_the_binding(job):
    # RINGTRAIN_LANES=2: two TLS connections per peer; the buckets' all-reduces
    # alternate between them. Same result as one process, replicas identical.
    j = job(2)
    argv = [W.__file__, "--steps", str(STEPS), "--batch", str(BATCH), "--samples", str(SAMPLES), "--lr", str(LR),
            "--mode", "dist", "--bucket-bytes", "1024"]
    for i in range(2):
        j.start("w%d" % i, argv + ["--out", "w%d.pt" % i], RINGTRAIN_LANES="2")
    outs = []
    for i in range(2):
        assert j.wait("w%d" % i) == 0, j.output("w%d" % i)
        outs.append(torch.load(os.path.join(j.tmp, "w%d.pt" % i)))
    assert_replicas_identical(outs)
    for k, v in reference(2).items():
        torch.testing.assert_close(outs[0]["params"][k], v, atol=ATOL, rtol=RTOL)
