#!/usr/bin/env python3
"""PyTorch DDP (gloo, CPU) reference for Benchmarks/train-vs-pytorch.sh: the same MLP, the same
data, the same per-rank batch and thread count as cortado-train, measured the same way.

Each process (torch.multiprocessing, spawn) binds itself to one core (as mpirun --bind-to core
does with <= 2 ranks), runs torch with 1 intra-op and 1 inter-op thread, reads its contiguous
share of the training, validation and test rows from the prepared HDF5 shards with h5py (the
split cortado-train uses: rowRange in Sources/CortadoData/Shards.swift), and trains with SGD-momentum
under DistributedDataParallel. Each step: index_select the batch (data), forward + backward with
DDP's bucketed allreduce overlapped in backward (compute), optimizer step (update).

samples/s is over the epochs after the first (steady state; start-up, the first epoch and the
final evaluation excluded). Peak RSS is each process's ru_maxrss. Rank 0 prints one JSON line.

usage: torch_ddp_bench.py --data DIR/manifest.json --procs N --batch B [--epochs E]
                          [--hidden 256,128] [--steps-per-epoch S] [--lr 0.05]
"""
import argparse
import json
import os
import resource
import sys
import time


def row_range(total, rank, size):
    """Rows [lo, hi) of `rank` among `size`, as cortado's rowRange(total:rank:size:)."""
    base, extra = divmod(total, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def read_rows(manifest_path, split, lo, hi):
    """Rows [lo, hi) of a split, across its shard files: features (n, d) float32, labels (n,)."""
    import h5py
    import numpy as np
    manifest = json.load(open(manifest_path))
    folder = os.path.dirname(os.path.abspath(manifest_path))
    xs, ys, base = [], [], 0
    for f in manifest["splits"][split]["files"]:
        a, b = max(lo, base), min(hi, base + f["rows"])
        if a < b:
            with h5py.File(os.path.join(folder, f["path"]), "r") as h:
                xs.append(h["features"][a - base:b - base])
                ys.append(h["labels"][a - base:b - base])
        base += f["rows"]
    x = np.ascontiguousarray(np.concatenate(xs).reshape(hi - lo, -1), dtype=np.float32)
    return x, np.concatenate(ys).astype(np.int64), len(manifest["classes"])


def worker(rank, args, port):
    import torch
    import torch.distributed as dist
    import torch.nn as nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[rank % len(cores)]})
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=args.procs)
    n = args.procs
    manifest = json.load(open(args.data))
    data = {}
    for split in ("train", "validation", "test"):
        lo, hi = row_range(manifest["splits"][split]["rows"], rank, n)
        x, y, classes = read_rows(args.data, split, lo, hi)
        data[split] = (torch.from_numpy(x), torch.from_numpy(y))
    X, Y = data["train"]
    rows, d = X.shape

    torch.manual_seed(args.seed)
    widths = [d] + [int(w) for w in args.hidden.split(",") if w] + [classes]
    layers = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    model = DDP(nn.Sequential(*layers))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    B = args.batch
    steps = torch.tensor([rows // B])
    dist.all_reduce(steps, op=dist.ReduceOp.MIN)   # every rank the same step count
    steps = int(steps)
    if args.steps_per_epoch:
        steps = min(steps, args.steps_per_epoch)
    g = torch.Generator().manual_seed(args.seed * 1000 + rank)
    xb = torch.empty(B, d)
    yb = torch.empty(B, dtype=torch.int64)

    later_time, later_samples = 0.0, 0
    split = {"data": 0.0, "compute": 0.0, "update": 0.0, "steps": 0}
    for epoch in range(args.epochs):
        perm = torch.randperm(rows, generator=g)
        dist.barrier()
        t0 = time.perf_counter()
        part = {"data": 0.0, "compute": 0.0, "update": 0.0}
        for s in range(steps):
            ta = time.perf_counter()
            idx = perm[s * B:(s + 1) * B]
            torch.index_select(X, 0, idx, out=xb)
            torch.index_select(Y, 0, idx, out=yb)
            tb = time.perf_counter()
            opt.zero_grad(set_to_none=False)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            tc = time.perf_counter()
            opt.step()
            td = time.perf_counter()
            part["data"] += tb - ta
            part["compute"] += tc - tb
            part["update"] += td - tc
        dt = time.perf_counter() - t0
        if epoch > 0 or args.epochs == 1:
            later_time += dt
            later_samples += steps * B * n
            for k in part:
                split[k] += part[k]
            split["steps"] += steps

    # Validation and test accuracy (sanity: the model trained), summed across ranks.
    acc = {}
    with torch.no_grad():
        for split_name in ("validation", "test"):
            x, y = data[split_name]
            correct = 0
            for i in range(0, len(y), 256):
                correct += int((model.module(x[i:i + 256]).argmax(1) == y[i:i + 256]).sum())
            t = torch.tensor([float(correct), float(len(y))], dtype=torch.float64)
            dist.all_reduce(t)
            acc[split_name] = float(t[0] / t[1])
    rss = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0], dtype=torch.float64)
    rss_all = [torch.zeros(1, dtype=torch.float64) for _ in range(n)]
    dist.all_gather(rss_all, rss)
    if rank == 0:
        per_step = {k: 1000 * split[k] / max(split["steps"], 1) for k in ("data", "compute", "update")}
        print(json.dumps({
            "procs": n, "batch_per_rank": B, "epochs": args.epochs, "steps_per_epoch": steps,
            "samples_per_sec_steady": later_samples / max(later_time, 1e-9),
            "step_ms": per_step, "peak_rss_mib": [round(float(r), 1) for r in rss_all],
            "val_accuracy": acc["validation"], "test_accuracy": acc["test"],
            "hidden": args.hidden, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "gloo": dist.is_gloo_available(),
        }), flush=True)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--hidden", default="256,128")
    p.add_argument("--steps-per-epoch", type=int, default=0, help="cap on steps per epoch (0: whole epochs)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    import socket
    import torch.multiprocessing as mp
    port = args.port
    if port == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    mp.spawn(worker, args=(args, port), nprocs=args.procs, join=True)


if __name__ == "__main__":
    sys.exit(main())
