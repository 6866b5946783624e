"""Elastic training: a worker joining mid-run, and a worker killed mid-run (DESIGN §5 invariant 3)."""

import os
import signal

import torch

import worker as W
from ringtrain import order

SAMPLES, BATCH = 640, 8  # 4 workers: 20 steps a data epoch


def argv(out, steps, sleep, mode):
    return [W.__file__, "--steps", str(steps), "--batch", str(BATCH), "--samples", str(SAMPLES), "--sleep", str(sleep),
            "--mode", mode, "--bucket-bytes", "1024", "--out", out]


def load(j, node):
    return torch.load(os.path.join(j.tmp, node + ".pt"))


def assert_identical(outs):
    for o in outs[1:]:
        for k, v in outs[0]["params"].items():
            assert v.numpy().tobytes() == o["params"][k].numpy().tobytes(), (o["node"], k)


def check_exactly_once(hist, logs, steps):
    """The job's history: one entry per applied step, windows contiguous, each
    data epoch's samples used exactly once; each worker's logged indices are
    its share of that step's window."""
    assert [h[0] for h in hist] == list(range(steps)), hist
    used, cursor, epoch = {}, 0, 0
    for step, e, c, size, g in hist:
        assert (e, c) == (epoch, cursor), "step %d starts at epoch %d cursor %d, expected %d/%d" % (step, e, c, epoch, cursor)
        o = order(3, e, SAMPLES)
        used.setdefault(e, []).extend(o[c:c + g])
        cursor += g
        if cursor >= SAMPLES:
            epoch, cursor = epoch + 1, 0
    for e, idx in used.items():
        if e < epoch:  # complete epochs: every sample once
            assert sorted(idx) == list(range(SAMPLES)), "data epoch %d" % e
        else:
            assert len(set(idx)) == len(idx), "data epoch %d repeats samples" % e
    by_step = {h[0]: h for h in hist}
    for log in logs:
        for step, _, rank, size, idx in log:
            if step not in by_step:
                continue
            _, e, c, hsize, g = by_step[step]
            if hsize != size:
                continue  # a step this worker ran in a failed epoch, retried by the job
            lo, hi = c + rank * g // size, c + (rank + 1) * g // size
            assert idx == order(3, e, SAMPLES)[lo:hi], (step, rank, size)


def test_fourth_worker_joins_mid_run_and_gets_the_state(job):
    j = job(3)
    steps = 80
    for i in range(3):
        j.start("w%d" % i, argv("w%d.pt" % i, steps, 0.05, os.environ.get("RT_TEST_MODE", "dist")))
    j.wait_for("w0", "step 15 ")
    j.start("w3", argv("w3.pt", steps, 0.05, os.environ.get("RT_TEST_MODE", "dist")))
    for i in range(4):
        assert j.wait("w%d" % i) == 0, j.output("w%d" % i)
    outs = [load(j, "w%d" % i) for i in range(4)]
    assert all(o["step"] == steps and o["size"] == 4 for o in outs), [(o["step"], o["size"]) for o in outs]
    late = outs[3]["log"]
    assert late and late[0][0] >= 15, "the joiner must start from the job's step, not from 0: %r" % late[:1]
    assert any(size == 4 for _, _, _, size, _ in outs[0]["log"]), "the others never ran with 4 workers"
    assert_identical(outs)
    check_exactly_once(outs[0]["history"], [o["log"] for o in outs], steps)


def test_kill_9_one_of_four_survivors_continue(job):
    j = job(4)
    steps = 70
    for i in range(4):
        j.start("w%d" % i, argv("w%d.pt" % i, steps, 0.03, os.environ.get("RT_TEST_MODE", "dist")))
    j.wait_for("w2", "step 20 ")
    j.procs["w2"].send_signal(signal.SIGKILL)
    j.procs["w2"].wait()
    for i in (0, 1, 3):
        assert j.wait("w%d" % i) == 0, j.output("w%d" % i)
    outs = [load(j, "w%d" % i) for i in (0, 1, 3)]
    assert all(o["step"] == steps and o["size"] == 3 for o in outs)
    assert_identical(outs)
    for o in outs[1:]:
        assert o["history"] == outs[0]["history"]
    check_exactly_once(outs[0]["history"], [o["log"] for o in outs], steps)
