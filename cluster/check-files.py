#!/usr/bin/env python3
"""Checks Cortado's files the way a user would, with h5py and hashlib (no Cortado code).

usage: check-files.py MANIFEST.json [CHECKPOINT.h5 ...]

For the data folder: every file's SHA-256 matches the manifest, every shard opens in h5py
with /features float32 (rows, prod(feature_shape)) and /labels int64 (rows) in range, and the
row counts add up. For each checkpoint: format attributes, params and optimizer_state of the length
the layout says. Prints OK on success; exits 1 with the reason otherwise.
"""
import hashlib
import json
import os
import sys

import h5py
import numpy as np


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def check_data(manifest_path):
    m = json.load(open(manifest_path))
    if m.get("format") != "cortado-dataset" or m.get("format_version") != 1:
        fail(f"{manifest_path}: unexpected format {m.get('format')} v{m.get('format_version')}")
    d = int(np.prod(m["feature_shape"]))
    root = os.path.dirname(manifest_path)
    for split, info in m["splits"].items():
        total = 0
        for f in info["files"]:
            path = os.path.join(root, f["path"])
            if sha256(path) != f["sha256"]:
                fail(f"{path}: SHA-256 differs from the manifest")
            with h5py.File(path, "r") as h:
                x, y = h["features"], h["labels"]
                if x.dtype != np.float32 or x.shape != (f["rows"], d):
                    fail(f"{path}: features {x.dtype}{x.shape}, expected float32({f['rows']}, {d})")
                if y.dtype != np.int64 or y.shape != (f["rows"],):
                    fail(f"{path}: labels {y.dtype}{y.shape}")
                labels = y[:]
                if labels.min() < 0 or labels.max() >= len(m["classes"]):
                    fail(f"{path}: labels outside 0..{len(m['classes'])}")
                xs = x[:]
                if xs.min() < 0 or xs.max() > 1:
                    fail(f"{path}: pixels outside [0, 1]")
                if h.attrs["format"] != b"cortado-shard" and h.attrs["format"] != "cortado-shard":
                    fail(f"{path}: format attribute {h.attrs['format']!r}")
            total += f["rows"]
        if total != info["rows"]:
            fail(f"{manifest_path}: split {split} rows {info['rows']} != sum of files {total}")
        print(f"{split}: {len(info['files'])} file(s), {total} rows, checksums and shapes match")


def check_checkpoint(path):
    with h5py.File(path, "r") as h:
        fmt = h.attrs["format"]
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        if fmt != "cortado-checkpoint":
            fail(f"{path}: format {fmt!r}")
        layout = json.loads(h.attrs["layout"])
        p, v = h["params"][:], h["optimizer_state"][:]
        if p.shape != (layout["count"],) or v.shape[0] % max(layout["count"], 1) != 0:
            fail(f"{path}: params {p.shape} / optimizer_state {v.shape}, layout count {layout['count']}")
        if not np.isfinite(p).all():
            fail(f"{path}: non-finite parameters")
        spec = json.loads(h.attrs["job_spec"])
        print(f"{path}: step {int(h.attrs['step'])}, {layout['count']} parameters, world size {int(h.attrs['world_size'])}, batch {spec['batch_size']}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        fail(__doc__)
    check_data(sys.argv[1])
    for c in sys.argv[2:]:
        check_checkpoint(c)
    print("OK")
