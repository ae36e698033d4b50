# Sourced by Benchmarks/serve.sh and serve-c1.sh (not run on its own): with MLP, CNN and TMP
# set, the model repository both servers read (MLP int8/fp32, CNN int8 as version 1 of each),
# the request bodies as wrk scripts ($TMP/mlp.lua, $TMP/cnn.lua: one Fashion-MNIST-like row,
# pixels / 255, 7.7 KB of JSON, the same for every server; $TMP/mlp-bin.lua, cnn-bin.lua: the
# same row as tritonclient sends it by default, binary tensor data after the JSON and outputs
# asked for as binary), and wait_port PORT.
mkdir -p "$TMP/models/mlp-int8/1" "$TMP/models/mlp-fp32/1" "$TMP/models/cnn-int8/1"
cp "$MLP/model-int8.cmodel" "$TMP/models/mlp-int8/1/model.cmodel"
cp "$MLP/model-fp32.cmodel" "$TMP/models/mlp-fp32/1/model.cmodel"
cp "$CNN/model-int8.cmodel" "$TMP/models/cnn-int8/1/model.cmodel"
python3 - "$TMP" <<'PY'
import json, random, struct, sys
random.seed(1)
row = [round(random.randrange(256) / 255, 6) for _ in range(784)]
for name, shape in [("mlp", [1, 784]), ("cnn", [1, 1, 28, 28])]:
    body = json.dumps({"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": row}]})
    open(f"{sys.argv[1]}/{name}.lua", "w").write(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = ' + json.dumps(body) + "\n")
    head = json.dumps({"inputs": [{"name": "input", "shape": shape, "datatype": "FP32",
                                   "parameters": {"binary_data_size": 4 * 784}}],
                       "parameters": {"binary_data_output": True}}).encode()
    body = head + struct.pack("<784f", *row)
    open(f"{sys.argv[1]}/{name}-bin.lua", "w").write(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/octet-stream"\n'
        f'wrk.headers["Inference-Header-Content-Length"] = "{len(head)}"\n'
        'wrk.body = "' + "".join(f"\\{b:03d}" for b in body) + '"\n')
PY
wait_port() { for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$1/v2/health/ready" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
