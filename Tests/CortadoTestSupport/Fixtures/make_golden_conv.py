#!/usr/bin/env python3
"""Reference values for the conv2d golden test (GoldenTests.testConv2dMatchesNumpy), float64.

Input x (N=2, C=2, H=5, W=6) and weights (F=3, C=2, K=3, K=3) from closed formulas, stride 2,
padding 1; upstream gradient G (N, F, OH, OW). Writes golden_conv.json with the output, the
weight and bias gradients of sum(out * G), and the input gradient.

Run from this folder:  python3 make_golden_conv.py
"""
import json
import numpy as np

N, C, H, W, F, K, S, P = 2, 2, 5, 6, 3, 3, 2, 1
x = np.sin(np.arange(N * C * H * W, dtype=np.float64) * 0.7).reshape(N, C, H, W)
w = np.cos(np.arange(F * C * K * K, dtype=np.float64) * 0.3).reshape(F, C, K, K) * 0.5
b = np.array([0.1, -0.2, 0.3])
OH, OW = (H + 2 * P - K) // S + 1, (W + 2 * P - K) // S + 1
xp = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))
out = np.zeros((N, F, OH, OW))
for n in range(N):
    for f in range(F):
        for i in range(OH):
            for j in range(OW):
                out[n, f, i, j] = np.sum(xp[n, :, i * S:i * S + K, j * S:j * S + K] * w[f]) + b[f]
G = np.cos(np.arange(out.size, dtype=np.float64)).reshape(out.shape)
dw = np.zeros_like(w)
dxp = np.zeros_like(xp)
for n in range(N):
    for f in range(F):
        for i in range(OH):
            for j in range(OW):
                dw[f] += G[n, f, i, j] * xp[n, :, i * S:i * S + K, j * S:j * S + K]
                dxp[n, :, i * S:i * S + K, j * S:j * S + K] += G[n, f, i, j] * w[f]
db = G.sum(axis=(0, 2, 3))
dx = dxp[:, :, P:P + H, P:P + W]
json.dump({"shape": [N, C, H, W, F, K, S, P], "x": x.ravel().tolist(), "w": w.ravel().tolist(), "b": b.tolist(),
           "out": out.ravel().tolist(), "g": G.ravel().tolist(), "dw": dw.ravel().tolist(), "db": db.tolist(),
           "dx": dx.ravel().tolist()}, open("golden_conv.json", "w"), indent=1)
print("wrote golden_conv.json:", out.shape)
