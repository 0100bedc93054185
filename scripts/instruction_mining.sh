#!/bin/sh
# Instruction Mining's experiments on real data: hold out HELDOUT records of every source,
# draw DATASETS training sets from the rest (random sizes in [MIN_SIZE, MAX_SIZE], random
# mixtures of the sources), fine-tune and evaluate each (sftpick rule experiments), then
# fit the rule (sftpick rule fit). Resumable: run it again to continue (the CSV is rewritten
# after every dataset; finished fine-tunes are not redone). Sizes are variables; the
# defaults are the GPU study (4 sources, 16,000+ records, 24 datasets of 300-1,500).
#   DEVICE=cuda sh scripts/instruction_mining.sh
#   REWARD_MODEL=OpenAssistant/reward-model-deberta-v3-large-v2 adds the paper's Rew indicator
# docs/instruction-mining.md ran, on CPU: HELDOUT=10 DATASETS=16 MIN_SIZE=10 MAX_SIZE=40 EPOCHS=1 MAX_LENGTH=256 LR=1e-4 BATCH_SIZE=4 INDICATORS=
# A CPU smoke run (minutes, not a study): HELDOUT=10 DATASETS=6 MIN_SIZE=10 MAX_SIZE=20 EPOCHS=1 MAX_LENGTH=128 sh scripts/instruction_mining.sh
set -e
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}
SOURCES=${SOURCES:-"$D/alpaca-cherry-5pct.json $D/gsm8k-train.json $D/gpteacher-roleplay.json $D/gpteacher-toolformer.json"}
HELDOUT=${HELDOUT:-75}       # per source
DATASETS=${DATASETS:-24}
MIN_SIZE=${MIN_SIZE:-300}
MAX_SIZE=${MAX_SIZE:-1500}
EPOCHS=${EPOCHS:-3}
LR=${LR:-2e-5}
BATCH_SIZE=${BATCH_SIZE:-16}
MAX_LENGTH=${MAX_LENGTH:-1024}
TEMPLATE=${TEMPLATE:-alpaca}
MODEL=${MODEL:-smollm2-135m}
DEVICE=${DEVICE:-auto}
W=${WORK:-.work/instruction_mining}

# shellcheck disable=SC2086
python scripts/split_heldout.py $SOURCES --heldout "$HELDOUT" --seed 0 --out $W/split
POOLS=""
for f in $SOURCES; do POOLS="$POOLS $W/split/$(basename "$f")"; done
REWARD=""
[ -z "$REWARD_MODEL" ] || REWARD="--reward-model $REWARD_MODEL"
INDICATORS=${INDICATORS-ppl}  # extra indicator scorers beside len, mtld, knn_6 (and reward); INDICATORS= for none
# shellcheck disable=SC2086
sftpick rule experiments $POOLS --eval-set $W/split/heldout.json --datasets "$DATASETS" \
    --min-size "$MIN_SIZE" --max-size "$MAX_SIZE" --model "$MODEL" --device "$DEVICE" --template "$TEMPLATE" \
    --epochs "$EPOCHS" --lr "$LR" --batch-size "$BATCH_SIZE" --max-length "$MAX_LENGTH" $REWARD \
    --indicators "$INDICATORS" --no-progress -o $W/experiments.csv
sftpick rule fit $W/experiments.csv -o $W/rule.json
echo "experiments: $W/experiments.csv, fitted rule: $W/rule.json"
