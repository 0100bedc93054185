"""Precision, recall and speed of `--dedup near` (MinHash LSH) against exact Jaccard, on real records.

Records: an equal share of each of the four files in ../shared/data (GSM8K, GPTeacher
Toolformer and Roleplay, Cherry Alpaca 5%), instruction, input and output joined by newlines.
A share of them gets an edited copy (whitespace, punctuation, one word or one number changed),
and the copies are shuffled in among the originals, so there are positives besides the data's
own near duplicates. Truth is the exact Jaccard of every pair's shingle sets (the normalised
word n-grams sftpick hashes), by sparse matrix products:

- record level: a record is a true near duplicate if an earlier record has Jaccard >= threshold,
  predicted one if `near_duplicates` drops it; precision and recall over records;
- pair level: the share of dropped records whose Jaccard to the twin they name is >= threshold
  (union-find can chain A to C through B; this counts how often the named twin is not close).

Both ways of grouping are measured: `near_duplicates(keys)` (union-find over "shares a band
key", without sketches) and `near_duplicates(keys, sketches, threshold)` (links verified by
b-bit sketches, chains cut: what sftpick does).

    python benchmarks/near_dup_quality.py --records 3000
    python benchmarks/near_dup_quality.py --records 3000 --num-perm 256
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from datetime import date
from pathlib import Path

import numpy as np
from scipy import sparse

from sftpick.curation.lsh import near_duplicates
from sftpick.curation.minhash import (
    DEFAULT_NGRAM,
    DEFAULT_PERMUTATIONS,
    DEFAULT_THRESHOLD,
    band_keys,
    lsh_params,
    normalise,
    signatures,
    sketches,
)

FILES = ("gsm8k-train.json", "gpteacher-toolformer.json", "gpteacher-roleplay.json", "alpaca-cherry-5pct.json")
EDITS = ("whitespace", "punctuation", "one word", "one number")


def load(data: Path, records: int, rng: random.Random) -> list[str]:
    texts = []
    for name in FILES:
        rows = json.loads((data / name).read_text())
        for row in rng.sample(rows, records // len(FILES)):
            texts.append("\n".join([row["instruction"], row["input"], row["output"]]))
    return texts


def edit(text: str, kind: str, rng: random.Random) -> str | None:
    """An edited copy of text, or None where the edit does not apply (no number, one word)."""
    if kind == "whitespace":
        return re.sub(" ", lambda _: rng.choice([" ", "  ", "\n", " \t "]), text) + "\n"
    if kind == "punctuation":
        return re.sub(r"(\w)([ \n])", lambda m: m.group(1) + rng.choice(["", ",", "!", ";"]) + m.group(2),
                      text.replace(",", "").replace(".", ""))
    if kind == "one word":
        tokens = text.split(" ")
        words = [i for i, token in enumerate(tokens) if token.isalpha()]
        if len(words) < 2:
            return None
        tokens[rng.choice(words)] = "zebra"
        return " ".join(tokens)
    numbers = list(re.finditer(r"\d+", text))
    if not numbers:
        return None
    match = rng.choice(numbers)
    return text[:match.start()] + str(int(match.group()) + rng.randint(1, 9)) + text[match.end():]


def plant(texts: list[str], share: float, rng: random.Random
          ) -> tuple[list[str], list[tuple[int, int, str]], np.ndarray]:
    """The texts with edited copies shuffled in, (original, copy, edit) positions of each copy,
    and each row's index in texts (a copy's: its original's)."""
    rows = [(text, i, None) for i, text in enumerate(texts)]
    for i in rng.sample(range(len(texts)), int(share * len(texts))):
        kind = rng.choice(EDITS)
        copy = edit(texts[i], kind, rng)
        if copy is not None and copy != texts[i]:
            rows.append((copy, i, kind))
    rng.shuffle(rows)
    position = {source: k for k, (_, source, kind) in enumerate(rows) if kind is None}
    copies = [(position[source], k, kind) for k, (_, source, kind) in enumerate(rows) if kind is not None]
    return [text for text, _, _ in rows], copies, np.array([source for _, source, _ in rows])


