#!/usr/bin/env python3
"""Reference values for FeedbackTests' drift statistics, in numpy.

A reference sample (normal, mean 0.3, sd 0.1, 2000 values, with a run of ties at 0.25) and two
new samples (the same distribution; shifted +0.1 and squeezed). For each: the reference's
deciles (numpy's linear percentiles), PSI binned at the distinct deciles — bins (-inf, c1],
(c1, c2], ..., (cm, inf) with each bin's reference share the deciles it spans / 10, empty bins
at 0.0001 — and KS at the deciles (max over k of |F_new(d_k) - k/10|, F_new(x) = share <= x).
Also a class-mix PSI.

Run from this folder:  python3 make_golden_drift.py
"""
import json
import numpy as np

rng = np.random.default_rng(7)
ref = np.concatenate([rng.normal(0.3, 0.1, 1800), np.full(200, 0.25)])
same = rng.normal(0.3, 0.1, 1000)
shifted = rng.normal(0.4, 0.05, 1000)


def summary(x):
    return {"count": len(x), "mean": float(x.mean()), "std": float(x.std()),
            "deciles": [float(np.percentile(x, 10 * k)) for k in range(1, 10)]}


def psi_counts(obs, exp):
    a = np.maximum(np.asarray(obs, float) / max(sum(obs), 1), 1e-4)
    b = np.maximum(np.asarray(exp, float), 1e-4)
    return float(((a - b) * np.log(a / b)).sum())


def psi(deciles, x):
    cuts = []
    for d in deciles:
        if not cuts or cuts[-1] != d:
            cuts.append(d)
    exp, below = [], 0
    for c in cuts:
        up_to = max(i for i, d in enumerate(deciles) if d == c) + 1
        exp.append((up_to - below) / 10)
        below = up_to
    exp.append((10 - below) / 10)
    bins = np.searchsorted(np.array(cuts), x, side="left")
    obs = np.bincount(bins, minlength=len(exp))
    return psi_counts(obs, exp)


def ks(deciles, x):
    return float(max(abs((x <= d).mean() - (k + 1) / 10) for k, d in enumerate(deciles)))


s = summary(ref)
out = {"reference": ref.tolist(), "summary": s, "samples": {}}
for name, x in [("without_spike", same), ("shifted", shifted)]:
    out["samples"][name] = {"values": x.tolist(), "psi": psi(s["deciles"], x), "ks": ks(s["deciles"], x)}
out["mix"] = {"training": [500, 300, 200], "new": [100, 100, 300],
              "psi": psi_counts([100, 100, 300], [0.5, 0.3, 0.2])}
with open("golden_drift.json", "w") as f:
    json.dump(out, f)
print({k: (v["psi"], v["ks"]) for k, v in out["samples"].items()}, out["mix"]["psi"])
