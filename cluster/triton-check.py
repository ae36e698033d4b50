#!/usr/bin/env python3
"""Calls `cortado-infer serve` with NVIDIA's Open Inference Protocol client, tritonclient[http]
(installed in the venv by cluster/install-deps.sh), the way a Triton user calls a server, and
checks every answer against `cortado-infer` batch scoring of the same rows.

usage: triton-check.py HOST:PORT TOKEN ROWS.h5 MODEL=PRED.h5... [--csv MODEL=ROWS.csv=PRED.h5]

ROWS.h5 holds `features` (rows, 784); each PRED.h5 the `probabilities` and `predicted` that
`cortado-infer MODEL --input ROWS.h5 --out PRED.h5` wrote. For a model of raw CSV columns,
`--csv` names its rows (numeric column `age`, text column `color`) and its batch scoring.
Covered: binary tensor data both ways (tritonclient's default), JSON, a pinned version, the
classification extension, 400s for a wrong shape and for shared memory (not supported).
Prints one line per check; exits 1 at the first that fails.
"""
import csv
import sys

import h5py
import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        sys.exit(1)


def same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def classifier(client, headers, model, x, pred_path):
    with h5py.File(pred_path, "r") as f:
        want_p = f["probabilities"][:].astype(np.float32)
        want_c = f["predicted"][:].astype(np.int64)
    n = x.shape[0]
    check(client.is_model_ready(model, headers=headers), f"{model}: is_model_ready")
    meta = client.get_model_metadata(model, headers=headers)
    spec = meta["inputs"][0]
    check(spec["datatype"] == "FP32" and spec["shape"][-1] == x.shape[1], f"{model}: metadata input {spec}")

    # tritonclient's defaults: the input as binary data, every output back as binary data.
    inp = httpclient.InferInput(spec["name"], list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    res = client.infer(model, [inp], headers=dict(headers), request_id="tc-binary")
    p = res.as_numpy("probabilities")
    check(res.get_response()["id"] == "tc-binary", f"{model}: request id echoed")
    check(res.get_output("probabilities")["parameters"]["binary_data_size"] == 4 * p.size,
          f"{model}: probabilities came back as binary data")
    check(same_bits(p, want_p), f"{model}: binary probabilities {p.shape} bit-identical to batch scoring")
    check(np.array_equal(res.as_numpy("predicted"), want_c), f"{model}: binary predicted")
    names = [c.decode() for c in res.as_numpy("class")]
    check(names == [f"c{c}" for c in want_c], f"{model}: binary BYTES class names {names[:3]}…")

    # The classification extension: the top 3 classes as "probability:index:label", as Triton
    # writes them (%f), most probable first.
    res = client.infer(model, [inp], outputs=[httpclient.InferRequestedOutput("probabilities", class_count=3)],
                       headers=dict(headers))
    top = [[e.decode().split(":") for e in row] for row in res.as_numpy("probabilities")]
    order = np.argsort(-want_p, axis=1, kind="stable")[:, :3]
    want_top = [[["%f" % want_p[i, c], str(c), f"c{c}"] for c in order[i]] for i in range(n)]
    check(top == want_top, f"{model}: classification top 3 {top[0]}")

    # Shared memory is not supported: a request for it is refused, not answered in the body.
    shm = httpclient.InferRequestedOutput("probabilities")
    shm.set_shared_memory("region", 4 * want_p.size)
    try:
        client.infer(model, [inp], outputs=[shm], headers=dict(headers))
        check(False, f"{model}: shared memory refused")
    except InferenceServerException as e:
        check(e.status() == "400" and "shared-memory" in e.message(), f"{model}: shared memory: {e.message()}")

    # JSON both ways, one output asked for as binary, a pinned version.
    inp.set_data_from_numpy(x, binary_data=False)
    outs = [httpclient.InferRequestedOutput("probabilities", binary_data=False),
            httpclient.InferRequestedOutput("predicted", binary_data=True)]
    res = client.infer(model, [inp], outputs=outs, model_version="1", headers=dict(headers))
    check("data" in res.get_output("probabilities"), f"{model}: probabilities asked for as JSON came as JSON")
    check(same_bits(res.as_numpy("probabilities"), want_p), f"{model}: JSON probabilities bit-identical")
    check(np.array_equal(res.as_numpy("predicted"), want_c), f"{model}: binary predicted beside JSON output")
    check(res.get_output("class") is None, f"{model}: only the outputs asked for")
    check(res.get_response()["model_version"] == "1", f"{model}: pinned version 1")

    # A wrong shape is a 400 naming the field, raised by the client as Triton's would be.
    bad = httpclient.InferInput(spec["name"], [1, x.shape[1] - 1], "FP32")
    bad.set_data_from_numpy(x[:1, :-1].copy())
    try:
        client.infer(model, [bad], headers=dict(headers))
        check(False, f"{model}: wrong shape refused")
    except InferenceServerException as e:
        check(e.status() == "400" and "inputs[0].shape" in e.message(), f"{model}: wrong shape: {e.status()} {e.message()}")


def columns(client, headers, model, rows_csv, pred_path):
    with open(rows_csv) as f:
        rows = list(csv.DictReader(f))
    with h5py.File(pred_path, "r") as f:
        want_p = f["probabilities"][:].astype(np.float32)
    age = np.array([float(r["age"]) for r in rows], dtype=np.float64)
    color = np.array([[r["color"].encode()] for r in rows], dtype=np.object_)
    a = httpclient.InferInput("age", [len(rows)], "FP64")
    a.set_data_from_numpy(age)
    c = httpclient.InferInput("color", [len(rows), 1], "BYTES")
    c.set_data_from_numpy(color)
    res = client.infer(model, [a, c], headers=dict(headers))
    check(same_bits(res.as_numpy("probabilities"), want_p),
          f"{model}: raw columns as binary FP64 and BYTES, bit-identical to batch scoring of the CSV")


def main():
    # (Each infer call gets its own copy of the headers: tritonclient adds
    # Inference-Header-Content-Length to the dict it is given, and a stale one would split the
    # next, all-JSON body at the old length.)
    args = sys.argv[1:]
    url, token, rows = args[0], args[1], args[2]
    headers = {"Authorization": f"Bearer {token}"}
    client = httpclient.InferenceServerClient(url=url)
    check(client.is_server_live(), "is_server_live")
    check(client.is_server_ready(headers=headers), "is_server_ready")
    meta = client.get_server_metadata(headers=headers)
    check({"binary_tensor_data", "classification"} <= set(meta["extensions"]), f"server metadata: extensions {meta['extensions']}")
    with h5py.File(rows, "r") as f:
        x = f["features"][:].astype(np.float32)
    rest = args[3:]
    while rest:
        a = rest.pop(0)
        if a == "--csv":
            model, rows_csv, pred = rest.pop(0).split("=")
            columns(client, headers, model, rows_csv, pred)
        else:
            model, pred = a.split("=")
            classifier(client, headers, model, x, pred)


if __name__ == "__main__":
    main()
