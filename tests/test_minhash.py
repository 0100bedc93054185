"""MinHash LSH near duplicates (sftpick.curation.minhash) on real records: the signature's
and the b-bit sketch's Jaccard estimates against exact Jaccard, agreement with datasketch,
planted edited copies found with their original as twin, no unrelated record dropped, and with
sketches, no record of a Toolformer-like family (a long shared block, Jaccard 0.3-0.65)."""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftpick.curation.lsh import clusters, near_duplicates
from sftpick.curation.minhash import (
    DEFAULT_NGRAM,
    DEFAULT_PERMUTATIONS,
    DEFAULT_THRESHOLD,
    EMPTY_KEY,
    MAX_HASH,
    band_keys,
    lsh_params,
    normalise,
    signatures,
    sketches,
)

FIXTURES = Path(__file__).parent / "fixtures"


def record_text(record: dict) -> str:
    return "\n".join([record["instruction"], record["input"], record["output"]])


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """326 real records: 26 mixed (Alpaca, GSM8K, GPTeacher) and 300 GSM8K problems."""
    records = []
    for name in ("real_alpaca.json", "gsm8k_sample.json"):
        records += json.loads((FIXTURES / name).read_text())
    return [record_text(r) for r in records]


def shingle_set(text: str, ngram: int = DEFAULT_NGRAM) -> set[tuple[str, ...]]:
    words = normalise(text).split()
    if len(words) < ngram:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + ngram]) for i in range(len(words) - ngram + 1)}


def jaccard(x: set, y: set) -> float:
    return len(x & y) / len(x | y) if x | y else 1.0


def estimate(sig_x: np.ndarray, sig_y: np.ndarray) -> float:
    return float(np.mean(sig_x == sig_y))


def drop_words(text: str, share: float, rng: random.Random) -> str:
    words = text.split()
    return " ".join(w for w in words if rng.random() >= share)


def change_whitespace(text: str, rng: random.Random) -> str:
    return "  " + re.sub(" ", lambda _: rng.choice([" ", "  ", "\n", " \t "]), text) + "\n\n"


def change_punctuation(text: str, rng: random.Random) -> str:
    text = text.replace(",", "").replace("?", ".")
    return re.sub(r"(\w) ", lambda m: m.group(1) + rng.choice([" ", " ", "! ", ", ", "; "]), text)


def change_one_word(text: str) -> str:
    tokens = text.split(" ")
    middle = len(tokens) // 2
    k = next(i for i in range(middle, len(tokens)) if tokens[i].isalpha() and tokens[i].lower() != "zebra")
    tokens[k] = "zebra"
    return " ".join(tokens)


def change_one_number(text: str) -> str:
    match = re.search(r"\d+", text)
    return text[:match.start()] + str(int(match.group()) + 7) + text[match.end():]


# --- normalise -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("Hello, World!", "hello world"),
    ("  a\tb\n\nc  ", "a b c"),
    ("It's $5.00 (five)…", "its 500 five"),
    ("zero\u200bwidth soft\u00adhyphen", "zerowidth softhyphen"),
    ("no\u00a0break\u3000space", "no break space"),
    ("lone\ud800surrogate", "lonesurrogate"),
    ("Émile: ÇA VA?", "émile ça va"),
    ("", ""),
    ("!!! ...", ""),
])
def test_normalise(text, expected):
    assert normalise(text) == expected


def test_normalise_rejects_a_non_string():
    with pytest.raises(TypeError, match="text should be a str, got int"):
        normalise(3)


# --- signatures ----------------------------------------------------------------------------------


def test_signatures_shape_and_dtype(texts):
    sigs = signatures(texts[:5], num_perm=64, ngram=3)
    assert sigs.shape == (5, 64) and sigs.dtype == np.uint32


