#!/usr/bin/env python3
"""Writes scikit-learn's bundled breast-cancer table (569 rows, 30 numeric features, malignant /
benign) as messy real-world CSV for the end-to-end CSV test:

  cancer.csv   the first 509 rows, plus injected mess: missing values in three spellings
               (empty, NA, ?), a categorical column `clinic` (one value with an embedded comma),
               a free-text `note` column with quotes and newlines, and 12 exact duplicate rows;
  holdout.csv  the last 60 rows, clean, same columns: raw rows for cortado-infer.

usage: make_breast_cancer_csv.py OUT_DIR
"""
import csv
import os
import sys

import numpy as np
from sklearn.datasets import load_breast_cancer

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
data = load_breast_cancer()
rng = np.random.default_rng(7)
order = rng.permutation(len(data.target))
names = [n.replace(" ", "_") for n in data.feature_names]
header = ["patient"] + names + ["clinic", "note", "diagnosis"]
clinics = ["North, East", "South", "West", "Central"]


def row(i, messy):
    values = []
    for j, v in enumerate(data.data[i]):
        if messy and j in (0, 5, 17) and rng.random() < 0.08:
            values.append(["", "NA", "?"][rng.integers(3)])
        else:
            values.append(f"{v:.6g}")
    clinic = clinics[(i * 7) % 4] if not (messy and rng.random() < 0.05) else "NA"
    note = 'said "ok"\nfollow-up' if i % 11 == 0 else "routine"
    return [f"p{i:04d}"] + values + [clinic, note, data.target_names[data.target[i]]]


with open(os.path.join(out, "cancer.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    rows = [row(i, True) for i in order[:509]]
    for k in range(12):
        rows.insert(int(rng.integers(len(rows))), rows[int(rng.integers(len(rows)))])
    w.writerows(rows)
with open(os.path.join(out, "holdout.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(row(i, False) for i in order[509:])
print(f"wrote {out}/cancer.csv (509 rows + 12 duplicates) and {out}/holdout.csv (60 rows)")
