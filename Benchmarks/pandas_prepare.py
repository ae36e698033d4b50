#!/usr/bin/env python3
"""The pandas baseline for Benchmarks/prepare-throughput.sh: what a user would write instead of
`cortado prepare csv` — read_csv, drop duplicates, split, impute (median) and z-score the numeric
columns with training statistics, one-hot the low-cardinality categoricals, integer-code the
others, and write HDF5 with h5py (chunked, shuffle + deflate like Cortado's shards).

usage: pandas_prepare.py IN.csv OUT_DIR LABEL
"""
import os
import sys
import time

import h5py
import numpy as np
import pandas as pd

src, out, label = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.time()
df = pd.read_csv(src)
df = df.drop_duplicates()
rng = np.random.default_rng(42)
u = rng.random(len(df))
parts = {"train": df[u < 0.8], "validation": df[(u >= 0.8) & (u < 0.9)], "test": df[u >= 0.9]}
train = parts["train"]
num = [c for c in df.columns if c != label and pd.api.types.is_numeric_dtype(df[c])]
cat = [c for c in df.columns if c != label and c not in num]
median = train[num].median()
mean = train[num].fillna(median).mean()
std = train[num].fillna(median).std(ddof=0).replace(0, 1)
vocab = {c: pd.Index(train[c].value_counts().index) for c in cat}
classes = sorted(df[label].unique())
os.makedirs(out, exist_ok=True)
for name, part in parts.items():
    x = ((part[num].fillna(median) - mean) / std).to_numpy(np.float32)
    blocks, ids = [x], []
    for c in cat:
        codes = vocab[c].get_indexer(part[c]) + 1  # 0 = unknown / missing
        if len(vocab[c]) <= 32:
            blocks.append(np.eye(len(vocab[c]) + 1, dtype=np.float32)[codes])
        else:
            ids.append(codes)
    feats = np.concatenate(blocks, axis=1)
    y = pd.Categorical(part[label], categories=classes).codes.astype(np.int64)
    with h5py.File(os.path.join(out, name + ".h5"), "w") as h:
        h.create_dataset("features", data=feats, chunks=(min(1024, max(len(feats), 1)), feats.shape[1]), shuffle=True, compression="gzip", compression_opts=4)
        h.create_dataset("labels", data=y, chunks=(min(16384, max(len(y), 1)),), shuffle=True, compression="gzip", compression_opts=4)
        if ids:
            h.create_dataset("categorical", data=np.stack(ids, axis=1).astype(np.int64), chunks=(min(1024, max(len(y), 1)), len(ids)), shuffle=True, compression="gzip", compression_opts=4)
print(f"pandas: {len(df)} rows in {time.time() - t0:.2f}s")