def test_jaccard_estimate_within_the_minhash_standard_error(texts):
    """Pairs of a real record and a copy with a share of its words dropped span Jaccard 0 to 1,
    plus unrelated real pairs; the number of equal values is binomial(num_perm, J), so the
    estimate's error in standard errors sqrt(J(1-J)/num_perm) has mean 0 and variance 1."""
    rng = random.Random(0)
    pairs = [(t, drop_words(t, rng.choice([0.02, 0.05, 0.1, 0.2, 0.4]), rng)) for t in texts]
    pairs += list(zip(texts[1:60:2], texts[61:120:2]))
    num_perm = DEFAULT_PERMUTATIONS
    sigs = signatures([t for pair in pairs for t in pair], num_perm=num_perm)
    exact = np.array([jaccard(shingle_set(x), shingle_set(y)) for x, y in pairs])
    estimates = np.array([estimate(sigs[2 * i], sigs[2 * i + 1]) for i in range(len(pairs))])
    assert exact.min() < 0.05 and exact.max() > 0.9 and ((exact > 0.3) & (exact < 0.7)).sum() > 50
    assert np.all(estimates[exact == 0] == 0) and np.all(estimates[exact == 1] == 1)
    sd = np.sqrt(exact * (1 - exact) / num_perm)
    z = (estimates - exact)[sd > 0] / sd[sd > 0]
    assert np.mean(np.abs(z) > 3) <= 0.02  # 0.27% expected; 2,000 pairs of the shared data gave 0.29%
    assert np.all(np.abs(z) < 5)
    assert abs(z.mean()) < 3 / np.sqrt(len(z))  # unbiased
    assert 0.7 < z.var() < 1.3  # 3 sd of a sample variance of ~300 values either side of 1


@pytest.mark.parametrize("num_perm", [DEFAULT_PERMUTATIONS, 256])
def test_sketch_estimate_within_the_b_bit_standard_error(texts, num_perm):
    """Li and König (2010), Theorem 1 for sets much smaller than the hash range: a sketch byte
    pair is equal with probability P = 2**-8 + (1 - 2**-8) J, so the share f of equal bytes is
    binomial(num_perm, P)/num_perm and J = (f - 2**-8) / (1 - 2**-8) has standard error
    sqrt(P(1-P)/num_perm) / (1 - 2**-8); unrelated pairs (J = 0) now match by chance."""
    rng = random.Random(2)
    pairs = [(t, drop_words(t, rng.choice([0.02, 0.05, 0.1, 0.2, 0.4]), rng)) for t in texts]
    pairs += list(zip(texts[1:60:2], texts[61:120:2]))
    sketch = sketches(signatures([t for pair in pairs for t in pair], num_perm=num_perm))
    assert sketch.shape == (2 * len(pairs), num_perm) and sketch.dtype == np.uint8
    exact = np.array([jaccard(shingle_set(x), shingle_set(y)) for x, y in pairs])
    f = (sketch[0::2] == sketch[1::2]).mean(axis=1)
    estimates = (f - 2**-8) / (1 - 2**-8)
    p = 2**-8 + (1 - 2**-8) * exact
    sd = np.sqrt(p * (1 - p) / num_perm) / (1 - 2**-8)
    assert np.all(estimates[exact == 1] == 1)
    z = (estimates - exact)[exact < 1] / sd[exact < 1]
    assert np.mean(np.abs(z) > 3) <= 0.02 and np.all(np.abs(z) < 5)
    assert abs(z.mean()) < 3 / np.sqrt(len(z))  # unbiased
    assert 0.7 < z.var() < 1.3


def test_sketches_are_the_multiplied_top_byte_and_collide_by_chance_at_2_to_the_minus_8(texts):
    """Different signature values of edited real pairs get equal sketch bytes at the rate
    2**-8 that the estimator assumes (their lowest bytes did so 1.2-1.4 times as often: 6
    standard errors above it at 256 permutations)."""
    sigs = np.array([[0x12345678, 0xFFFFFFFF, 0x100]], dtype=np.uint32)
    expected = [(v * 0x9E3779B1) % 2**32 >> 24 for v in sigs[0].tolist()]
    assert sketches(sigs).tolist() == [expected] and sketches(sigs).flags.c_contiguous
    rng = random.Random(0)
    pairs = [(t, drop_words(t, rng.choice([0.02, 0.05, 0.1, 0.2, 0.4]), rng)) for t in texts]
    sigs = signatures([t for pair in pairs for t in pair], num_perm=256)
    differ = sigs[0::2] != sigs[1::2]
    equal_bytes = (sketches(sigs)[0::2] == sketches(sigs)[1::2])[differ].sum()
    chance = differ.sum() * 2**-8
    assert differ.sum() > 40_000 and abs(equal_bytes - chance) < 3.5 * np.sqrt(chance)
    with pytest.raises(ValueError, match="signatures should be a 2-D uint32 array"):
        sketches(sigs.astype(np.uint64))


