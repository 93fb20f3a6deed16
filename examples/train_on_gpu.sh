#!/usr/bin/env bash
# Train the four shipped models at once on one GPU, each for a fixed time budget
# (the learning-rate schedule runs on the share of that budget spent).
#   DATA=../shared/data BUDGET=430 RUNS=runs examples/train_on_gpu.sh [extra --set overrides]
# Each run folder ends with model/ (the checkpoint) and log.jsonl.
# INIT=DIR starts each model from the checkpoint DIR/<config> (a further stage);
# MODELS="denoise-gray sr-y" trains only those.
set -uo pipefail
DATA=${DATA:-../shared/data}
BUDGET=${BUDGET:-430}
RUNS=${RUNS:-runs}
PYTHON=${PYTHON:-python3}
data=$(cd "$DATA" && pwd)
train() {  # config, train dirs, val dir
    "$PYTHON" -m formnet_cli.training "examples/configs/$1.toml" --run-dir "$RUNS/$1" \
        --set "data.train_dirs=$2" --set "data.val_dir=\"$3\"" \
        --set train.time_limit_s="$BUDGET" --set train.steps=100000000 \
        --set train.val_every=100000000 --set train.checkpoint_every=2000 \
        ${INIT:+--set "train.init_weights=\"$INIT/$1\""} "${@:4}" \
        > "$RUNS/$1.out" 2>&1
    echo "$1 finished with exit code $?"
}
mkdir -p "$RUNS"
both="[\"$data/Train400\", \"$data/CBSD432\"]"
declare -A train_dirs=([denoise-gray]="$both" [denoise-color]="[\"$data/CBSD432\"]" [jpeg-gray]="$both" [sr-y]="$both")
declare -A val_dirs=([denoise-gray]=Set5 [denoise-color]=Set5 [jpeg-gray]=Classic5 [sr-y]=Set5)
for model in ${MODELS:-denoise-gray denoise-color jpeg-gray sr-y}; do
    train "$model" "${train_dirs[$model]}" "$data/${val_dirs[$model]}" "$@" &
done
wait
