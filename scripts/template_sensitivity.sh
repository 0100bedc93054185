#!/bin/sh
# Reproduces docs/template-sensitivity.md: how much the prompt template and the IFD variant
# move SmolLM2-135M's IFD ranking. Scores part 1 of the consistency sample (500 records, 125
# per source) four ways, two jobs side by side (one thread each; resumable: run it again to
# continue), then compares the runs that differ in one thing: the template, or the variant.
set -e
cd "$(dirname "$0")/.."
W=.work/templates
mkdir -p $W
python scripts/consistency.py sample --out $W/sample.jsonl --per-source 500 --seed 0 --parts 4
export OMP_NUM_THREADS=1
score() {  # $1 output stem, then sftpick score options
  out=$1; shift
  sftpick score $W/sample-1.jsonl -o $W/$out-1.parquet --model smollm2-135m --max-length 256 --no-progress "$@"
}
(score none --template none && score alpaca --template alpaca) &
(score chat --template chat && score cherry --variant cherry) &
wait
compare() {  # $1 baseline stem, $2 other stem, $3 and $4 their plot labels
  python scripts/consistency.py analyze $W/$1 $W/$2 --sample $W/sample.jsonl --parts 1 --docs docs \
    --name template-$1-vs-$2 --labels "$3" "$4"
}
# the template alone (superfiltering variant): plain prompt vs the Alpaca prompt, vs the chat template
compare none alpaca "template none" "template alpaca"
compare none chat "template none" "template chat"
# the variant alone (same Alpaca prompt): Superfiltering's PPL ratio vs Cherry's loss ratio
compare alpaca cherry "superfiltering (Alpaca prompt)" "cherry (Alpaca prompt)"
python scripts/ifd_variant_parts.py $W/alpaca-1.parquet $W/cherry-1.parquet --sample $W/sample.jsonl \
  --json docs/template-variant-parts.json
