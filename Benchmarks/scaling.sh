#!/usr/bin/env bash
# Scaling on one node (issue 17): 1, 2, 4, … up to MAX ranks of cortado-train (mpirun --map-by
# core --bind-to core, 1 BLAS thread per rank) and of PyTorch DDP (gloo, 1 thread per process,
# each bound to its core: Benchmarks/torch_ddp_bench.py), same model, data and per-rank batch:
#   - MLP 784-256-128-10 at batch 64 and 256 per rank (the whole training split);
#   - wide MLP 784-2048-2048-2048-10 at batch 64 per rank (a 12 288-row subset, so a run takes
#     seconds; PyTorch capped at 24 steps per epoch).
# Each row: samples/s (steady: the epochs after the first), efficiency N-rank / (N × 1-rank),
# rank 0's step split (Cortado: compute, data, exchange, update; PyTorch: compute includes its
# overlapped allreduce), and Cortado / PyTorch. Also sgemm 1024³ on one thread with the kernel
# Cortado runs and with OpenBLAS's own pick (CORTADO_BLAS_AUTO=0), and the issue's targets.
# Writes JSON to $OUT/scaling.json when OUT is set (the device tool), else runs/bench/scaling.json.
# CORTADO_SCALING_EXCHANGES="mpi shm" runs every Cortado row once per gradient exchange
# (distributed.exchange; rows "CONFIG+shm" for the shared-memory one), in the same run.
#
# usage: Benchmarks/scaling.sh [MAX_RANKS (default: the cores)] [EPOCHS of the MLP runs (default 4)]
# Here: after `swift build -c release`; PyTorch from $CORTADO_TORCH_VENV, /opt/cortado-torch-venv
# or python3, skipped with a note when none imports torch; data: Debian's Fashion-MNIST.
# On the 16-core device machine (../shared/DEVICE.md): carry .device-bundle (bundle.sh) and run
# `bash Benchmarks/scaling.sh`; it sources .device-bundle/on-device.sh, uses the bundle's
# binaries and Open MPI, and writes fake Fashion-MNIST-shaped IDX data (fake_idx.py). About
# 6 minutes on 16 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX=${1:-$(nproc)}
EPOCHS=${2:-4}
WORK=${CORTADO_SCALING_WORK:-/tmp/cortado-scaling}
EXCHANGES=${CORTADO_SCALING_EXCHANGES:-mpi}
mkdir -p "$WORK"
say() { echo "scaling $(date +%T): $*" >&2; }

if [ -f .device-bundle/on-device.sh ] && ! command -v swift >/dev/null; then
  # The device machine: the bundle's binaries, libraries and mpirun; fake images.
  # shellcheck disable=SC1091
  source .device-bundle/on-device.sh
  # Commands, not on-device.sh's shell functions, so that timeout and mpirun can run them.
  RUN=(env LD_LIBRARY_PATH=/opt/cx/lib); MPIRUN=("${RUN[@]}" /usr/bin/orterun); BIN=/opt/cx/bin; PY=python3
  [ -f "$WORK/fake/train-images-idx3-ubyte.gz" ] || python3 .device-bundle/fake_idx.py "$WORK/fake" >/dev/null
  SOURCE=(--source "$WORK/fake")
else
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  RUN=(); MPIRUN=(mpirun); BIN=.build/release; SOURCE=()
  [ -x $BIN/cortado-train ] || swift build -c release >/dev/null
  PY=""
  for p in "${CORTADO_TORCH_VENV:-/opt/cortado-torch-venv}/bin/python" python3; do
    if [ -x "$(command -v "$p" 2>/dev/null)" ] && "$p" -c 'import torch, h5py' 2>/dev/null; then PY=$p; break; fi
  done
fi
[ -n "${PY:-}" ] || say "no python with torch and h5py: PyTorch skipped"
[ "${CORTADO_SKIP_TORCH:-0}" = 1 ] && PY=""

# Rank counts: powers of two up to MAX, and MAX itself.
counts=(); n=1
while [ $n -lt "$MAX" ]; do counts+=($n); n=$((n * 2)); done
counts+=("$MAX")