def test_signatures_equal_datasketch_legacy_minhash_of_the_same_shingle_hashes(texts):
    """The same permutations and arithmetic as datasketch's MinHash (its "legacy" scheme, the
    only one before datasketch 2.0, the one text-dedup and data-juicer copy)."""
    datasketch = pytest.importorskip("datasketch")
    from sftpick.curation.minhash import _shingle_hashes

    sample = texts[:20] + ["two words", ""]
    hashes, counts = _shingle_hashes(sample, DEFAULT_NGRAM)
    offsets = np.r_[0, np.cumsum(counts)]
    kwargs = {"scheme": "legacy"} if "scheme" in datasketch.MinHash.__init__.__code__.co_varnames else {}
    for num_perm, seed in [(128, 1), (256, 7)]:
        sigs = signatures(sample, num_perm=num_perm, seed=seed)
        for i in range(len(sample)):
            theirs = datasketch.MinHash(num_perm=num_perm, seed=seed, hashfunc=int, **kwargs)
            theirs.update_batch(hashes[offsets[i]:offsets[i + 1]].tolist())
            np.testing.assert_array_equal(sigs[i], theirs.hashvalues)


def test_jaccard_estimate_agrees_with_datasketch_default_minhash(texts):
    """datasketch as people use it (SHA-1 of each shingle, its default scheme): two independent
    estimates of one Jaccard, so they differ by at most a few sqrt(2) standard errors."""
    datasketch = pytest.importorskip("datasketch")
    rng = random.Random(1)
    pairs = [(t, drop_words(t, 0.1, rng)) for t in texts[:80]]
    ours = signatures([t for pair in pairs for t in pair])

    def theirs(text):
        sketch = datasketch.MinHash(num_perm=DEFAULT_PERMUTATIONS)
        sketch.update_batch([" ".join(s).encode() for s in shingle_set(text)])
        return sketch

    for i, (x, y) in enumerate(pairs):
        exact = jaccard(shingle_set(x), shingle_set(y))
        sd = np.sqrt(2 * exact * (1 - exact) / DEFAULT_PERMUTATIONS)
        assert abs(estimate(ours[2 * i], ours[2 * i + 1]) - theirs(x).jaccard(theirs(y))) <= 5 * sd + 1e-9


def test_signatures_are_deterministic_and_follow_the_seed(texts):
    first = signatures(texts[:10])
    assert np.array_equal(first, signatures(texts[:10]))
    assert np.array_equal(first[3:4], signatures(texts[3:4]))  # independent of the batch
    assert np.mean(first == signatures(texts[:10], seed=2)) < 0.05


def test_signatures_do_not_depend_on_batch_and_block_sizes(texts, monkeypatch):
    """Batches of texts and blocks of the permuted matrix cut records anywhere: same values."""
    from sftpick.curation import minhash

    sample = texts[:30] + ["", "short one"] + texts[30:40]
    whole = signatures(sample, num_perm=16)
    monkeypatch.setattr(minhash, "_BATCH_CHARS", 500)
    monkeypatch.setattr(minhash, "_BLOCK_VALUES", 16 * 7)
    assert np.array_equal(signatures(sample, num_perm=16), whole)


def test_signatures_are_stable_across_processes():
    """No salted hash: a fresh interpreter with another PYTHONHASHSEED gives the same values,
    and they are pinned (a change would silently invalidate cached band keys)."""
    code = ("from sftpick.curation.minhash import signatures;"
            "print(signatures(['The quick brown fox jumps over the lazy dog.'], num_perm=4)[0].tolist())")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONHASHSEED": "123"}).stdout
    here = signatures(["The quick brown fox jumps over the lazy dog."], num_perm=4)[0].tolist()
    assert json.loads(output) == here == [758827161, 1219453778, 421770062, 179524232]


@pytest.mark.parametrize("text", ["", "a", "Hello  world", "über\u00a0straße\u3000日本語 tab\there",
                                  "\x1c\x1dsep\x85x\x00y", "z" * 3000 + " q", "é" * 40])
def test_word_hashes_are_the_documented_polynomial_of_the_words_of_normalise(text):
    from sftpick.curation.minhash import _fmix64, _word_hashes

    def reference(word: str) -> int:
        data = word.encode()
        polynomial = sum(byte * pow(0x100000001B3, k, 2**64) for k, byte in enumerate(data))
        return int(_fmix64(np.array([(polynomial + len(data)) % 2**64], dtype=np.uint64))[0])

    hashes, counts = _word_hashes([text, "next text"])
    words = normalise(text).split()
    assert counts.tolist() == [len(words), 2]
    assert hashes[:len(words)].tolist() == [reference(w) for w in words]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.characters(exclude_categories=()), max_size=40), max_size=4))
