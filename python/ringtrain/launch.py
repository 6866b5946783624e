"""Start N local workers of a training script, like ``trainer --local N``.

    python3 -m ringtrain.launch --local 4 examples/pytorch/mnist.py [script args]

Each worker is a separate process on 127.0.0.1 with an ephemeral cluster
secret, its own node ID (local-0 ...), RINGTRAIN_MIN_PEERS=N, and the first
worker's gossip address as its seed; ringtrain.init() picks all of it up from
the environment. The launcher shows the workers' progress lines and prints a
summary table from the summaries they write (ringtrain.write_summary).
"""

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from . import _lib


def _fmt_progress(rec):
    acc = rec.get("accuracy")
    acc = "%5.2f%%" % (100 * acc) if acc else "  -  "
    return "%-10s step %5s/%-5s ep %s loss %.3f acc %s %7.0f samples/s peers %s epoch %s" % (
        rec.get("node", "?"), rec.get("step", "?"), rec.get("total_steps", "?"), rec.get("data_epoch", 0),
        rec.get("loss", 0.0), acc, rec.get("samples_per_s", 0.0), rec.get("peers", "?"), rec.get("membership_epoch", "?"))


def _follow(proc, node, out, lock, interval):
    last = 0.0
    for line in proc.stdout:
        line = line.rstrip("\n")
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        with lock:
            if isinstance(rec, dict) and rec.get("msg") == "progress":
                rec.setdefault("node", node)
                now = time.time()
                if now - last >= interval or rec.get("step") == rec.get("total_steps"):
                    last = now
                    print(_fmt_progress(rec), file=out, flush=True)
            elif isinstance(rec, dict) and rec.get("msg") == "summary":
                pass
            else:
                print("[%s] %s" % (node, line), file=out, flush=True)


def summary_table(sums, n, wall, out):
    print("\nringtrain.launch --local %d: %d workers finished in %.0fs" % (n, len(sums), wall), file=out)
    print("%-10s %7s %6s %9s %11s %8s  %s" % ("node", "steps", "peers", "accuracy", "samples/s", "wall", "parameter digest"), file=out)
    digests = set()
    for s in sums:
        print("%-10s %7d %6d %8.2f%% %11.0f %7.0fs  %s" % (s["node"], s["steps"], s["peers"], 100 * s.get("test_accuracy", 0.0),
                                                        s.get("samples_per_sec", 0.0), s.get("wall_seconds", 0.0), s["parameter_digest"]), file=out)
        digests.add(s["parameter_digest"])
    if len(digests) == 1:
        print("all workers hold bitwise-identical parameters", file=out)
    elif digests:
        print("WARNING: workers disagree on the parameters (%d distinct digests)" % len(digests), file=out)
    return len(digests) == 1


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m ringtrain.launch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--local", type=int, required=True, help="workers to start on this machine")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the workers")
    ap.add_argument("--summary-json", help="write all workers' summaries to this file")
    ap.add_argument("--progress-interval", type=float, default=2.0, help="seconds between progress lines per worker")
    ap.add_argument("script")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    if not 1 <= a.local <= 64:
        ap.error("--local %d: want 1..64" % a.local)
    lib = _lib.path()  # build once here, not in every worker
    tmp = tempfile.mkdtemp(prefix="ringtrain-launch-")
    secret = secrets.token_hex(32)
    nodes = ["local-%d" % i for i in range(a.local)]
    lock = threading.Lock()
    procs, threads = [], []
    print("starting %d workers on 127.0.0.1 (ephemeral cluster secret): %s" % (a.local, " ".join([a.script] + a.args)), flush=True)
    start = time.time()
    seed = None
    try:
        for i, node in enumerate(nodes):
            env = {k: v for k, v in os.environ.items() if not k.startswith("RINGTRAIN_") or k in ("RINGTRAIN_CACHE",)}
            env.update(RINGTRAIN_LIB=lib, RINGTRAIN_NODE_ID=node, RINGTRAIN_LISTEN="127.0.0.1:0", RINGTRAIN_QUIC_LISTEN="127.0.0.1:0",
                       RINGTRAIN_MIN_PEERS=str(a.local), RINGTRAIN_SECRET=secret, RINGTRAIN_WORKER_SEED=str(i),
                       RINGTRAIN_SUMMARY_JSON=os.path.join(tmp, node + ".json"), PYTHONUNBUFFERED="1",
                       LOCAL_RANK=str(i), LOCAL_WORLD_SIZE=str(a.local))
            if i == 0:
                env["RINGTRAIN_ANNOUNCE"] = os.path.join(tmp, "seed")
            else:
                env["RINGTRAIN_SEEDS"] = seed
            p = subprocess.Popen([a.python, a.script] + a.args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, start_new_session=True)
            procs.append(p)
            t = threading.Thread(target=_follow, args=(p, node, sys.stdout, lock, a.progress_interval), daemon=True)
            t.start()
            threads.append(t)
            if i == 0:
                deadline = time.time() + 120
                while not os.path.exists(env["RINGTRAIN_ANNOUNCE"]):
                    if p.poll() is not None or time.time() > deadline:
                        raise RuntimeError("the first worker did not start its node (exit %s)" % p.poll())
                    time.sleep(0.05)
                with open(env["RINGTRAIN_ANNOUNCE"]) as f:
                    seed = f.read().strip()
        rcs = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        rcs = [p.wait() for p in procs]
    except BaseException:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        raise
    finally:
        for t in threads:
            t.join(timeout=5)
    wall = time.time() - start
    sums = []
    for node in nodes:
        try:
            with open(os.path.join(tmp, node + ".json")) as f:
                sums.append(json.load(f))
        except (OSError, ValueError):
            pass
    shutil.rmtree(tmp, ignore_errors=True)
    ok = summary_table(sums, a.local, wall, sys.stdout)
    if a.summary_json:
        with open(a.summary_json, "w") as f:
            json.dump({"nodes": sums, "wall_seconds": wall, "consistent": ok}, f, indent=2)
    bad = [(n, rc) for n, rc in zip(nodes, rcs) if rc != 0]
    if bad:
        print("workers failed: " + ", ".join("%s (exit %d)" % b for b in bad), file=sys.stderr)
        return 1
    if len(sums) != len(nodes) or not ok:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
