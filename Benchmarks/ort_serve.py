"""The server users write instead of `cortado-infer serve`: FastAPI + uvicorn + ONNX Runtime on
the same model (exported with `cortado export onnx`), the same request and response shape
(Open Inference Protocol JSON), one worker, one intra-op thread per core given.
usage: ort_serve.py MODEL.onnx PORT THREADS"""
import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request

model, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name
app = FastAPI()


@app.get("/v2/health/ready")
def ready():
    return {"ready": True}


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request):
    body = await request.json()
    t = body["inputs"][0]
    x = np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
    logits = session.run(None, {input_name: x})[0]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    return {"model_name": name, "id": body.get("id"), "outputs": [
        {"name": "probabilities", "datatype": "FP32", "shape": list(p.shape), "data": p.ravel().tolist()},
        {"name": "predicted", "datatype": "INT64", "shape": [p.shape[0]], "data": p.argmax(axis=1).tolist()}]}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
