#!/usr/bin/env python3
"""ONNX Runtime baseline for Cortado's inference numbers (README, Compression).

Usage: /opt/cortado-venv/bin/python Benchmarks/ort_bench.py MODEL.onnx DATA.h5 [--json OUT.json]
       [--rows 10000] [--latency-runs 2000] [--rounds 3] [--batch 1024] [--repeats 5]
       [--int8-variant per-channel-s8-reduced|per-channel-s8|…|all] [--keep-int8 FILE]

MODEL.onnx comes from `cortado export onnx MODEL-fp32.cmodel -o MODEL.onnx`; DATA.h5 is a
prepared split (/features float32, optional /labels int64), e.g. the Fashion-MNIST test.h5.

Measures, like `cortado compress` does for the .cmodel variants, on the first --rows rows:
  - ORT fp32: the exported model as is;
  - ORT int8: onnxruntime.quantization.quantize_dynamic of it (int8 weights, activations
    quantized per tensor to uint8 at run time, integer GEMMs). ORT's dynamic quantizer handles
    MatMul and Conv but not Gemm, so each Gemm(transB=1) is first rewritten as MatMul(x, Wᵀ) +
    Add(b) (the same function). Variants (--int8-variant; `all` measures each): per-channel or
    per-tensor weight scales, QInt8 or QUInt8 weights, `-reduced` = reduce_range (7-bit
    weights, which avoids the u8·s8 pair-sum saturation of AVX2's vpmaddubsw). On the
    Fashion-MNIST MLP (2026-11-29, 2-core AMD EPYC, AVX2, three runs of `all`) the four QInt8
    variants were equally fast (within the noise) and the QUInt8 ones 15-25 % slower; plain
    per-channel QInt8 lost 0.09 accuracy points, with reduce_range it kept fp32's 0.8984. The
    default is therefore per-channel-s8-reduced. quant_pre_process first changed nothing;
each with one thread (intra_op_num_threads = inter_op_num_threads = 1, sequential execution,
all graph optimizations):
  - batch-1 latency p50/p90/p99 over --latency-runs single-row runs (after 200 warm-up runs),
    cycling through the rows; --rounds such rounds, the one with the lowest p50 reported;
  - batch-N throughput in rows/s, the best of --repeats passes over the rows in batches of N;
    rounds and passes alternate between the variants (on a shared machine a busy spell then
    does not fall on one variant only);
  - accuracy over the rows when /labels exists.
Prints a table and writes it as JSON with the versions and settings.
"""
import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time

import h5py
import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

