#!/bin/sh
# Reproduces docs/consistency.md: sample, score with both models (side by side, one thread
# each, part by part; resumable: run it again to continue), then analyse the finished parts.
# PARTS="1 2 3 4" (default) scores all 2,000 records; PARTS=1 the first random 500.
set -e
cd "$(dirname "$0")/.."
W=.work/consistency
PARTS=${PARTS:-1 2 3 4}
python scripts/consistency.py sample --out $W/sample.jsonl --per-source 500 --seed 0 --parts 4
export OMP_NUM_THREADS=1
score_parts() {  # $1 output stem, $2 model; all parts of a model share one score cache
  for n in $PARTS; do
    [ -e $W/$1-$n.parquet.cache ] || ln -s $1.parquet.cache $W/$1-$n.parquet.cache
    sftpick score $W/sample-$n.jsonl -o $W/$1-$n.parquet --model $2 --max-length 128 --no-progress
  done
}
score_parts smollm2 smollm2-135m &
score_parts gemma3 gemma3-270m &
wait
python scripts/consistency.py analyze $W/smollm2 $W/gemma3 --sample $W/sample.jsonl --docs docs
