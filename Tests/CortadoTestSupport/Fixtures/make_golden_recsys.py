#!/usr/bin/env python3
"""Reference values for the recommender golden test (GoldenTests: RecommenderGoldenTests), float64.

NCF with shared embeddings, as Sources/CortadoModel/Recommender.swift defines it:
    score(u, i) = b + b_u + b_i + <U[u], V[i]> + W2 relu(W1 [U[u]; V[i]] + c1) + c2
Parameters come from closed formulas; the batch repeats a user and an item so the
embedding gradients' scatter-add is exercised. Writes golden_recsys.json with the named
tensors, the scores, the summed squared error and binary cross-entropy (targets 1/0), and the
gradients of the mean squared error with respect to every tensor.

Run from this folder:  python3 make_golden_recsys.py
"""
import json
import numpy as np

USERS, ITEMS, D, H = 5, 7, 3, 4
def f(n, a, s):
    return np.sin(np.arange(n, dtype=np.float64) * a + 0.3) * s
t = {
    "mlp.layers.0.weight": f(H * 2 * D, 0.37, 0.6).reshape(H, 2 * D),
    "mlp.layers.0.bias": f(H, 1.1, 0.2),
    "mlp.layers.2.weight": f(H, 0.71, 0.5).reshape(1, H),
    "mlp.layers.2.bias": np.array([0.05]),
    "global_bias": np.array([3.2]),
    "user_embedding": f(USERS * D, 0.53, 0.4).reshape(USERS, D),
    "user_bias": f(USERS, 0.9, 0.3),
    "item_embedding": f(ITEMS * D, 0.29, 0.4).reshape(ITEMS, D),
    "item_bias": f(ITEMS, 0.6, 0.3),
}
users = np.array([1, 2, 2, 4, 0, 3])
items = np.array([6, 1, 5, 1, 2, 3])
ratings = np.array([4.0, 3.0, 5.0, 1.0, 2.0, 4.0])
labels = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
B = len(users)

U, V = t["user_embedding"][users], t["item_embedding"][items]
x = np.concatenate([U, V], axis=1)
h = x @ t["mlp.layers.0.weight"].T + t["mlp.layers.0.bias"]
a = np.maximum(h, 0)
tower = (a @ t["mlp.layers.2.weight"].T + t["mlp.layers.2.bias"])[:, 0]
score = t["global_bias"][0] + t["user_bias"][users] + t["item_bias"][items] + np.sum(U * V, axis=1) + tower

sse = float(np.sum((score - ratings) ** 2))
bce = float(np.sum(np.maximum(score, 0) - labels * score + np.log1p(np.exp(-np.abs(score)))))

# Gradients of the mean squared error.
ds = 2 * (score - ratings) / B
g = {k: np.zeros_like(v) for k, v in t.items()}
g["global_bias"][0] = ds.sum()
np.add.at(g["user_bias"], users, ds)
np.add.at(g["item_bias"], items, ds)
g["mlp.layers.2.weight"] = (ds[:, None] * a).sum(axis=0)[None, :]
g["mlp.layers.2.bias"] = np.array([ds.sum()])
dh = ds[:, None] * t["mlp.layers.2.weight"] * (h > 0)
g["mlp.layers.0.weight"] = dh.T @ x
g["mlp.layers.0.bias"] = dh.sum(axis=0)
dx = dh @ t["mlp.layers.0.weight"]
dU = dx[:, :D] + ds[:, None] * V
dV = dx[:, D:] + ds[:, None] * U
np.add.at(g["user_embedding"], users, dU)
np.add.at(g["item_embedding"], items, dV)

json.dump({
    "users": USERS, "items": ITEMS, "dim": D, "hidden": H,
    "batch_users": users.tolist(), "batch_items": items.tolist(),
    "ratings": ratings.tolist(), "labels": labels.tolist(),
    "tensors": {k: v.ravel().tolist() for k, v in t.items()},
    "scores": score.tolist(), "sse": sse, "bce": bce,
    "mse_grads": {k: v.ravel().tolist() for k, v in g.items()},
}, open("golden_recsys.json", "w"), indent=1)
print("wrote golden_recsys.json")