def test_word_hashes_split_like_str_split(texts):
    """The byte-level word boundaries are exactly str.split's on the normalised text."""
    from sftpick.curation.minhash import _word_hashes

    hashes, counts = _word_hashes(texts)
    assert counts.tolist() == [len(normalise(t).split()) for t in texts]
    words = [w for t in texts for w in normalise(t).split()]
    same = {w: h for w, h in zip(words, hashes.tolist())}
    assert len(hashes) == len(words) and all(same[w] == h for w, h in zip(words, hashes.tolist()))


def test_short_and_empty_texts():
    sigs = signatures(["Hello, world!", "hello world", "hello there", "", "  ?! ", "one"], num_perm=32)
    assert np.array_equal(sigs[0], sigs[1])  # fewer words than ngram: one shingle of all of them
    assert np.mean(sigs[1] == sigs[2]) < 0.2
    assert np.all(sigs[3] == MAX_HASH) and np.all(sigs[4] == MAX_HASH)
    assert not np.any(sigs[[0, 2, 5]] == MAX_HASH)


def test_signatures_of_no_texts():
    assert signatures([], num_perm=16).shape == (0, 16)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"texts": "one text"}, TypeError, "texts should be a list of str, got str"),
    ({"texts": ["a", None]}, TypeError, r"texts\[1\] should be a str, got NoneType"),
    ({"texts": ["a"], "num_perm": 0}, ValueError, "num_perm=0 should be a whole number >= 1"),
    ({"texts": ["a"], "ngram": 2.5}, ValueError, "ngram=2.5 should be a whole number >= 1"),
])
def test_signatures_errors(kwargs, error, match):
    texts = kwargs.pop("texts")
    with pytest.raises(error, match=match):
        signatures(texts, **kwargs)


# --- lsh_params, band_keys -----------------------------------------------------------------------


@pytest.mark.parametrize("threshold, num_perm", [(0.5, 64), (DEFAULT_THRESHOLD, DEFAULT_PERMUTATIONS),
                                                 (0.9, 128), (0.7, 256)])
def test_lsh_params_match_datasketch(threshold, num_perm):
    lsh = pytest.importorskip("datasketch.lsh")
    bands, rows = lsh_params(threshold, num_perm)
    assert (bands, rows) == lsh._optimal_param(threshold, num_perm, 0.5, 0.5)
    assert bands * rows <= num_perm


def test_default_lsh_params():
    assert lsh_params(DEFAULT_THRESHOLD, DEFAULT_PERMUTATIONS) == (14, 9)


@pytest.mark.parametrize("threshold", [0, 1.5, -0.2])
def test_lsh_params_rejects_a_threshold_outside_0_1(threshold):
    with pytest.raises(ValueError, match=rf"threshold={threshold} should be in \(0, 1\]"):
        lsh_params(threshold, 128)


def test_threshold_1_finds_only_equal_shingle_sets():
    assert lsh_params(1, 64) == (1, 64)
    texts = ["one two three four five six", "One, two three four five six!", "one two three four five seven"]
    assert find(texts, threshold=1).tolist() == [-1, 0, -1]


def test_band_keys_shape_and_band_separation():
    sigs = np.full((3, 12), 5, dtype=np.uint32)  # every band holds the same values
    sigs[1, 4] = 6  # record 1 differs in band 1 only
    keys = band_keys(sigs, 3, 4)
    assert keys.shape == (3, 3) and keys.dtype == np.uint64
    assert len(set(keys[0].tolist())) == 3  # equal values, different bands: different keys
    assert np.array_equal(keys[0], keys[2])
    assert keys[1, 1] != keys[0, 1] and keys[1, 0] == keys[0, 0] and keys[1, 2] == keys[0, 2]


def test_band_keys_of_an_empty_text_are_the_empty_key():
    keys = band_keys(signatures(["", "some words here"], num_perm=16), 4, 4)
    assert np.all(keys[0] == EMPTY_KEY) and not np.any(keys[1] == EMPTY_KEY)


@pytest.mark.parametrize("sigs, bands, rows, match", [
    (np.zeros((2, 8), dtype=np.uint32), 3, 3, r"bands \* rows = 9 should be <= num_perm=8"),
    (np.zeros((2, 8), dtype=np.uint64), 2, 4, "2-D uint32 array"),
    (np.zeros(8, dtype=np.uint32), 2, 4, "2-D uint32 array"),
    (np.zeros((2, 8), dtype=np.uint32), 0, 4, "bands=0 should be a whole number >= 1"),
])
def test_band_keys_errors(sigs, bands, rows, match):
    with pytest.raises(ValueError, match=match):
        band_keys(sigs, bands, rows)


