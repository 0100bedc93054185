"""Test-set decontamination (`sftpick.curation.decontaminate`) on real records: 50 GSM8K
problems stand for a test set, the Alpaca-format records of `real_alpaca.json` for an unrelated
pool; copies and light edits of the GSM8K problems must be found, the rest must not."""
import json
import re
import string
import sys
from pathlib import Path

import numpy as np
import pytest

from sftpick.curation import decontaminate
from sftpick.curation.decontaminate import (DEFAULT_MIN_OVERLAP, DEFAULT_NGRAM, MIN_NGRAM,
                                            NgramIndex, normalise_words)
from sftpick.errors import DataError, OptionError

FIXTURES = Path(__file__).parent / "fixtures"
GSM8K = json.loads((FIXTURES / "gsm8k_test_sample.json").read_text())
ALPACA = json.loads((FIXTURES / "real_alpaca.json").read_text())
LABEL = "gsm8k_test.json"


def text(record: dict) -> str:
    return "\n".join(part for part in (record["instruction"], record["input"], record["output"]) if part)


def gsm8k_tests(field: str = "all") -> list[tuple[str, int, str]]:
    return [(LABEL, row, text(r) if field == "all" else r[field]) for row, r in enumerate(GSM8K)]


def reference(tests, texts, ngram=DEFAULT_NGRAM, min_overlap=DEFAULT_MIN_OVERLAP):
    """The rule in plain Python over sets of word tuples, to check the hashed index against."""
    def grams(words, n):
        return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}

    test_grams = []
    for _, _, test in tests:
        words = normalise_words(test)
        if len(words) >= ngram:
            test_grams.append(grams(words, ngram))
        else:
            test_grams.append({tuple(words)} if len(words) >= min(MIN_NGRAM, ngram) else set())
    lengths = {ngram} | {len(next(iter(g))) for g in test_grams if g}
    matched = []
    for pool_text in texts:
        words = normalise_words(pool_text)
        pool_grams = set().union(*(grams(words, n) for n in lengths))
        best, best_shared = None, 0
        for i, g in enumerate(test_grams):
            shared = len(g & pool_grams)
            if shared and shared >= min_overlap * len(g) - 1e-9 and shared > best_shared:
                best, best_shared = tests[i][:2], shared
        matched.append(best)
    return matched


def change_first_number(question: str) -> str:
    return re.sub(r"\d+", lambda m: str(int(m.group()) + 1), question, count=1)


def change_middle_word(question: str) -> str:
    words = question.split(" ")
    middle = len(words) // 2
    words[middle] = "zebra" if words[middle] != "zebra" else "okapi"
    return " ".join(words)


def test_normalise_words_as_the_janitor():
    # lm-eval's Janitor: ASCII lower-cased, string.punctuation deleted (not spaced), split on whitespace
    assert normalise_words("Natalia sold 48/2 = 24 clips in May. Don't!") == [
        "natalia", "sold", "482", "24", "clips", "in", "may", "dont"]
    assert normalise_words("Émile\u00a0paid $1,200\u2014twice.") == ["Émile", "paid", "1200\u2014twice"]
    assert normalise_words("  \t\n ") == []


def test_unicode_space_list_is_what_str_split_splits_on():
    spaces = {chr(c) for c in range(0x80, sys.maxunicode + 1) if chr(c).isspace()}
    listed = {chr(c) for c in range(0x80, sys.maxunicode + 1)
              if decontaminate._UNICODE_SPACE.fullmatch(chr(c))}
    assert listed == spaces


@pytest.mark.parametrize("extra", [
    "", "  tabs\tand\nnewlines\r\n", "odd\x1cascii\x1fspaces\x0b\x0c", "non\u00a0ascii\u3000spaces\u2028",
    "Ünïcode ÉMILE café 東京 🙂", "lone \ud800 surrogate", "punct-only !!! ... word"])
def test_fast_word_hashes_equal_the_plain_words(extra):
    """The bytes path hashes exactly the words `normalise_words` gives, whatever the spacing."""
    for record in ALPACA[:8] + GSM8K[:8]:
        raw = text(record) + " " + extra
        plain = " ".join(normalise_words(raw))
        hashes, rows = decontaminate._word_hashes([raw])
        expected, _ = decontaminate._word_hashes([plain])
        assert len(hashes) == len(normalise_words(raw)) and (rows == 0).all()
        np.testing.assert_array_equal(hashes, expected)


def test_exact_copies_are_found_with_their_label_and_row():
    index = NgramIndex.build(gsm8k_tests())
    pool = [text(r) for r in reversed(GSM8K)]
    assert index.match(pool) == [(LABEL, row) for row in reversed(range(len(GSM8K)))]
    assert index.found_.all() and index.n_tests == len(GSM8K)
    assert (index.n_grams_ > 0).all()