VARIANTS = {  # name: (per_channel, weight_type, reduce_range)
    "per-channel-s8": (True, QuantType.QInt8, False),
    "per-channel-s8-reduced": (True, QuantType.QInt8, True),
    "per-tensor-s8": (False, QuantType.QInt8, False),
    "per-tensor-s8-reduced": (False, QuantType.QInt8, True),
    "per-channel-u8": (True, QuantType.QUInt8, False),
    "per-tensor-u8": (False, QuantType.QUInt8, False),
}


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def gemm_to_matmul(model):
    """Rewrites Gemm(x, W, b, transB=1) (alpha = beta = 1, no transA) as MatMul(x, Wᵀ) + Add(b),
    with Wᵀ stored as a new initializer, so quantize_dynamic sees MatMuls it can quantize."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    nodes = []
    for n in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type != "Gemm" or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 \
                or n.input[1] not in inits:
            nodes.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        if attrs.get("transB", 0):
            w = w.T
        wt = numpy_helper.from_array(np.ascontiguousarray(w), n.input[1] + ".matmul")
        g.initializer.append(wt)
        mm = n.output[0] + ".matmul"
        nodes.append(helper.make_node("MatMul", [n.input[0], wt.name], [mm], name=mm))
        if len(n.input) > 2 and n.input[2]:
            nodes.append(helper.make_node("Add", [mm, n.input[2]], [n.output[0]], name=n.output[0] + ".add"))
        else:
            nodes.append(helper.make_node("Identity", [mm], [n.output[0]], name=n.output[0] + ".id"))
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return model


def quantize(fp32_path, out_path, variant):
    per_channel, weight_type, reduce_range = VARIANTS[variant]
    tmp = out_path + ".matmul.onnx"
    onnx.save(gemm_to_matmul(onnx.load(fp32_path)), tmp)
    logging.getLogger().setLevel(logging.ERROR)   # its advice to pre-process: no gain measured here
    quantize_dynamic(tmp, out_path, per_channel=per_channel, weight_type=weight_type, reduce_range=reduce_range)
    os.unlink(tmp)
    return out_path


class Variant:
    """One model under test: its session, accuracy, and the best latency round and pass so far."""

    def __init__(self, label, path, x, labels, batch):
        self.label, self.path = label, path
        self.s = session(path)
        self.name = self.s.get_inputs()[0].name
        # Accuracy (and warm-up of the batched path).
        self.probs = np.concatenate([self.s.run(None, {self.name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])
        self.accuracy = float((self.probs.argmax(axis=1) == labels).mean()) if labels is not None else None
        self.best_times, self.rows_per_s = None, 0.0

    def latency_round(self, rows, runs):
        """`runs` single-row calls (after 200 warm-up calls); keeps the round with the lowest p50."""
        s, name = self.s, self.name
        for i in range(200):
            s.run(None, {name: rows[i % len(rows)]})
        times = np.empty(runs)
        for i in range(runs):
            r = rows[i % len(rows)]
            t0 = time.perf_counter()
            s.run(None, {name: r})
            times[i] = time.perf_counter() - t0
        if self.best_times is None or np.median(times) < np.median(self.best_times):
            self.best_times = times

    def throughput_pass(self, chunks, n):
        """One pass over the rows in batches; keeps the best rows/s."""
        t0 = time.perf_counter()
        for c in chunks:
            self.s.run(None, {self.name: c})
        self.rows_per_s = max(self.rows_per_s, n / (time.perf_counter() - t0))

    def result(self):
        p50, p90, p99 = (float(np.percentile(self.best_times, q)) * 1e3 for q in (50, 90, 99))
        return {"variant": self.label, "file": self.path, "bytes": os.path.getsize(self.path), "accuracy": self.accuracy,
                "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "rows_per_s": self.rows_per_s}


def measure(variants, x, latency_runs, batch, repeats, rounds):
    """Rounds and passes interleaved across the variants, so that a busy spell on a shared
    machine does not fall on one variant only."""
    rows = [x[i:i + 1] for i in range(len(x))]
    chunks = [x[i:i + batch] for i in range(0, len(x), batch)]
    for _ in range(rounds):
        for v in variants:
            v.latency_round(rows, latency_runs)
    for _ in range(repeats):
        for v in variants:
            v.throughput_pass(chunks, len(x))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--latency-runs", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3, help="latency rounds; the one with the lowest p50 is reported")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--int8-variant", default="per-channel-s8-reduced", choices=list(VARIANTS) + ["all"])
    ap.add_argument("--keep-int8", help="also save the int8 ONNX model here")
    a = ap.parse_args()

    with h5py.File(a.data, "r") as h5:
        x = np.asarray(h5["features"][: a.rows], dtype=np.float32)
        labels = np.asarray(h5["labels"][: a.rows]) if "labels" in h5 else None

    with tempfile.TemporaryDirectory() as tmp:
        variants = [Variant("ORT fp32", a.model, x, labels, a.batch)]
        for v in (VARIANTS if a.int8_variant == "all" else [a.int8_variant]):
            q = quantize(a.model, os.path.join(tmp, f"int8-{v}.onnx"), v)
            if a.keep_int8 and (a.int8_variant != "all" or v == "per-channel-s8-reduced"):
                os.replace(q, a.keep_int8)
                q = a.keep_int8
            variants.append(Variant(f"ORT int8 dynamic ({v})", q, x, labels, a.batch))
        measure(variants, x, a.latency_runs, a.batch, a.repeats, a.rounds)
        results = [v.result() for v in variants]
    fp32 = variants[0].probs
    for v, r in zip(variants[1:], results[1:]):
        r["max_abs_diff_vs_fp32"] = float(np.abs(v.probs - fp32).max())
        r["argmax_agree_vs_fp32"] = float((v.probs.argmax(1) == fp32.argmax(1)).mean())

    print(f"onnxruntime {ort.__version__}, 1 thread, {len(x)} rows of {a.data}, batch-1 over {a.latency_runs} runs, "
          f"(best of {a.rounds} rounds), batch-{a.batch} best of {a.repeats}")
    print(f"{'variant':<42} {'bytes':>10} {'accuracy':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'rows/s':>10}")
    for r in results:
        acc = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "-"
        print(f"{r['variant']:<42} {r['bytes']:>10} {acc:>9} {r['p50_ms']:>8.4f} {r['p90_ms']:>8.4f} {r['p99_ms']:>8.4f} {r['rows_per_s']:>10.0f}")
    if a.json:
        out = {"model": a.model, "data": a.data, "rows": len(x), "threads": 1, "latency_runs": a.latency_runs, "latency_rounds": a.rounds,
               "batch": a.batch, "repeats": a.repeats, "onnxruntime": ort.__version__, "onnx": onnx.__version__,
               "numpy": np.__version__, "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
               "results": results}
        with open(a.json + ".tmp", "w") as f:
            json.dump(out, f, indent=2)
        os.replace(a.json + ".tmp", a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