# --- near_duplicates -----------------------------------------------------------------------------


def find(texts: list[str], threshold: float = DEFAULT_THRESHOLD, num_perm: int = DEFAULT_PERMUTATIONS,
         verify: bool = False) -> np.ndarray:
    bands, rows = lsh_params(threshold, num_perm)
    sigs = signatures(texts, num_perm=num_perm)
    verification = (sketches(sigs), threshold) if verify else ()
    return near_duplicates(band_keys(sigs, bands, rows), *verification)


@pytest.mark.parametrize("verify", [False, True])
def test_planted_copies_are_found_with_the_original_as_twin(texts, verify):
    """Whitespace and punctuation edits vanish in normalisation (Jaccard 1); one changed word
    or number in a record of 100+ words keeps Jaccard >= 0.85, found with probability > 0.97
    (1 - (1 - J**9)**14), > 0.999 from J = 0.9 on; with sketches, a sketch estimate >= 0.7 is
    then 4.5 standard errors below the Jaccard."""
    rng = random.Random(0)
    long = [i for i, t in enumerate(texts) if len(t.split()) >= 100]
    assert len(long) >= 40
    planted = []  # (original, edited copy)
    for i in long[:40]:
        edits = [change_whitespace(texts[i], rng), change_punctuation(texts[i], rng), change_one_word(texts[i])]
        if re.search(r"\d", texts[i]):
            edits.append(change_one_number(texts[i]))
        for edited in edits:
            assert edited != texts[i]
            planted.append((i, edited))
    found = find(texts + [edited for _, edited in planted], verify=verify)
    kept = np.where(found >= 0, found, np.arange(len(found)))
    for k, (original, edited) in enumerate(planted):
        assert jaccard(shingle_set(texts[original]), shingle_set(edited)) >= 0.85
        assert found[len(texts) + k] == kept[original], (original, edited)
    assert np.array_equal(found[:len(texts)], find(texts, verify=verify))  # the copies change nothing before them


@pytest.mark.parametrize("verify", [False, True])
@pytest.mark.parametrize("threshold", [DEFAULT_THRESHOLD, 0.5])
def test_no_unrelated_real_record_is_dropped(texts, threshold, verify):
    """Without planted copies (the fixture's most similar pair has Jaccard 0.58), a dropped
    record's exact Jaccard to its named twin is >= 0.5 (>= 0.3 at threshold 0.5): no unrelated
    record is dropped."""
    found = find(texts, threshold, verify=verify)
    for i in np.flatnonzero(found >= 0):
        assert jaccard(shingle_set(texts[i]), shingle_set(texts[found[i]])) >= min(0.5, threshold - 0.2)


def test_sketches_keep_a_family_sharing_a_long_block(texts):
    """GPTeacher Toolformer's failure: records that repeat a long tool description and differ
    in the question have Jaccard 0.3-0.65 to each other; hundreds of such pairs make some LSH
    candidates, and union-find drops records of the family. With sketches, none is dropped."""
    tools = json.loads((FIXTURES / "real_alpaca.json").read_text())
    descriptions = " ".join(r["instruction"] for r in tools if r["instruction"].startswith("toolformer"))
    block = " ".join(descriptions.split()[:110])
    family = []
    for question in [json.loads((FIXTURES / "gsm8k_sample.json").read_text())[i]["instruction"] for i in range(80)]:
        text = block + "\n" + question
        if all(jaccard(shingle_set(text), shingle_set(other)) < 0.65 for other in family):
            family.append(text)
    pairs = [jaccard(shingle_set(x), shingle_set(y)) for k, x in enumerate(family) for y in family[k + 1:]]
    assert len(family) >= 50 and np.median(pairs) > 0.5
    assert (find(family) >= 0).sum() >= 10  # without sketches
    assert (find(family, verify=True) >= 0).sum() == 0


