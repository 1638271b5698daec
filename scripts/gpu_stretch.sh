#!/usr/bin/env bash
# One stretch of ifan-lite training on a lent GPU machine (one GPU, 16 CPU cores, nothing to download):
# training scenes written by the CPU cores, then bf16 training on the GPU from trained weights, until
# a deadline; the weights, metrics and curves land in $OUT. Needs python3 with torch (CUDA),
# scikit-image, scipy, opencv, safetensors, pyyaml and tqdm; ifan runs from src/ uninstalled.
#
#   OUT=/tmp/out bash scripts/gpu_stretch.sh
#   OUT=... INIT=w20.safetensors CHANNELS=20 SCENES=6000 DEADLINE=560 bash scripts/gpu_stretch.sh
#
# DEADLINE (seconds, default 560) bounds the whole script: training gets what the data leaves of it,
# less MARGIN (default 40 s) for the last checkpoint and the copies. The validation scenes are the
# CPU runs' (seed 21), so the curves compare with docs/training.md's.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
: "${OUT:?set OUT to the folder the results go to}"
PY=${PYTHON:-python3}
INIT=${INIT:-ifan-lite}             # a bundled model's name or a weights file
CHANNELS=${CHANNELS:-}              # the width of INIT when it is not the bundled model's (ifan grow)
SCENES=${SCENES:-4000}              # training scenes of 512x512 (seed SEED, soft lens in half)
SEED=${SEED:-51}
DEADLINE=${DEADLINE:-560}
MARGIN=${MARGIN:-40}
STEPS=${STEPS:-3000}                # the cosine's length; the deadline may stop it earlier
CONFIG=${CONFIG:-configs/ifan-lite-gpu.yaml}
WORK=${WORK:-/tmp/ifan-gpu}         # data and the run folder; a run folder there is never overwritten
SIZE=${SIZE:-512x512}               # of the training scenes
VAL=${VAL:-48}                       # validation scenes (seed 21: those of the CPU runs)
EXTRA=${EXTRA:-}                     # more `--set KEY=VALUE` arguments for ifan train
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
cores=$(nproc)
if [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
    echo "$OUT is not empty: give OUT a new or empty folder (nothing there is overwritten)" >&2
    exit 1
fi
mkdir -p "$OUT" "$WORK"
ifan() { "$PY" -m ifan "$@"; }

echo "== data: $SCENES training scenes on $cores cores"
ifan synth -o "$WORK/val" --val "$VAL" --size 512x512 --seed 21 --mixture --workers "$cores" --no-progress
ifan synth -o "$WORK/train" --train "$SCENES" --size "$SIZE" --seed "$SEED" --mixture --soft-lens-p 0.5 \
    --workers "$cores" --no-progress
left=$(( DEADLINE - ($(date +%s) - start) - MARGIN ))
if [ "$left" -lt 30 ]; then
    echo "no time left to train (${left}s after the data): raise DEADLINE or lower SCENES" >&2
    exit 1
fi

echo "== training for at most ${left}s"
sets=(--set "data.root=$WORK/train" --set "data.val_root=$WORK/val" --set "train.steps=$STEPS")
[ -n "$CHANNELS" ] && sets+=(--set "model_overrides.channels=$CHANNELS")
run="$WORK/run"
# shellcheck disable=SC2086
ifan train "$CONFIG" -o "$run" --init "$INIT" --time-limit "$left" "${sets[@]}" $EXTRA

echo "== results -> $OUT"
# the run folder's layout and the checkpoint to take (the newest that loads) are ifan's to say
files=$(ifan run-files "$run" checkpoint best metrics config)
mapfile -t file <<< "$files"
ifan convert "${file[0]}" "$OUT/last.safetensors"
if [ -f "${file[1]}" ]; then cp "${file[1]}" "$OUT/best.safetensors"; fi
cp "${file[2]}" "${file[3]}" "$OUT/"
ifan curves "$run" -o "$OUT/curves.png"
echo "done in $(( $(date +%s) - start ))s: $OUT"