MLP_DATA=$WORK/fm/manifest.json
WIDE_DATA=$WORK/fm-wide/manifest.json
[ -f "$MLP_DATA" ] || "${RUN[@]}" $BIN/cortado prepare fashion-mnist "${SOURCE[@]}" --out "$WORK/fm" --shards 16 >/dev/null
[ -f "$WIDE_DATA" ] || "${RUN[@]}" $BIN/cortado prepare fashion-mnist "${SOURCE[@]}" --out "$WORK/fm-wide" \
  --shards 16 --limit 13312 --validation 1024 >/dev/null

sgemm_auto=$("${RUN[@]}" $BIN/cortado bench sgemm --size 1024 --threads 1 --seconds 1 --json)
sgemm_openblas=$(CORTADO_BLAS_AUTO=0 "${RUN[@]}" $BIN/cortado bench sgemm --size 1024 --threads 1 --seconds 1 --json 2>/dev/null)
say "sgemm: Cortado's kernel $sgemm_auto; OpenBLAS's own pick $sgemm_openblas"

WIDE='[{type: dense, units: 2048}, {type: relu}, {type: dense, units: 2048}, {type: relu}, {type: dense, units: 2048}, {type: relu}, {type: dense, units: 10}]'
results=()
cortado() {   # cortado CONFIG RANKS BATCH EPOCHS [--set …]
  local cfg=$1 np=$2 batch=$3 epochs=$4; shift 4
  local line
  say "cortado $cfg, $np rank(s)"
  if line=$(timeout 300 "${MPIRUN[@]}" -np "$np" --map-by core --bind-to core $BIN/cortado-train \
      jobs/fashion-mlp.yaml --json --overwrite --run-dir "$WORK/runs/cortado-$cfg-np$np" \
      --set batch_size="$batch" --set epochs="$epochs" --set threads=1 --set checkpoint.every_steps=0 \
      --set emit=[] "$@" 2>"$WORK/cortado-$cfg-np$np.stderr" | tail -n 1) && [ "${line:0:1}" = "{" ]; then
    results+=("{\"system\": \"cortado\", \"config\": \"$cfg\", \"ranks\": $np, \"batch_per_rank\": $batch, \"summary\": $line}")
  else
    say "cortado $cfg on $np ranks failed: $(tail -n 3 "$WORK/cortado-$cfg-np$np.stderr")"
  fi
}
cortado_each() {   # cortado_each CONFIG RANKS BATCH EPOCHS [--set …]: once per exchange in EXCHANGES
  local cfg=$1 ex; shift
  for ex in $EXCHANGES; do
    if [ "$ex" = mpi ]; then cortado "$cfg" "$@"; else cortado "$cfg+$ex" "$@" --set distributed.exchange="$ex"; fi
  done
}
pytorch() {   # pytorch CONFIG PROCS BATCH EPOCHS [args…]
  local cfg=$1 np=$2 batch=$3 epochs=$4; shift 4
  local line try
  [ -n "$PY" ] || return 0
  for try in 1 2; do # gloo's start-up aborts now and then (train-vs-pytorch.sh)
    say "pytorch $cfg, $np process(es)"
    if line=$(OMP_NUM_THREADS=1 timeout 300 "$PY" Benchmarks/torch_ddp_bench.py --procs "$np" --batch "$batch" \
        --epochs "$epochs" "$@" 2>"$WORK/pytorch-$cfg-np$np.stderr" | tail -n 1) && [ "${line:0:1}" = "{" ]; then
      results+=("{\"system\": \"pytorch\", \"config\": \"$cfg\", \"ranks\": $np, \"batch_per_rank\": $batch, \"summary\": $line}")
      return 0
    fi
    say "pytorch $cfg on $np processes failed (try $try): $(tail -n 2 "$WORK/pytorch-$cfg-np$np.stderr")"
  done
}

for np in "${counts[@]}"; do
  for batch in 64 256; do
    cortado_each mlp-b$batch "$np" $batch "$EPOCHS" --set data="$MLP_DATA"
    pytorch mlp-b$batch "$np" $batch 2 --data "$MLP_DATA" --steps-per-epoch $((batch == 64 ? 200 : 80))
  done
  cortado_each wide-b64 "$np" 64 2 --set data="$WIDE_DATA" --set "model.layers=$WIDE" --set optimizer.learning_rate=0.01
  pytorch wide-b64 "$np" 64 2 --data "$WIDE_DATA" --hidden 2048,2048,2048 --lr 0.01 --steps-per-epoch 24
done

