"""A worker with the wrong cluster secret: it must be refused."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import ringtrain  # noqa: E402

try:
    n = ringtrain.init(fingerprint="worker-8-640")
except ringtrain.RingtrainError as e:
    print("refused: %s" % e, flush=True)
    sys.exit(0)
print("joined the gossip", flush=True)
b = n.boundary(0)
print("admitted: %r" % (b,), flush=True)
sys.exit(1)