def exact_jaccard(texts: list[str], ngram: int) -> sparse.csr_matrix:
    """Upper triangle (i < j) of the pairwise Jaccard of the texts' shingle sets, where > 0."""
    ids: dict[tuple[str, ...], int] = {}
    rows, cols = [], []
    for i, text in enumerate(texts):
        words = normalise(text).split()
        shingles = ({tuple(words)} if words else set()) if len(words) < ngram else \
            {tuple(words[k:k + ngram]) for k in range(len(words) - ngram + 1)}
        for shingle in shingles:
            rows.append(i)
            cols.append(ids.setdefault(shingle, len(ids)))
    x = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(ids)))
    sizes = np.asarray(x.sum(axis=1)).ravel()
    shared = sparse.triu(x @ x.T, k=1).tocoo()
    union = sizes[shared.row] + sizes[shared.col] - shared.data
    return sparse.csr_matrix((shared.data / union, (shared.row, shared.col)), shape=shared.shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--records", type=int, default=3000, help="real records, an equal share of each file")
    parser.add_argument("--planted", type=float, default=0.1, help="share of records that get an edited copy")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--num-perm", type=int, default=DEFAULT_PERMUTATIONS)
    parser.add_argument("--ngram", type=int, default=DEFAULT_NGRAM)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the fastest is reported")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    texts, copies, origin = plant(load(args.data, args.records, rng), args.planted, rng)
    source = origin // (args.records // len(FILES))  # index in FILES
    n = len(texts)
    bands, rows = lsh_params(args.threshold, args.num_perm)

    signatures(texts[:10], num_perm=args.num_perm, ngram=args.ngram)  # builds the normalisation table
    times = []  # seconds of (signatures, band keys + sketches, near_duplicates, verified); the best of --repeat
    for _ in range(args.repeat):
        started = time.perf_counter()
        sigs = signatures(texts, num_perm=args.num_perm, ngram=args.ngram)
        signed = time.perf_counter()
        keys, sketch = band_keys(sigs, bands, rows), sketches(sigs)
        keyed = time.perf_counter()
        plain = near_duplicates(keys)
        grouped = time.perf_counter()
        verified = near_duplicates(keys, sketch, args.threshold)
        times.append((signed - started, keyed - signed, grouped - keyed, time.perf_counter() - grouped))
    times = np.array(times).min(axis=0)
    load_average = os.getloadavg()

    jaccard = exact_jaccard(texts, args.ngram)
    close = (jaccard >= args.threshold).tocoo()  # row < col: col has an earlier record this close
    truth = np.zeros(n, dtype=bool)
    truth[close.col] = True
    planted = np.zeros(n, dtype=bool)
    planted[[copy for _, copy, _ in copies]] = True
    words = np.array([len(text.split()) for text in texts])

    print(f"{date.today()}  load average {load_average[0]:.2f} {load_average[1]:.2f} {load_average[2]:.2f}")
    print(f"records {n} ({args.records} real, {planted.sum()} planted copies), words/record mean {words.mean():.0f} "
          f"median {np.median(words):.0f}")
    print(f"threshold {args.threshold}  ngram {args.ngram}  permutations {args.num_perm}  bands {bands} x rows {rows}")
    print(f"true near duplicates {truth.sum()} ({(truth & ~planted).sum()} not planted)")
    for name, found in (("without sketches (union-find)", plain), ("with sketches (sftpick)", verified)):
        print(f"--- {name}")
        report(found, truth, jaccard, source, copies, args.threshold)
    print(f"speed, best of {args.repeat}, one process, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}: "
          f"signatures {n / times[0]:,.0f} records/s, band keys + sketches {times[1]:.3f} s, near_duplicates "
          f"{times[2]:.3f} s without sketches, {times[3]:.3f} s with; all with sketches "
          f"{n / (times[0] + times[1] + times[3]):,.0f} records/s (without {n / times[:3].sum():,.0f})")


def report(found: np.ndarray, truth: np.ndarray, jaccard: sparse.csr_matrix, source: np.ndarray,
           copies: list[tuple[int, int, str]], threshold: float) -> None:
    dropped = found >= 0
    hits = (dropped & truth).sum()
    twin_jaccard = np.array([jaccard[min(i, j), max(i, j)] for i, j in zip(np.flatnonzero(dropped), found[dropped])])
    print(f"dropped {dropped.sum()}: record precision {hits / max(dropped.sum(), 1):.4f}  "
          f"recall {hits / max(truth.sum(), 1):.4f}")
    print(f"pair precision (dropped, named twin) Jaccard >= threshold: "
          f"{np.mean(twin_jaccard >= threshold) if len(twin_jaccard) else float('nan'):.4f} "
          f"(min Jaccard {twin_jaccard.min() if len(twin_jaccard) else float('nan'):.3f})")
    for k, name in enumerate(FILES):
        of_file = source == k
        print(f"  {name}: {of_file.sum()} records, {(truth & of_file).sum()} true near duplicates, "
              f"{(dropped & of_file).sum()} dropped, {(dropped & ~truth & of_file).sum()} wrongly")
    for kind in EDITS:  # the later of original and copy is the one to drop
        later = np.array([max(pair) for *pair, k in copies if k == kind], dtype=np.int64)
        close_pairs = np.array([jaccard[min(pair), max(pair)] >= threshold for *pair, k in copies if k == kind])
        print(f"  planted '{kind}': {len(later)} copies, {close_pairs.sum()} >= threshold, recall of those "
              f"{dropped[later[close_pairs]].mean() if close_pairs.any() else float('nan'):.4f}")
    missed = np.flatnonzero(truth & ~dropped)
    if len(missed):
        best = np.array([jaccard[:, i].max() for i in missed])
        print(f"missed: {len(missed)}, their best earlier Jaccard: {np.round(np.sort(best), 3).tolist()[:20]}")


if __name__ == "__main__":
    main()