DEST=${OUT:-runs/bench}
mkdir -p "$DEST"
{
  echo "{\"date\": \"$(date -u +%FT%TZ)\", \"cpu\": \"$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)\","
  echo " \"cores\": $(nproc), \"max_ranks\": $MAX, \"epochs\": $EPOCHS,"
  echo " \"sgemm_cortado_kernel\": $sgemm_auto, \"sgemm_openblas_pick\": ${sgemm_openblas:-null},"
  echo " \"runs\": ["
  for i in "${!results[@]}"; do echo "  ${results[$i]}$([ "$i" -lt $((${#results[@]} - 1)) ] && echo ,)"; done
  echo "]}"
} >"$DEST/scaling.json"

python3 - "$DEST/scaling.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
runs = {(r["system"], r["config"], r["ranks"]): r["summary"] for r in d["runs"]}
def sps(s):
    return s.get("samples_per_sec_steady") or s.get("samples_per_sec") or 0.0
print(f'{d["cpu"]}, {d["cores"]} cores; sgemm 1024^3 1 thread: {d["sgemm_cortado_kernel"]["gflops"]:.1f} GFLOP/s '
      f'with {d["sgemm_cortado_kernel"].get("kernel")} (auto: {d["sgemm_cortado_kernel"].get("kernel_auto")}); '
      + (f'OpenBLAS\'s own pick {d["sgemm_openblas_pick"].get("kernel")}: {d["sgemm_openblas_pick"]["gflops"]:.1f}'
         if d.get("sgemm_openblas_pick") else ""))
kernels = sorted({r["summary"].get("blas_kernel") or "?" for r in d["runs"] if r["system"] == "cortado"})
print(f'cortado-train ran OpenBLAS kernel(s): {", ".join(kernels)}')
print(f'{"config":14} {"ranks":>5} | {"cortado/s":>10} {"eff":>5} {"compute":>8} {"data":>6} {"exch":>7} {"update":>7} '
      f'| {"torch/s":>9} {"eff":>5} {"t.comp":>7} | {"ratio":>5}')
summary = {}
configs = [c for c in dict.fromkeys(c for (_, c, _) in runs)]  # "CONFIG" and "CONFIG+EXCHANGE", in run order
for cfg in sorted(configs, key=lambda c: (["mlp-b64", "mlp-b256", "wide-b64"].index(c.split("+")[0]), c)):
    base = cfg.split("+")[0]
    ranks = sorted({r for (_, c, r) in runs if c == cfg})
    for n in ranks:
        c, t = runs.get(("cortado", cfg, n)), runs.get(("pytorch", base, n))
        c1, t1 = runs.get(("cortado", cfg, 1)), runs.get(("pytorch", base, 1))
        ce = sps(c) / (n * sps(c1)) if c and c1 else None
        te = sps(t) / (n * sps(t1)) if t and t1 else None
        ratio = sps(c) / sps(t) if c and t and sps(t) else None
        ms = (c or {}).get("step_ms", {})
        fmt = lambda v, f: format(v, f) if v is not None else "-"
        print(f'{cfg:14} {n:5d} | {fmt(sps(c) if c else None, "10.0f")} {fmt(ce, "5.2f")} '
              f'{fmt(ms.get("compute"), "8.2f")} {fmt(ms.get("data"), "6.2f")} {fmt(ms.get("exchange"), "7.2f")} '
              f'{fmt(ms.get("update"), "7.2f")} | {fmt(sps(t) if t else None, "9.0f")} {fmt(te, "5.2f")} '
              f'{fmt((t or {}).get("step_ms", {}).get("compute"), "7.2f")} | {fmt(ratio, "5.2f")}')
        summary[(cfg, n)] = (ce, ratio)
top = max((n for (_, n) in summary), default=0)
print(f"issue 17 targets at {top} ranks:")
for cfg, eff_goal, ratio_goal in [("mlp-b64", None, 5), ("mlp-b256", 0.75, 5), ("wide-b64", 0.50, 4)]:
    ce, ratio = summary.get((cfg, top), (None, None))
    parts = []
    if eff_goal is not None:
        parts.append(f"efficiency {ce:.2f} (goal >= {eff_goal})" if ce is not None else "efficiency -")
    parts.append(f"vs PyTorch {ratio:.2f}x (goal >= {ratio_goal}x)" if ratio is not None else "vs PyTorch -")
    print(f"  {cfg}: " + ", ".join(parts))
print(f"JSON: {sys.argv[1]}")
EOF
