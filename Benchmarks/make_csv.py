#!/usr/bin/env python3
"""Writes a large mixed-type CSV for the prepare benchmark: 8 numeric columns (some missing
values), 3 categorical columns (10, 100 and 1 000 levels), a binary label; about 110 bytes a row.

usage: make_csv.py OUT.csv SIZE_MB
"""
import sys

import numpy as np

out, size_mb = sys.argv[1], float(sys.argv[2])
rng = np.random.default_rng(1)
rows_per_block = 200_000
target = size_mb * 1e6
written = 0
with open(out, "w") as f:
    f.write(",".join([f"x{i}" for i in range(8)] + ["color", "city", "sku", "label"]) + "\n")
    while written < target:
        n = rows_per_block
        x = rng.normal(size=(n, 8)) * [1, 10, 100, 0.1, 5, 50, 2, 1000]
        cols = [np.char.mod("%.5g", x[:, i]).astype(object) for i in range(8)]
        for i in (1, 4):
            cols[i][rng.random(n) < 0.02] = ""
        color = np.char.add("c", rng.integers(0, 10, n).astype(str)).astype(object)
        city = np.char.add("city", rng.integers(0, 100, n).astype(str)).astype(object)
        sku = np.char.add("sku-", rng.integers(0, 1000, n).astype(str)).astype(object)
        label = ((x[:, 0] + x[:, 3] * 10 + rng.normal(size=n)) > 0).astype(int).astype(str).astype(object)
        block = "\n".join(",".join(r) for r in zip(*cols, color, city, sku, label)) + "\n"
        f.write(block)
        written += len(block)
print(f"wrote {out}: {written / 1e6:.0f} MB")
