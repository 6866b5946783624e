"""Shared fixtures: the library (built once per session) and a local job launcher."""

import os
import secrets
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from ringtrain import _lib  # noqa: E402

PY = sys.executable


@pytest.fixture(scope="session")
def lib():
    p = _lib.path()
    os.environ["RINGTRAIN_LIB"] = p
    return p


class Job:
    """Workers of one local job (127.0.0.1, one secret, the first one's gossip address as seed)."""

    def __init__(self, tmp, lib, min_peers, secret=None):
        # A directory per job: its announce file and outputs are its own.
        self.tmp = tempfile.mkdtemp(prefix="job-", dir=str(tmp))
        self.lib, self.min_peers = lib, min_peers
        self.secret = secret or secrets.token_hex(16)
        self.seed = None
        self.procs = {}

    def env(self, node, secret=None, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RINGTRAIN_")}
        env.update(RINGTRAIN_LIB=self.lib, RINGTRAIN_NODE_ID=node, RINGTRAIN_MIN_PEERS=str(self.min_peers),
                   RINGTRAIN_SECRET=secret or self.secret, RINGTRAIN_LISTEN="127.0.0.1:0", RINGTRAIN_QUIC_LISTEN="127.0.0.1:0",
                   RINGTRAIN_OP_TIMEOUT="30s", PYTHONUNBUFFERED="1")
        env.update(extra)
        return env

    def start(self, node, argv, secret=None, **extra):
        env = self.env(node, secret, **extra)
        if self.seed is None:
            ann = os.path.join(self.tmp, "seed")
            env["RINGTRAIN_ANNOUNCE"] = ann
        else:
            env["RINGTRAIN_SEEDS"] = self.seed
        log = open(os.path.join(self.tmp, node + ".log"), "w+")
        p = subprocess.Popen([PY] + argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        p.log = log
        self.procs[node] = p
        if self.seed is None:
            deadline = time.time() + 90
            while not os.path.exists(ann):
                if p.poll() is not None or time.time() > deadline:
                    raise AssertionError("first worker did not start (exit %s):\n%s" % (p.poll(), self.output(node)))
                time.sleep(0.05)
            with open(ann) as f:
                self.seed = f.read().strip()
        return p

    def output(self, node):
        with open(os.path.join(self.tmp, node + ".log")) as f:
            return f.read()

    def wait_for(self, node, text, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.output(node):
                return
            if self.procs[node].poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("%s never printed %r:\n%s" % (node, text, self.output(node)))

    def wait(self, node, timeout=300):
        p = self.procs[node]
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError("%s did not finish within %ds:\n%s" % (node, timeout, self.output(node)))

    def close(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
            p.log.close()


@pytest.fixture
def job(tmp_path, lib):
    jobs = []

    def make(min_peers, secret=None):
        j = Job(tmp_path, lib, min_peers, secret)
        jobs.append(j)
        return j
    yield make
    for j in jobs:
        j.close()
