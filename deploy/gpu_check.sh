#!/usr/bin/env bash
# The TensorRT path on this machine's NVIDIA GPU, in one run (issue 19; README "Does it run on my
# GPU?"). Needs only the NVIDIA driver and Python 3.11+: creates .venv (make venv), installs the
# `tensorrt` extra (TensorRT and cuda-python, binary wheels pinned in setup.py), then runs
# `dmd3c gpu-check OUT`, which writes OUT/gpu_check.json and OUT/gpu_check.md.
#
#   deploy/gpu_check.sh OUT [--dry-run] [--wheels DIR] [dmd3c gpu-check options]
#
# --dry-run: no GPU needed; runs every step that needs none, records the others as skipped.
# --wheels DIR: install the extra from wheel files in DIR (a machine without a package index).
# Without a GPU and without --dry-run: one line on stderr, exit code 2.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
    echo "usage: deploy/gpu_check.sh OUT [--dry-run] [--wheels DIR] [dmd3c gpu-check options]" >&2
    exit 2
fi
out=$1; shift
dry_run=0; wheels=""; rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --wheels) wheels=$2; shift ;;
        *) rest+=("$1") ;;
    esac
    shift
done
if [ $dry_run = 0 ] && ! (nvidia-smi -L 2>/dev/null | grep -q '^GPU '); then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi lists none); --dry-run runs the steps that need none" >&2
    exit 2
fi
started=$(date +%s)
make --no-print-directory venv
if [ $dry_run = 0 ]; then
    index=()
    [ -n "$wheels" ] && index=(--no-index --find-links "$wheels")
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "${index[@]}" \
        --no-build-isolation -e ".[tensorrt]"
    echo "gpu_check: set-up took $(( $(date +%s) - started )) s"
    exec .venv/bin/dmd3c gpu-check "$out" "${rest[@]}"
fi
exec .venv/bin/dmd3c gpu-check "$out" --dry-run "${rest[@]}"
