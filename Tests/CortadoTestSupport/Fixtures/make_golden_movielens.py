#!/usr/bin/env python3
"""Reference values for MovieLensTests, in numpy, on the first ROWS ratings of the real
MovieLens-100k as the RecBole 1.2.1 wheel ships it (cluster/install-deps.sh downloads the wheel;
nothing of the data is committed, only these numbers).

Leave-last-out by time with ties in file order: each user's rows sorted by (time, position in
the file); with 2+ rows the last goes to test, with 3+ the one before to validation. Then:
  - the tie report: users with 2+ rows at their latest time;
  - items/users that appear in validation/test but not in training;
  - the baselines fitted on training: global mean, damped user + item biases (Koren 2010,
    item damping 25, user damping 10; an id unseen in training has bias 0), their test RMSE;
  - the popularity ranker's test HR@10 / NDCG@10 by full ranking: the held-out item against
    every training item the user has no interaction with in any split, ties counting half; an
    item unseen in training is a miss.

Run from this folder:  python3 make_golden_movielens.py [WHEEL]
"""
import collections
import json
import sys
import zipfile

import numpy as np

ROWS = 5000
WHEEL = sys.argv[1] if len(sys.argv) > 1 else "/var/cache/cortado/recbole-1.2.1-py3-none-any.whl"
text = zipfile.ZipFile(WHEEL).read("recbole/dataset_example/ml-100k/ml-100k.inter").decode()
lines = text.split("\n")
assert lines[0] == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
rows = [l.split("\t") for l in lines[1:] if l][:ROWS]
assert len(set(map(tuple, rows))) == len(rows), "no exact duplicates in the slice"
user = np.array([int(r[0]) for r in rows])
item = np.array([int(r[1]) for r in rows])
rating = np.array([float(r[2]) for r in rows])
time = np.array([float(r[3]) for r in rows])

split = np.zeros(len(rows), dtype=int)  # 0 train, 1 validation, 2 test
by_user = collections.defaultdict(list)
for k in range(len(rows)):
    by_user[user[k]].append(k)
tied = 0
for u, ks in by_user.items():
    ks.sort(key=lambda k: (time[k], k))
    if len(ks) >= 2:
        split[ks[-1]] = 2
    if len(ks) >= 3:
        split[ks[-2]] = 1
    latest = time[ks[-1]]
    tied += sum(1 for k in ks if time[k] == latest) >= 2

train, val, test = (split == 0), (split == 1), (split == 2)


def unseen(ids):
    known = set(ids[train])
    held = [(k, s) for s in (1, 2) for k in np.nonzero(split == s)[0] if ids[k] not in known]
    return {
        "values": len({ids[k] for k, _ in held}),
        "validation_rows": sum(1 for _, s in held if s == 1),
        "test_rows": sum(1 for _, s in held if s == 2),
    }


mu = rating[train].mean()
bi = collections.defaultdict(float)
for i in set(item[train]):
    m = train & (item == i)
    bi[i] = (rating[m] - mu).sum() / (25 + m.sum())
bu = collections.defaultdict(float)
for u in set(user[train]):
    m = train & (user == u)
    bu[u] = (rating[m] - mu - np.array([bi[i] for i in item[m]])).sum() / (10 + m.sum())
pred = np.array([mu + bu[u] + bi[i] for u, i in zip(user, item)])

counts = collections.Counter(item[train])
candidates = np.array(sorted(counts))
cand_counts = np.array([counts[i] for i in candidates], dtype=float)
hr = ndcg = 0.0
for k in np.nonzero(test)[0]:
    target = item[k]
    if target not in counts:
        continue
    others = set(item[user == user[k]]) - {target}
    keep = np.array([j != target and j not in others for j in candidates])
    c, t = cand_counts[keep], counts[target]
    rank = (c > t).sum() + 0.5 * (c == t).sum()
    if rank < 10:
        hr += 1
        ndcg += 1 / np.log2(rank + 2)
n_test = test.sum()

out = {
    "rows": ROWS,
    "users": len(by_user),
    "users_with_test_row": int(sum(len(ks) >= 2 for ks in by_user.values())),
    "users_tied_at_latest": int(tied),
    "split_rows": {"train": int(train.sum()), "validation": int(val.sum()), "test": int(n_test)},
    "unseen_items": unseen(item),
    "unseen_users": unseen(user),
    "global_mean": mu,
    "test_global_mean_rmse": float(np.sqrt(((rating[test] - mu) ** 2).mean())),
    "test_bias_rmse": float(np.sqrt(((rating[test] - pred[test]) ** 2).mean())),
    "test_popularity_hr@10": hr / n_test,
    "test_popularity_ndcg@10": ndcg / n_test,
}
with open("golden_movielens.json", "w") as f:
    json.dump(out, f, indent=1, sort_keys=True)
print(json.dumps(out, indent=1, sort_keys=True))
