#!/usr/bin/env python3
"""Reference values for GoldenTests.swift, computed with numpy in float64.

A 5-4-3 MLP (dense(4), relu, dense(3), softmax cross-entropy) on a batch of 6 rows whose
values encode their position, with parameters from a closed formula. Writes golden_mlp.json:
inputs, labels, parameters (flat, in Cortado's arena order: layers.0.weight (4,5),
layers.0.bias (4), layers.2.weight (3,4), layers.2.bias (3)), logits, mean loss, the flat
gradient of the mean loss, and for each optimizer (SGD with momentum 0.9, Nesterov, Adam, AdamW,
RMSprop with alpha 0.99; PyTorch's formulations) the losses of 3 steps and the parameters after them.

`distillation` (DistillationTests.swift): the same MLP as a student of position-coded teacher
logits, temperature 3, alpha 0.6 — Hinton et al.'s loss as PyTorch users write it,
(1 - a) * cross_entropy(z, y) + a * T**2 * kl_div(log_softmax(z / T), softmax(t / T), "batchmean")
— its mean loss, the hard cross-entropy alone, and the flat gradient (checked here against
central differences, so the T factor is not taken on trust).

Run from this folder:  python3 make_golden.py
"""
import json
import numpy as np

B, D, H, C = 6, 5, 4, 3
x = (np.arange(B * D, dtype=np.float64).reshape(B, D) + 1) / 30.0 - 0.5
y = np.array([2, 0, 1, 1, 0, 2])
W1 = 0.5 * np.sin(1.0 + np.arange(H * D)).reshape(H, D)
b1 = 0.2 * np.cos(np.arange(H))
W2 = 0.5 * np.cos(2.0 + np.arange(C * H)).reshape(C, H)
b2 = 0.05 * np.arange(C) - 0.05


def forward(W1, b1, W2, b2):
    z1 = x @ W1.T + b1
    a1 = np.maximum(z1, 0)
    z2 = a1 @ W2.T + b2
    m = z2.max(axis=1, keepdims=True)
    p = np.exp(z2 - m)
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(B), y]).mean()
    return z1, a1, z2, p, loss


def grads(W1, b1, W2, b2):
    z1, a1, z2, p, loss = forward(W1, b1, W2, b2)
    dz2 = p.copy()
    dz2[np.arange(B), y] -= 1
    dz2 /= B
    return (z1, z2, loss, backward(x, z1, a1, W2, dz2))


def backward(x, z1, a1, W2, dz2):
    dW2 = dz2.T @ a1
    db2 = dz2.sum(0)
    da1 = dz2 @ W2
    dz1 = da1 * (z1 > 0)
    dW1 = dz1.T @ x
    db1 = dz1.sum(0)
    return [dW1, db1, dW2, db2]


def flat(ts):
    return np.concatenate([t.ravel() for t in ts])


params = [W1, b1, W2, b2]
z1, logits, loss, g = grads(*params)
assert np.abs(z1).min() > 1e-2, "pre-activation too close to the ReLU kink"

def optimizer_run(kind, lr, wd, mu=0.9, b1=0.9, b2=0.999, eps=1e-8, alpha=0.99):
    """3 steps of `kind` (PyTorch formulations) from the same start; losses before each step
    and after the last."""
    p = [t.copy() for t in params]
    m = [np.zeros_like(t) for t in params]
    v = [np.zeros_like(t) for t in params]
    losses = []
    for step in range(3):
        _, _, l, gs = grads(*p)
        losses.append(l)
        for i in range(4):
            g = gs[i] + (0 if kind == "adamw" else wd * p[i])
            if kind in ("sgd", "nesterov"):
                m[i] = mu * m[i] + g
                p[i] = p[i] - lr * ((g + mu * m[i]) if kind == "nesterov" else m[i])
                continue
            if kind == "rmsprop":   # torch.optim.RMSprop, momentum 0, not centered
                v[i] = alpha * v[i] + (1 - alpha) * g * g
                p[i] = p[i] - lr * g / (np.sqrt(v[i]) + eps)
                continue
            if kind == "adamw":
                p[i] = p[i] - lr * wd * p[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mhat, vhat = m[i] / (1 - b1 ** (step + 1)), v[i] / (1 - b2 ** (step + 1))
            p[i] = p[i] - lr * mhat / (np.sqrt(vhat) + eps)
    losses.append(forward(*p)[4])
    return {"learning_rate": lr, "weight_decay": wd, "losses": [float(x) for x in losses], "params_after": flat(p).tolist()}


T, A = 3.0, 0.6
t_logits = 2.0 * np.sin(0.7 * (np.arange(B * C) + 1)).reshape(B, C)


def log_softmax(v):
    m = v.max(axis=1, keepdims=True)
    return v - m - np.log(np.exp(v - m).sum(axis=1, keepdims=True))


def distill(W1, b1, W2, b2):
    z1, a1, z2, p, hard = forward(W1, b1, W2, b2)
    lq, lp = log_softmax(t_logits / T), log_softmax(z2 / T)
    kl = (np.exp(lq) * (lq - lp)).sum(axis=1).mean()
    loss = (1 - A) * hard + A * T * T * kl
    onehot = np.eye(C)[y]
    dz2 = ((1 - A) * (p - onehot) + A * T * (np.exp(lp) - np.exp(lq))) / B
    return loss, hard, backward(x, z1, a1, W2, dz2)


d_loss, d_hard, d_grads = distill(*params)
for i, t in enumerate(params):   # the analytic gradient against central differences
    for j in range(t.size):
        ps = [u.copy() for u in params]
        ps[i].flat[j] += 1e-6
        plus = distill(*ps)[0]
        ps[i].flat[j] -= 2e-6
        numeric = (plus - distill(*ps)[0]) / 2e-6
        assert abs(numeric - d_grads[i].flat[j]) < 1e-8, (i, j, numeric, d_grads[i].flat[j])

out = {
    "batch": B, "inputs": D, "hidden": H, "classes": C,
    "x": x.ravel().tolist(), "labels": y.tolist(),
    "params": flat(params).tolist(),
    "logits": logits.ravel().tolist(),
    "loss": float(loss),
    "grads": flat(g).tolist(),
    "optimizers": {"sgd": optimizer_run("sgd", 0.1, 0.01), "nesterov": optimizer_run("nesterov", 0.1, 0.01), "adam": optimizer_run("adam", 0.01, 0.01),
                   "adamw": optimizer_run("adamw", 0.01, 0.1), "rmsprop": optimizer_run("rmsprop", 0.01, 0.01)},
    "distillation": {"temperature": T, "alpha": A, "teacher_logits": t_logits.ravel().tolist(),
                     "loss": float(d_loss), "hard_loss": float(d_hard), "grads": flat(d_grads).tolist()},
}
with open("golden_mlp.json", "w") as f:
    json.dump(out, f, indent=1)
print("wrote golden_mlp.json: loss %.6f, distillation loss %.6f" % (loss, d_loss))