def test_verified_links_name_only_records_they_were_compared_with():
    """A ~ B by band 0; B heads band 1's group of B, C, D. C ~ B but C is not ~ A (a chain): C
    is kept. D ~ B and D ~ A: D names A. F shares band 0 with A (not ~) and band 2 with R (~):
    F links to R, not to the lower A, and R stays kept (union-find joins all six through F).
    Sketches of 16 bytes: 12 equal bytes verify at 0.7 (estimate 0.749), 11 do not (0.682)."""
    keys = np.array([[1, 10, 20], [1, 11, 21], [2, 11, 22], [3, 11, 23], [4, 12, 30], [1, 13, 30]],
                    dtype=np.uint64)
    sketch = np.zeros((6, 16), dtype=np.uint8)  # A
    sketch[1, :3] = 1  # B: 13 equal bytes with A
    sketch[2, :3], sketch[2, 3:6] = 1, 2  # C: 13 with B, 10 with A
    sketch[3, :2] = 1  # D: 15 with B, 14 with A
    sketch[4] = 7  # R: 0 with A
    sketch[5, 2:] = 7  # F: 14 with R, 2 with A
    assert near_duplicates(keys).tolist() == [-1, 0, 0, 0, 0, 0]
    assert near_duplicates(keys, sketch, 0.7).tolist() == [-1, 0, -1, 0, -1, 4]


def test_near_duplicates_checks_the_verification_arguments():
    keys = np.zeros((2, 3), dtype=np.uint64)
    with pytest.raises(ValueError, match="sketches and threshold should be given together.*got sketches alone"):
        near_duplicates(keys, np.zeros((2, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="sketches should be a 2-D uint8 array"):
        near_duplicates(keys, np.zeros((2, 8), dtype=np.uint32), 0.7)
    with pytest.raises(ValueError, match=r"one row per record of keys \(2\), got 3"):
        near_duplicates(keys, np.zeros((3, 8), dtype=np.uint8), 0.7)
    with pytest.raises(ValueError, match=r"threshold=1.2 should be in \(0, 1\]"):
        near_duplicates(keys, np.zeros((2, 8), dtype=np.uint8), 1.2)


def test_clusters_are_connected_components_kept_at_their_lowest_index():
    sources, targets = np.array([4, 3, 5, 5]), np.array([1, 4, 0, 0])
    assert clusters(sources, targets, 7).tolist() == [-1, -1, -1, 1, 1, 0, -1]
    assert clusters(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 3).tolist() == [-1, -1, -1]
    assert clusters(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 0).tolist() == []


@pytest.mark.parametrize("sources, targets, n, match", [
    (np.array([0]), np.array([3]), 3, r"targets should hold record indices in \[0, n=3\), got 3..3"),
    (np.array([0.0]), np.array([1]), 3, "sources should be a 1-D integer array, got 1-D float64"),
    (np.array([0, 1]), np.array([1]), 3, "same length, got 2 and 1"),
    (np.array([0]), np.array([1]), -1, "n=-1 should be a whole number >= 0"),
])
def test_clusters_errors(sources, targets, n, match):
    with pytest.raises(ValueError, match=match):
        clusters(sources, targets, n)


def test_repeated_links_are_not_lost():
    """256 repeats of one link once summed to 0 in an int8 adjacency matrix."""
    assert clusters(np.zeros(256, dtype=np.int64), np.ones(256, dtype=np.int64), 2).tolist() == [-1, 0]


def test_near_duplicates_keeps_the_first_in_file_order_and_links_through_a_third():
    keys = np.array([[1, 10], [2, 20], [3, 30], [2, 40], [5, 40], [6, 60]], dtype=np.uint64)
    # 1 ~ 3 by band 0, 3 ~ 4 by band 1: 4 joins 1's cluster without sharing a band with it
    assert near_duplicates(keys).tolist() == [-1, -1, -1, 1, 1, -1]


def test_near_duplicates_leaves_empty_texts_alone():
    keys = band_keys(signatures(["", "", "Hello, world!", "hello world", ""], num_perm=16), 4, 4)
    assert near_duplicates(keys).tolist() == [-1, -1, -1, 2, -1]


def test_near_duplicates_of_zero_and_one_record():
    assert near_duplicates(np.zeros((0, 14), dtype=np.uint64)).tolist() == []
    assert near_duplicates(np.zeros((1, 14), dtype=np.uint64)).tolist() == [-1]
    assert find([]).tolist() == [] and find(["only one"]).tolist() == [-1]


def test_near_duplicates_accepts_int64_keys_and_rejects_others():
    keys = np.array([[7, 8], [7, 9]], dtype=np.int64)
    assert near_duplicates(keys).tolist() == [-1, 0]
    with pytest.raises(ValueError, match="2-D uint64 array"):
        near_duplicates(keys.astype(np.float64))
