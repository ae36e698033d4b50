#!/usr/bin/env python3
"""Reference values for the text classifier golden test (TextModelTests), float64.

The embedding bag + dense head of Sources/CortadoModel/TextClassifier.swift:
    bag(d)    = mean of E[i] over the ids i of document d (0 for an empty document)
    logits(d) = W2 relu(W1 bag(d) + c1) + c2
with softmax cross-entropy. Parameters come from closed formulas; the batch has a repeated
id inside one document, an id shared by two documents and an empty document, so the bag's
scatter-add and its 1/|d| are exercised. Writes golden_text.json with the tensors, the
bags, the logits, the summed loss and the gradients of the mean loss for every tensor.

Run from this folder:  python3 make_golden_text.py
"""
import json
import numpy as np

ROWS, D, H, C = 9, 4, 5, 3
def f(n, a, s):
    return np.sin(np.arange(n, dtype=np.float64) * a + 0.3) * s
t = {
    "head.layers.0.weight": f(H * D, 0.37, 0.6).reshape(H, D),
    "head.layers.0.bias": f(H, 1.1, 0.2),
    "head.layers.2.weight": f(C * H, 0.71, 0.5).reshape(C, H),
    "head.layers.2.bias": f(C, 0.9, 0.1),
    "embedding": f(ROWS * D, 0.53, 0.8).reshape(ROWS, D),
}
offsets = [0, 3, 4, 4, 8]          # documents [1, 1, 5], [8], [], [2, 5, 0, 7]
ids = [1, 1, 5, 8, 2, 5, 0, 7]
labels = [2, 0, 1, 2]
B = len(labels)

E = t["embedding"]
bag = np.zeros((B, D))
for r in range(B):
    a, b = offsets[r], offsets[r + 1]
    if b > a:
        bag[r] = E[ids[a:b]].mean(axis=0)
h = bag @ t["head.layers.0.weight"].T + t["head.layers.0.bias"]
z = np.maximum(h, 0)
logits = z @ t["head.layers.2.weight"].T + t["head.layers.2.bias"]
m = logits.max(axis=1, keepdims=True)
p = np.exp(logits - m)
p /= p.sum(axis=1, keepdims=True)
loss = -np.log(p[np.arange(B), labels]).sum()

dlogits = p.copy()
dlogits[np.arange(B), labels] -= 1
dlogits /= B
g = {}
g["head.layers.2.weight"] = dlogits.T @ z
g["head.layers.2.bias"] = dlogits.sum(axis=0)
dz = dlogits @ t["head.layers.2.weight"]
dh = dz * (h > 0)
g["head.layers.0.weight"] = dh.T @ bag
g["head.layers.0.bias"] = dh.sum(axis=0)
dbag = dh @ t["head.layers.0.weight"]
dE = np.zeros_like(E)
for r in range(B):
    a, b = offsets[r], offsets[r + 1]
    for j in range(a, b):
        dE[ids[j]] += dbag[r] / (b - a)
g["embedding"] = dE

out = {
    "rows": ROWS, "dim": D, "hidden": H, "classes": C,
    "offsets": offsets, "ids": ids, "labels": labels,
    "tensors": {k: v.ravel().tolist() for k, v in t.items()},
    "bags": bag.ravel().tolist(), "logits": logits.ravel().tolist(), "loss_sum": float(loss),
    "grads": {k: v.ravel().tolist() for k, v in g.items()},
}
with open("golden_text.json", "w") as fh:
    json.dump(out, fh, indent=1)
    fh.write("\n")
print(f"golden_text.json: loss {loss:.6f}")
