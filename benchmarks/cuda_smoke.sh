#!/usr/bin/env bash
# The prepared first run on a GPU machine (15 minutes, no network): from a fresh checkout,
#   bash benchmarks/cuda_smoke.sh [OUT]          # default OUT: $OUT if set, else build/cuda_smoke
# Uses the machine's own Python (its CUDA torch, torch-geometric, scipy, pandas, ...), installs
# nothing: this checkout is put first on the import path. The whole run is bounded by 9 minutes.
# Extra arguments after OUT go to cuda_smoke.py (e.g. --device cpu --quick, what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-build/cuda_smoke}}"
shift || true
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
mkdir -p "$OUT_DIR" build/tmp
export TMPDIR="$PWD/build/tmp" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
echo "python: $PYTHON ($("$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'))"
exec timeout 540 "$PYTHON" benchmarks/cuda_smoke.py --out "$OUT_DIR" "$@"