@pytest.mark.parametrize("edit", [change_first_number, change_middle_word])
def test_one_changed_number_or_word_is_found_when_13_words_are_left_in_a_row(edit):
    """Questions alone (GSM8K's are 30-80 words): a copy with one word changed still shares a
    13-gram when 13 unchanged words stand on one side of it."""
    index = NgramIndex.build(gsm8k_tests("instruction"))
    edited = [edit(r["instruction"]) for r in GSM8K]
    matched = index.match(edited)
    found = 0
    for row, (record, copy) in enumerate(zip(GSM8K, edited)):
        before, after = normalise_words(record["instruction"]), normalise_words(copy)
        assert len(before) == len(after) and before != after
        k = next(i for i, (a, b) in enumerate(zip(before, after)) if a != b)
        expected = k >= DEFAULT_NGRAM or len(before) - 1 - k >= DEFAULT_NGRAM
        assert matched[row] == ((LABEL, row) if expected else None), (row, k, len(before))
        found += expected
    assert found >= 0.9 * len(GSM8K)
    # with the solution kept in the record, every one is found
    full = NgramIndex.build(gsm8k_tests())
    assert full.match([edit(r["instruction"]) + "\n" + r["output"] for r in GSM8K]) == [
        (LABEL, row) for row in range(len(GSM8K))]


@pytest.mark.parametrize("change", [
    str.upper, str.lower,
    lambda t: " \n ".join(t.split()) + "\t\t",
    lambda t: t.translate(str.maketrans("", "", string.punctuation)),
    lambda t: t.replace(" ", ", ").replace("\n", "!\n\n"),
])
def test_case_whitespace_and_punctuation_changes_keep_every_ngram(change):
    index = NgramIndex.build(gsm8k_tests(), min_overlap=1.0)
    assert index.match([change(text(r)) for r in GSM8K]) == [(LABEL, row) for row in range(len(GSM8K))]


def test_a_test_record_inside_a_longer_record_is_found():
    index = NgramIndex.build(gsm8k_tests())
    pool = [f"{text(ALPACA[row % 26])}\n\nFor example: {text(r)}\n\n{text(ALPACA[(row + 7) % 26])}"
            for row, r in enumerate(GSM8K)]
    assert index.match(pool) == [(LABEL, row) for row in range(len(GSM8K))]


def test_unrelated_real_records_are_not_matched():
    """No two distinct problems of the sample share a 13-gram (in the whole GSM8K train split 52
    pairs do, mostly rewordings of one problem: docs/methods/decontamination.md), and no Alpaca,
    Toolformer or other GSM8K record of real_alpaca.json shares one with them."""
    tests = gsm8k_tests()
    for row in range(len(tests)):
        others = NgramIndex.build(tests[:row] + tests[row + 1:])
        assert others.match([tests[row][2]]) == [None], row
    index = NgramIndex.build(tests)
    assert index.match([text(r) for r in ALPACA]) == [None] * len(ALPACA)
    assert not index.found_.any()
    alpaca = NgramIndex.build([("alpaca.json", row, text(r)) for row, r in enumerate(ALPACA)])
    assert alpaca.match([text(r) for r in GSM8K]) == [None] * len(GSM8K)


