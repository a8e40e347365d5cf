"""Safetensors files read without dependencies, for the shell tests' Python checks.

header(path) -> (the file's bytes, header length, {name: entry}); values(path) -> {name: [float, ...]} with
BF16 widened to float (so files of different dtypes compare by value); names(path) -> the tensor names."""
import json
import struct


def header(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return b, n, h


def values(path):
    b, n, h = header(path)
    out = {}
    for k, v in h.items():
        raw = b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]]
        if v["dtype"] == "BF16":
            out[k] = [struct.unpack("<f", b"\0\0" + raw[i:i + 2])[0] for i in range(0, len(raw), 2)]
        else:
            out[k] = list(struct.unpack("<%df" % (len(raw) // 4), raw))
    return out


def names(path):
    return set(header(path)[2])
