#!/usr/bin/env python3
"""Reads a safetensors file following the format's specification with the
standard library alone (Debian has no python3-safetensors package), and prints
each tensor's name, dtype, shape and the sum of its F32 elements."""
import json
import struct
import sys

with open(sys.argv[1], "rb") as f:
    data = f.read()
(n,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8 : 8 + n])
body = data[8 + n :]
meta = header.pop("__metadata__", {})
for key in sorted(meta):
    print("meta", key, meta[key])
for name in sorted(header, key=lambda k: header[k]["data_offsets"][0]):
    t = header[name]
    lo, hi = t["data_offsets"]
    if t["dtype"] == "F32":
        vals = struct.unpack("<%df" % ((hi - lo) // 4), body[lo:hi])
        print("tensor", name, t["dtype"], "x".join(map(str, t["shape"])), "sum=%g" % sum(vals))
    else:
        print("tensor", name, t["dtype"], "x".join(map(str, t["shape"])), "bytes=%d" % (hi - lo))
