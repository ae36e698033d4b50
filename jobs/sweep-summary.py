#!/usr/bin/env python3
"""Summarize a sweep: one line per task (overrides, validation and test accuracy), then the best
by validation accuracy (validation, not test, picks the winner).

usage: python3 jobs/sweep-summary.py RUN_DIR…      (e.g. runs/cortado-sweep-12_*)
"""
import json, os, sys

rows = []
for d in sys.argv[1:]:
    p = os.path.join(d, "summary.json")
    if not os.path.exists(p):
        print(f"{d}: no summary.json (task failed or still running)")
        continue
    s = json.load(open(p))
    rows.append((s["validation"].get("accuracy", float("nan")), s["test"].get("fp32_accuracy", float("nan")), s.get("overrides", ""), d))
if not rows:
    sys.exit("sweep-summary: no finished tasks")
for val, test, ov, d in rows:
    print(f"{d}: {ov}  validation {val:.4f}  test {test:.4f}")
best = max(rows)
print(f"best: {best[3]} ({best[2]}): validation {best[0]:.4f}, test {best[1]:.4f}")
