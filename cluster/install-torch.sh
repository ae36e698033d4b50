#!/usr/bin/env bash
# Optional: PyTorch for the CPU in its own venv (default /opt/cortado-torch-venv), for
# Benchmarks/train-vs-pytorch.sh. Not called by install-deps.sh, the README commands or CI:
# nothing else in the project needs torch. Idempotent; exits 0 when the venv imports torch with
# the gloo backend, 1 (with a message) when no torch could be installed.
#
# Where torch comes from, first that works:
#   1. PyPI: `pip install torch` (CORTADO_TORCH overrides the requirement, e.g. torch==2.15.0).
#      Its Linux x86_64 wheel requires the CUDA runtime packages (nvidia-*, cuda-toolkit,
#      triton): measured 2026-11-29, torch 2.15.0+cu132, a 5.3 GB venv, ~8 min to download
#      and install here. They are never used on the CPU, but `--no-deps` does not avoid them:
#      `import torch` preloads libcudart/libcublasLt and fails without them.
#   2. A torch wheel pip finds without an index (PIP_FIND_LINKS: a machine image's wheel folder,
#      e.g. a CPU-only +cpu build, ~180 MB, no CUDA packages), then its small pure-Python
#      dependencies (filelock, typing-extensions, sympy, networkx, jinja2, fsspec) from PyPI.
#      CORTADO_TORCH=local goes straight here.
set -euo pipefail

VENV=${CORTADO_TORCH_VENV:-/opt/cortado-torch-venv}
# numpy/h5py as in /opt/cortado-venv (install-deps.sh): the benchmark reads the shards with h5py.
BASE_PACKAGES=${CORTADO_TORCH_BASE_PACKAGES:-"numpy==2.4.6 h5py==3.16.0"}
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

works() {
  "$VENV/bin/python" -c "import h5py, numpy, torch, torch.distributed as d; assert d.is_gloo_available()" 2>/dev/null
}
say() { echo "install-torch: $*" >&2; }

if works; then
  say "$VENV has torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
  exit 0
fi
if ! python3 -m venv --help >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
[ -x "$VENV/bin/python" ] || $SUDO python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
# shellcheck disable=SC2086
$SUDO "${PIP[@]}" $BASE_PACKAGES

start=$(date +%s)
REQ=${CORTADO_TORCH:-torch}
if [ "$REQ" != local ]; then
  say "installing $REQ from PyPI (with its CUDA runtime packages: several GB)"
  # shellcheck disable=SC2086
  $SUDO "${PIP[@]}" $REQ || say "pip install $REQ failed"
fi
if ! works && { "$VENV/bin/python" -m pip uninstall -q -y torch >/dev/null 2>&1 || true; } \
   && $SUDO "${PIP[@]}" --no-index --no-deps torch 2>/dev/null; then
  # The local wheel is installed; `pip install torch` now only adds its missing dependencies.
  say "torch from a local wheel ($("$VENV/bin/python" -m pip show torch 2>/dev/null | sed -n 's/^Version: //p')); its dependencies from PyPI"
  $SUDO "${PIP[@]}" torch || true
fi

if works; then
  say "$VENV: torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'), gloo available," \
      "$(du -sh "$VENV" | cut -f1), $(( $(date +%s) - start )) s"
  exit 0
fi
say "torch does not import with gloo in $VENV; Benchmarks/train-vs-pytorch.sh will skip PyTorch"
exit 1
