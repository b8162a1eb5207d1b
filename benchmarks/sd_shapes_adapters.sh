#!/usr/bin/env bash
# Train the graph adapters compared in benchmarks/sd_shapes_eval.py on a frozen sd-shapes model:
# HGCN and R-HGNN encoders with per-token offsets, and HGCN with RRNet's EOT-only offset.
# Usage: bash benchmarks/sd_shapes_adapters.sh [MODEL] [RUNS] [STEPS]
#   MODEL: the frozen base (default: the bundled sd-shapes); RUNS: output root (default runs/adapters)
set -euo pipefail
MODEL=${1:-sd-shapes}
RUNS=${2:-runs/adapters}
STEPS=${3:-600}
COMMON=(--data shapes --model "$MODEL" --steps "$STEPS" --batch-size 32 --lr 1e-3 --neg-bound 0.1
        --timestep-power 1 --device cpu --threads 1 --save-pipeline)
export OMP_NUM_THREADS=1
scenegraph-diff train-rectification "${COMMON[@]}" --conv hgcn --output "$RUNS/hgcn-tokens"
scenegraph-diff train-rectification "${COMMON[@]}" --conv rhgnn --output "$RUNS/rhgnn-tokens"
scenegraph-diff train-rectification "${COMMON[@]}" --conv hgcn --eot-only --output "$RUNS/hgcn-eot"
