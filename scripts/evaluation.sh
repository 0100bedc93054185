#!/bin/sh
# "Prove the subset": select BUDGET records of a real pool by IFD (top-k), by k-center and by
# DEITA's score-first diversity filter (over IFD), then fine-tune on each, on SEEDS random subsets of the same size and on the longest
# responses, and compare held-out loss: one `sftpick study`. Resumable at every stage: run it
# again after an interruption (scores are cached shard by shard, fine-tunes arm by arm).
# Sizes are variables; the defaults are the GPU study (Alpaca 5%: 3,011-record pool, 100 held
# out, 5% subsets, 3 seeds, 3 epochs). docs/evaluation.md ran, on CPU:
#   FIXED_SEEDS=1 EPOCHS=1 MAX_LENGTH=256 LR=1e-4 BATCH_SIZE=8 sh scripts/evaluation.sh
#   DEVICE=cuda sh scripts/evaluation.sh
#   POOL=../shared/data/gsm8k-train.json BUDGET=500 SEEDS=3 sh scripts/evaluation.sh
# A CPU smoke run (minutes, not a study): HELDOUT=20 BUDGET=16 SEEDS=2 EPOCHS=1 MAX_LENGTH=128 sh scripts/evaluation.sh
set -e
cd "$(dirname "$0")/.."
POOL=${POOL:-../shared/data/alpaca-cherry-5pct.json}
HELDOUT=${HELDOUT:-100}      # records held out of the pool for the eval set
BUDGET=${BUDGET:-5%}         # records each selection keeps
SEEDS=${SEEDS:-3}
FIXED_SEEDS=${FIXED_SEEDS:-$SEEDS}  # fine-tunes of the selected and longest arms (random: SEEDS draws)
EPOCHS=${EPOCHS:-3}
LR=${LR:-2e-5}
BATCH_SIZE=${BATCH_SIZE:-16}
MAX_LENGTH=${MAX_LENGTH:-1024}
TEMPLATE=${TEMPLATE:-alpaca}
MODEL=${MODEL:-smollm2-135m}
DEVICE=${DEVICE:-auto}
W=${WORK:-.work/evaluation}
NAME=$(basename "$POOL")

python scripts/split_heldout.py "$POOL" --heldout "$HELDOUT" --seed 0 --out $W/split
# The bake-off in one command: IFD scored once (as the study of docs/evaluation.md scored it: the
# training template and length), every method's subset selected from that table, every arm fine-tuned.
sftpick study $W/split/$NAME -o $W/study --budget "$BUDGET" --scorers ifd,len \
    --method topk:ifd --method kcenter --method deita:ifd --method random --method longest \
    --ifd.template "$TEMPLATE" --ifd.max-length "$MAX_LENGTH" \
    --seeds "$SEEDS" --fixed-seeds "$FIXED_SEEDS" --eval-set $W/split/heldout.json \
    --model "$MODEL" --device "$DEVICE" --template "$TEMPLATE" --epochs "$EPOCHS" --lr "$LR" \
    --batch-size "$BATCH_SIZE" --max-length "$MAX_LENGTH"
echo "leaderboard: $W/study/leaderboard.md, result: $W/study/eval/result.json, plot: $W/study/eval/result.html"