def test_agrees_with_a_plain_python_reference():
    tests = gsm8k_tests() + [("alpaca.json", row, r["instruction"]) for row, r in enumerate(ALPACA)]
    halves = [" ".join(text(r).split()[: len(text(r).split()) // 2]) for r in GSM8K]
    pool = ([change_first_number(text(r)) for r in GSM8K] + halves + [text(r) for r in ALPACA]
            + [h + " " + text(r) for h, r in zip(halves[1:], GSM8K)])
    for ngram in (DEFAULT_NGRAM, 8, 20):
        for min_overlap in (0.0, 0.3, 0.6, 1.0):
            index = NgramIndex.build(tests, ngram=ngram, min_overlap=min_overlap)
            assert index.match(pool) == reference(tests, pool, ngram, min_overlap), (ngram, min_overlap)


def test_the_test_record_sharing_most_ngrams_wins_and_ties_go_to_the_first():
    short, long = sorted((text(r) for r in GSM8K[:2]), key=lambda t: len(t.split()))
    index = NgramIndex.build([("a.json", 0, short), ("b.json", 0, long)])
    assert index.match([short + "\n" + long]) == [("b.json", 0)]
    assert index.found_.tolist() == [False, True]
    twins = NgramIndex.build([("a.json", 3, short), ("b.json", 5, short)])
    assert twins.match([short]) == [("a.json", 3)]


def test_short_test_records_match_whole_from_8_words_and_never_below():
    """Real Alpaca instructions as the test set: one of 8-12 words has no 13-gram and is matched
    when all its words occur in a row; one of fewer than 8 words is not indexed."""
    tests = [("alpaca.json", row, r["instruction"]) for row, r in enumerate(ALPACA)]
    index = NgramIndex.build(tests)
    lengths = np.array([len(normalise_words(t)) for _, _, t in tests])
    short = (lengths >= MIN_NGRAM) & (lengths < DEFAULT_NGRAM)
    tiny = lengths < MIN_NGRAM
    assert short.any() and tiny.any()
    assert (index.n_grams_[short] == 1).all() and (index.n_grams_[tiny] == 0).all()

    matched = index.match([text(r).upper() for r in ALPACA])
    for row in np.flatnonzero(short):
        assert matched[row] == ("alpaca.json", row)
    for row in np.flatnonzero(tiny):
        assert matched[row] is None
    # one word short of the whole instruction is not a match
    row = int(np.flatnonzero(short)[0])
    assert index.match([" ".join(normalise_words(tests[row][2])[1:])]) == [None]
    # with ngram=5, a record of 5 to 7 words has its 5-grams
    assert (NgramIndex.build(tests, ngram=5).n_grams_[tiny & (lengths >= 5)] > 0).all()


def test_min_overlap_is_the_share_of_the_test_records_ngrams():
    record = GSM8K[0]
    whole = text(record)
    words = normalise_words(whole)
    n_grams = len({tuple(words[i:i + DEFAULT_NGRAM]) for i in range(len(words) - DEFAULT_NGRAM + 1)})
    part = record["instruction"]  # the question without its solution
    part_words = normalise_words(part)
    shared = len(part_words) - DEFAULT_NGRAM + 1  # every 13-gram of the question is the record's
    assert 0 < shared < n_grams
    tests = [(LABEL, 0, whole)]
    assert NgramIndex.build(tests).match([part]) == [(LABEL, 0)]
    assert NgramIndex.build(tests, min_overlap=shared / n_grams).match([part]) == [(LABEL, 0)]
    assert NgramIndex.build(tests, min_overlap=(shared + 1) / n_grams).match([part]) == [None]
    assert NgramIndex.build(tests, min_overlap=1.0).match([part, whole]) == [None, (LABEL, 0)]


def test_ngrams_do_not_cross_pool_records_or_batches(monkeypatch):
    monkeypatch.setattr(decontaminate, "_BATCH", 3)
    question = GSM8K[0]["instruction"].split()
    index = NgramIndex.build(gsm8k_tests("instruction"))
    pieces = [" ".join(question[:7]), " ".join(question[7:14])]  # 13 words only across the two
    pool = pieces + [text(ALPACA[0]), GSM8K[4]["instruction"], text(ALPACA[1]), GSM8K[2]["instruction"]]
    assert index.match(pool) == [None, None, None, (LABEL, 4), None, (LABEL, 2)]
    assert index.found_.sum() == 2


def test_fingerprint_follows_the_settings_and_the_tests():
    tests = gsm8k_tests()
    base = NgramIndex.build(tests).fingerprint()
    assert isinstance(base, str) and len(base) == 16
    assert NgramIndex.build(tests).fingerprint() == base
    edited = tests[:3] + [(LABEL, 3, change_first_number(tests[3][2]))] + tests[4:]
    others = [NgramIndex.build(tests, ngram=12), NgramIndex.build(tests, min_overlap=0.5),
              NgramIndex.build(tests[:-1]), NgramIndex.build(edited),
              NgramIndex.build([("other.json", row, t) for _, row, t in tests])]
    prints = [index.fingerprint() for index in others]
    assert base not in prints and len(set(prints)) == len(prints)


def test_empty_inputs():
    empty = NgramIndex.build([])
    assert empty.n_tests == 0 and empty.match([text(GSM8K[0])]) == [None]
    assert isinstance(empty.fingerprint(), str)
    index = NgramIndex.build(gsm8k_tests() + [("blank.json", 0, ""), ("blank.json", 1, "?!")])
    assert index.n_grams_[-2:].tolist() == [0, 0]
    assert index.match([]) == []
    assert index.match(["", "   ", "!!! ...", text(GSM8K[1])]) == [None, None, None, (LABEL, 1)]


@pytest.mark.parametrize(("options", "message"), [
    ({"ngram": 0}, r"ngram=0 should be an integer >= 1"),
    ({"ngram": "13"}, r"ngram='13' should be an integer"),
    ({"ngram": True}, r"ngram=True should be an integer"),
    ({"min_overlap": -0.1}, r"min_overlap=-0.1 should be a number in \[0, 1\]"),
    ({"min_overlap": 1.5}, r"min_overlap=1.5 should be a number in \[0, 1\]"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(OptionError, match=message):
        NgramIndex.build(gsm8k_tests(), **options)


@pytest.mark.parametrize("bad", [("a.json", 0), ("a.json", "0", "text"), (0, 0, "text"), ["a.json", 0, "t"]])
def test_bad_test_records_are_refused(bad):
    with pytest.raises(DataError, match=r"test record 1 is .*expected \(label: str, row: int, text: str\)"):
        NgramIndex.build([("a.json", 0, "fine"), bad])
