#!/usr/bin/env python3
"""Check an exported ONNX model against Cortado's own probabilities.

Usage: /opt/cortado-venv/bin/python cluster/onnx-check.py MODEL.onnx DATA.h5 EXPECTED [--tol 1e-4] [--json]

  MODEL.onnx  written by `cortado export onnx MODEL.cmodel -o MODEL.onnx`
  DATA.h5     an HDF5 file with /features (rows, inputs) float32 (a prepared test.h5)
  EXPECTED    Cortado's probabilities for the first rows of /features, either
              - the CSV that `cortado-infer MODEL.cmodel --input DATA.h5 --output FILE.csv`
                writes (columns p_<class>, printed with 6 significant digits), or
              - a .npy float32 array (rows, classes) (the Swift test writes the exact values).

Runs ONNX Runtime on the CPU with one thread (intra_op_num_threads = inter_op_num_threads = 1,
sequential execution) over the same rows, in batches of 1024, after onnx.checker has checked
the model. Prints the largest absolute difference of any probability (and its row), how many
rows' arg-max agree, and exits 1 when the difference is above --tol (0 when within, 2 on bad
input). --json adds a last line with the numbers, per-row maxima included.

The interpreter is the venv cluster/install-deps.sh makes (/opt/cortado-venv: numpy, h5py,
onnx, onnxruntime).
"""
import argparse
import csv
import json
import sys

import h5py
import numpy as np
import onnx
import onnxruntime as ort


def load_expected(path):
    """Cortado's probabilities, (rows, classes) float64."""
    if path.endswith(".npy"):
        return np.load(path).astype(np.float64)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        cols = [i for i, name in enumerate(header) if name.startswith("p_")]
        if not cols:
            raise ValueError(f"{path}: no p_<class> columns (is it cortado-infer --output?)")
        return np.array([[float(row[i]) for i in cols] for row in reader], dtype=np.float64)


def session(model_path):
    """A one-thread, sequential CPU session (what the benchmarks measure too)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("expected")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest allowed absolute difference (default 1e-4)")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    a = ap.parse_args()

    try:
        onnx.checker.check_model(onnx.load(a.model), full_check=True)
        expected = load_expected(a.expected)
        with h5py.File(a.data, "r") as h5:
            if "features" not in h5:
                raise ValueError(f"{a.data}: no /features dataset")
            x = np.asarray(h5["features"][: len(expected)], dtype=np.float32)
        if len(x) != len(expected):
            raise ValueError(f"{a.data}: {len(x)} rows of /features, {a.expected} has {len(expected)}")
    except Exception as e:  # one line naming the file, exit 2
        print(f"onnx-check: {e}", file=sys.stderr)
        return 2

    sess = session(a.model)
    name = sess.get_inputs()[0].name
    got = np.concatenate([sess.run(None, {name: x[i:i + a.batch]})[0] for i in range(0, len(x), a.batch)]).astype(np.float64)
    if got.shape != expected.shape:
        print(f"onnx-check: ONNX output {got.shape}, expected {expected.shape} ({a.expected})", file=sys.stderr)
        return 2
    row_max = np.abs(got - expected).max(axis=1)
    worst = int(row_max.argmax())
    agree = int((got.argmax(axis=1) == expected.argmax(axis=1)).sum())
    ok = bool(row_max.max() <= a.tol)
    print(f"onnx-check: {a.model}: {len(x)} rows, max abs diff {row_max.max():.3g} (row {worst}), "
          f"arg-max agrees on {agree}/{len(x)}, onnxruntime {ort.__version__}: {'OK' if ok else 'ABOVE'} tolerance {a.tol:g}")
    if a.json:
        print(json.dumps({"rows": len(x), "max_abs_diff": float(row_max.max()), "worst_row": worst,
                          "argmax_agree": agree, "tolerance": a.tol, "ok": ok, "onnxruntime": ort.__version__,
                          "row_max_abs_diff": [float(v) for v in row_max]}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
