#!/usr/bin/env bash
# The GPU image-path benchmark (bench/gpu_embed.py) on a bare CUDA machine: Python 3.12,
# CUDA torch and numpy there, no pydicom and no way to reach a package index.
#
#   bench/gpu_run.sh fetch            here, where pip reaches PyPI: download the pure-Python
#                                     wheels it needs into .whl/ (kept out of git by
#                                     .git/info/exclude; carry it: carry=[".whl"])
#   bench/gpu_run.sh [bench args]     there: install .whl/*.whl offline into a private
#                                     --target folder, run the bench within LIMIT_S seconds
#                                     (default 300), the table also written to $OUT if set
#
# From a session with a device machine: run(command="bash bench/gpu_run.sh", carry=[".whl"],
# timeout_s=420). A smoke run of the same code on any CPU: bench/gpu_run.sh --device cpu --images 16
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=(pydicom==3.0.2)  # pure Python, no dependencies; the version radwatch is tested with

if [[ "${1:-}" == fetch ]]; then
    mkdir -p .whl
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation py --abi none --platform any -d .whl "${WHEELS[@]}"
    ls -l .whl
    exit 0
fi

if ! "$PY" -c 'import pydicom' 2>/dev/null; then
    shopt -s nullglob
    wheels=(.whl/*.whl)
    if [[ ${#wheels[@]} -eq 0 ]]; then
        echo "gpu_run: pydicom is not installed and no wheels in .whl/ (run: bench/gpu_run.sh fetch, then carry .whl)" >&2
        exit 2
    fi
    site=${TMPDIR:-/tmp}/radwatch-gpu-site
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "${wheels[@]}"
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
"$PY" -c 'import sys, torch, numpy, pydicom; print("python", sys.version.split()[0], "torch", torch.__version__, "numpy", numpy.__version__, "pydicom", pydicom.__version__, "cuda", torch.cuda.is_available())'
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
log=${OUT:+$OUT/gpu_embed.txt}
timeout --kill-after=10 "${LIMIT_S:-300}" "$PY" bench/gpu_embed.py "$@" 2>&1 | tee "${log:-/dev/null}"
