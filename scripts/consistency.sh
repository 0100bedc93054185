#!/bin/sh
# Reproduces docs/consistency.md: sample, score with both models (side by side, one thread
# each, part by part; resumable: run it again to continue), then analyse the finished parts.
# PARTS="1 2 3 4 5" (default) scores all 2,100 records (parts 1-4: 125 per source each; part 5:
# 25 more per source, to replace the records whose prompt fills --max-length); PARTS=1 the first 500.
# MAX_LENGTH (default 128) is --max-length; other lengths go to .work/consistency-N and
# docs/consistency-N.{json,png}.
set -e
cd "$(dirname "$0")/.."
PARTS=${PARTS:-1 2 3 4 5}
MAX_LENGTH=${MAX_LENGTH:-128}
NAME=consistency
[ "$MAX_LENGTH" = 128 ] || NAME=consistency-$MAX_LENGTH
W=.work/$NAME
python scripts/consistency.py sample --out $W/sample.jsonl --per-source 500 --seed 0 --parts 4 --top-up 25
export OMP_NUM_THREADS=1
score_parts() {  # $1 output stem, $2 model; all parts of a model share one score cache
  for n in $PARTS; do
    mkdir -p $W/$1.parquet.cache
    [ -e $W/$1-$n.parquet.cache ] || ln -sfn $1.parquet.cache $W/$1-$n.parquet.cache
    sftpick score $W/sample-$n.jsonl -o $W/$1-$n.parquet --model $2 --max-length $MAX_LENGTH --no-progress
  done
}
score_parts smollm2 smollm2-135m &
score_parts gemma3 gemma3-270m &
wait
python scripts/consistency.py analyze $W/smollm2 $W/gemma3 --sample $W/sample.jsonl --parts 5 --docs docs --name $NAME
