"""Test-set decontamination: find pool records that share long word n-grams with a test record.

The rule is GPT-3's (Brown et al., *Language Models are Few-Shot Learners*, arXiv 2005.14165,
appendix C) as EleutherAI's lm-evaluation-harness implements it
(`lm_eval/decontamination/janitor.py` and `decontaminate.py`; `docs/decontamination.md`):

- a "word" is a whitespace-delimited token after the janitor's normalisation: ASCII letters
  lower-cased, ASCII punctuation (`string.punctuation`) deleted (`normalise_words`);
- a pool record is contaminated by a test record when they share at least one 13-gram of such
  words (`DEFAULT_NGRAM`; the harness uses 13 everywhere, GPT-3 used N between 8 and 13 per
  benchmark, the 5th percentile of its examples' lengths: 13 for GSM8K, whose questions are
  23 words long at the 5th percentile of its train split, 42 at the median);
- a test record shorter than N words has no N-gram, so the harness can never flag it. GPT-3
  chose N no longer than 95% of a benchmark's examples, and never below 8 words, since shorter
  N-grams collided spuriously. sftpick keeps that floor: a test record of 8 to N-1 words is
  matched when its whole word sequence occurs in a pool record; one of fewer than 8 words
  (`MIN_NGRAM`) is not indexed and is never matched (its `n_grams_` is 0).
- the janitor's `clean` cuts the colliding n-gram and 200 characters around it out of a long
  pre-training document (GPT-3's training-set filter); an SFT record is short, so a matched
  record is dropped whole, as the harness drops a dirty test document.

`min_overlap` adds allenai/open-instruct's overlap ratio (`decontamination/search.py`,
`--ngram_size` and `--match_threshold`): a pool record matches a test record only when at least
that fraction of the test record's distinct n-grams occur in it. open-instruct measures the
fraction of the test record's spaCy tokens covered by shared n-grams and keeps scores above the
threshold; here it is the fraction of n-grams, at or above. 0 (the default) means any one n-gram.

Not chosen as the default: open-instruct's ratio needs a threshold that its README leaves to the
user, and a ratio lets a pool record that copies only part of a long test record through;
huggingface/cosmopedia (`decontamination/decontaminate.py`) retrieves candidates by 10-grams
of `\\w+` tokens and then drops a candidate only when `difflib.SequenceMatcher` finds more than
half of the benchmark text in it, a second, quadratic pass per candidate, and its 10-grams
collide more often on shared phrasing. Paraphrases are not caught by any of these.

N-grams are hashed to uint64 (MurmurHash3's 64-bit finaliser over a polynomial of per-word
hashes: stable across runs, unlike Python's salted `hash()`), kept sorted with the index of the
test record that owns each one, and a batch of pool records is matched with `np.searchsorted`.
"""
from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Iterator, Sequence

import numpy as np

from ..errors import DataError, OptionError

DEFAULT_NGRAM = 13
DEFAULT_MIN_OVERLAP = 0.0
MIN_NGRAM = 8  # GPT-3's floor on N: shorter test records are not matched at all

_BATCH = 2048  # pool records hashed at once: bounds the memory of the per-word arrays
_HASH_SCHEME = "fmix64-poly-v1"  # part of the fingerprint: change it when hashing changes
_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd, so multiplication by it is invertible mod 2**64
_SEED = np.uint64(0x243F6A8885A308D3)
_FMIX1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX2 = np.uint64(0xC4CEB9FE1A85EC53)

# The janitor's table: A-Z to a-z, `string.punctuation` deleted; everything else kept.
_JANITOR = str.maketrans(string.ascii_lowercase + string.ascii_uppercase,
                         string.ascii_lowercase * 2, string.punctuation)
_BYTES_JANITOR = bytes.maketrans(string.ascii_uppercase.encode(), string.ascii_lowercase.encode())
_PUNCTUATION = string.punctuation.encode()
_IS_SPACE = np.array([byte < 128 and chr(byte).isspace() for byte in range(256)])
# The non-ASCII characters for which str.isspace() is true (tests check the list).
_UNICODE_SPACE = re.compile("[\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


def normalise_words(text: str) -> list[str]:
    """The words of `text` as lm-evaluation-harness's `Janitor.normalize_string` and
    `word_ngrams` see them: ASCII lower-cased, ASCII punctuation deleted (so `48/2` is `482`
    and `don't` is `dont`), split on whitespace."""
    return text.translate(_JANITOR).split()


class NgramIndex:
    """The hashed n-grams of some test records, to match pool records against.

    Make one with `NgramIndex.build`. Fitted state: `hashes_` (sorted uint64 n-gram hashes),
    `owners_` (the test record of each), `n_grams_` (distinct n-grams per test record: 0 for
    one too short to match), `found_` (the test records that `match` has attributed some pool
    record to so far: `found_.sum()` of `n_tests` were found in the pool).
    """

    def __init__(self, *, ngram: int, min_overlap: float, tests: list[tuple[str, int]],
                 hashes: np.ndarray, owners: np.ndarray, n_grams: np.ndarray,
                 lengths: list[int]) -> None:
        self.ngram = ngram
        self.min_overlap = min_overlap
        self.tests = tests
        self.hashes_ = hashes
        self.owners_ = owners
        self.n_grams_ = n_grams
        self.found_ = np.zeros(len(tests), dtype=bool)
        self.lengths_ = lengths  # n-gram lengths hashed: N and each short test record's length
        # A one-byte-per-slot table on the hashes' top bits, >= 8 slots per test n-gram: most
        # pool n-grams miss it, and only the rest pay for a binary search in `hashes_`.
        bits = int(np.clip(np.ceil(np.log2(max(len(hashes), 1) * 8)), 10, 26))
        self._shift = np.uint64(64 - bits)
        self._maybe = np.zeros(1 << bits, dtype=bool)
        self._maybe[hashes >> self._shift] = True

    @property
    def n_tests(self) -> int:
        """How many test records were indexed (including those too short to match)."""
        return len(self.tests)

    @classmethod
    def build(cls, tests: Sequence[tuple[str, int, str]], *, ngram: int = DEFAULT_NGRAM,
              min_overlap: float = DEFAULT_MIN_OVERLAP) -> NgramIndex:
        """Index `tests`, each (label, row, text): label names its source (e.g. the file),
        row its place there; both come back from `match`."""
        if isinstance(ngram, bool) or not isinstance(ngram, (int, np.integer)) or ngram < 1:
            raise OptionError(f"ngram={ngram!r} should be an integer >= 1 "
                              f"(words per n-gram; the default is {DEFAULT_NGRAM}).")
        if (isinstance(min_overlap, bool) or not isinstance(min_overlap, (int, float, np.number))
                or not 0.0 <= min_overlap <= 1.0):
            raise OptionError(f"min_overlap={min_overlap!r} should be a number in [0, 1] "
                              "(the fraction of a test record's n-grams found in a pool record).")
        for i, test in enumerate(tests):
            if (not isinstance(test, tuple) or len(test) != 3 or not isinstance(test[0], str)
                    or not isinstance(test[1], (int, np.integer)) or not isinstance(test[2], str)):
                raise DataError(f"test record {i} is {test!r:.80}; expected (label: str, "
                                "row: int, text: str).")

        word_hashes, record = _word_hashes([text for _, _, text in tests])
        counts = np.bincount(record, minlength=len(tests))
        starts = np.cumsum(counts) - counts
        short_floor = min(MIN_NGRAM, ngram)
        short_lengths = {int(n) for n in counts if short_floor <= n < ngram}

        owner_parts, hash_parts = [], []
        for n, hashed in _rolling_hashes(word_hashes, sorted(short_lengths | {ngram})):
            if n == ngram:
                keep = record[:len(hashed)] == record[n - 1:]
                owner_parts.append(record[:len(hashed)][keep])
                hash_parts.append(hashed[keep])
            else:  # the records of exactly n words: their one gram is the whole record
                whole = np.flatnonzero(counts == n)
                owner_parts.append(whole)
                hash_parts.append(hashed[starts[whole]])
        owners = np.concatenate(owner_parts) if owner_parts else np.zeros(0, np.int64)
        hashes = np.concatenate(hash_parts) if hash_parts else np.zeros(0, np.uint64)
        hashes, owners = _unique_pairs(hashes, owners)  # sorted by hash, then owner
        n_grams = np.bincount(owners, minlength=len(tests))
        return cls(ngram=int(ngram), min_overlap=float(min_overlap),
                   tests=[(label, int(row)) for label, row, _ in tests],
                   hashes=hashes, owners=owners, n_grams=n_grams,
                   lengths=sorted(short_lengths | {ngram}))

    def match(self, texts: Sequence[str]) -> list[tuple[str, int] | None]:
        """For each pool text, the (label, row) of the test record it is contaminated by, or
        None. Of several, the one sharing the most n-grams with it; ties go to the first built.
        Marks the test records found in `found_`."""
        matched: list[tuple[str, int] | None] = []
        for start in range(0, len(texts), _BATCH):
            best = self._match_batch(texts[start:start + _BATCH])
            self.found_[best[best >= 0]] = True
            matched.extend(self.tests[b] if b >= 0 else None for b in best.tolist())
        return matched

    def fingerprint(self) -> str:
        """A short hash of the settings, the test n-grams and the tests' (label, row): the
        same fingerprint means `match` gives the same answers."""
        digest = hashlib.sha256(repr((_HASH_SCHEME, self.ngram, self.min_overlap,
                                      self.tests)).encode())
        digest.update(self.hashes_.tobytes())
        digest.update(self.owners_.tobytes())
        return digest.hexdigest()[:16]

    def _match_batch(self, texts: Sequence[str]) -> np.ndarray:
        """The index of the best test record for each text, -1 for none (no input validation)."""
        best = np.full(len(texts), -1, dtype=np.int64)
        if not len(self.hashes_):
            return best
        word_hashes, record = _word_hashes(texts)

        pool_parts, hash_parts = [], []
        for n, hashed in _rolling_hashes(word_hashes, self.lengths_):
            maybe = np.flatnonzero(self._maybe[hashed >> self._shift]
                                   & (record[:len(hashed)] == record[n - 1:]))
            hashed, pool = hashed[maybe], record[maybe]
            at = np.minimum(np.searchsorted(self.hashes_, hashed), len(self.hashes_) - 1)
            hit = self.hashes_[at] == hashed
            pool_parts.append(pool[hit])
            hash_parts.append(hashed[hit])
        if not pool_parts:
            return best
        hashes, pool = _unique_pairs(np.concatenate(hash_parts), np.concatenate(pool_parts))
        if not len(hashes):
            return best

        # Each shared hash counts once for every test record that owns it.
        lo = np.searchsorted(self.hashes_, hashes, side="left")
        hi = np.searchsorted(self.hashes_, hashes, side="right")
        per_hash = hi - lo
        offsets = np.arange(per_hash.sum()) - np.repeat(np.cumsum(per_hash) - per_hash, per_hash)
        owner = self.owners_[np.repeat(lo, per_hash) + offsets]
        key, shared = np.unique(np.repeat(pool, per_hash) * self.n_tests + owner,
                                return_counts=True)
        pool, owner = np.divmod(key, self.n_tests)

        enough = shared >= self.min_overlap * self.n_grams_[owner] - 1e-9
        pool, owner, shared = pool[enough], owner[enough], shared[enough]
        order = np.lexsort((owner, -shared, pool))  # per pool record: most shared, then first
        pool, owner = pool[order], owner[order]
        first = np.ones(len(pool), dtype=bool)
        first[1:] = pool[1:] != pool[:-1]
        best[pool[first]] = owner[first]
        return best


def _normalised_bytes(text: str) -> bytes:
    """`text` as UTF-8 with the janitor's changes, whose whitespace-separated words are
    `normalise_words(text)`. `bytes.translate` is several times faster than `str.translate`,
    and the janitor changes ASCII only, which UTF-8 leaves as single bytes; `str.split`'s
    non-ASCII spaces become plain spaces first."""
    if not text.isascii():
        text = _UNICODE_SPACE.sub(" ", text)
    return text.encode("utf-8", "surrogatepass").translate(_BYTES_JANITOR, _PUNCTUATION)


def _word_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """A stable uint64 for each word of the texts, in order, and the index of its text (no
    input validation).

    A word is a maximal run of non-space bytes (`_IS_SPACE`: what `str.split` splits ASCII
    on); its hash is a polynomial in `_MUL` over its bytes, each weighted by its place in the
    word, summed with `np.add.reduceat` and mixed by `_fmix64`. It depends on the word alone."""
    parts = [_normalised_bytes(text) for text in texts]
    sizes = np.fromiter((len(part) + 1 for part in parts), dtype=np.int64, count=len(parts))
    text_starts = np.cumsum(sizes) - sizes
    data = np.frombuffer(b" ".join(parts) + b" ", dtype=np.uint8)
    space = _IS_SPACE[data]
    starts = np.flatnonzero(~space & np.concatenate(([True], space[:-1])))
    if not len(starts):
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    first_words = np.searchsorted(starts, text_starts)
    record = np.repeat(np.arange(len(parts)), np.diff(np.append(first_words, len(starts))))

    # From the first word on, every byte belongs to the segment of the word it ends or follows.
    data, space, starts = data[starts[0]:], space[starts[0]:], starts - starts[0]
    segment = np.diff(np.append(starts, len(data)))
    place = np.arange(len(data)) - np.repeat(starts, segment)
    weighted = (data.astype(np.uint64) + np.uint64(1)) * _powers(int(segment.max()))[place]
    weighted[space] = 0
    return _fmix64(np.add.reduceat(weighted, starts)), record


def _rolling_hashes(word_hashes: np.ndarray, lengths: Sequence[int]
                    ) -> Iterator[tuple[int, np.ndarray]]:
    """For each n in `lengths` (ascending), (n, h) with h[i] the hash of words i..i+n-1 of the
    concatenated records; the caller drops the i whose n-gram crosses a record boundary."""
    acc = np.full(len(word_hashes), _SEED, dtype=np.uint64)
    wanted = set(lengths)
    for n in range(1, max(lengths, default=0) + 1):
        if n > len(word_hashes):
            return
        acc = acc[:len(word_hashes) - n + 1] * _MUL + word_hashes[n - 1:]
        if n in wanted:
            yield n, _fmix64(acc)


def _fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (Appleby), elementwise: a bijection that spreads bits."""
    x = x ^ (x >> np.uint64(33))
    x = x * _FMIX1
    x = x ^ (x >> np.uint64(33))
    x = x * _FMIX2
    return x ^ (x >> np.uint64(33))


def _powers(n: int) -> np.ndarray:
    """`_MUL ** k` mod 2**64 for k < n."""
    return np.cumprod(np.concatenate(([np.uint64(1)], np.full(n - 1, _MUL))), dtype=np.uint64)


def _unique_pairs(hashes: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (hash, other) pairs, sorted by hash then other (no input validation)."""
    order = np.lexsort((other, hashes))
    hashes, other = hashes[order], other[order]
    keep = np.ones(len(hashes), dtype=bool)
    keep[1:] = (hashes[1:] != hashes[:-1]) | (other[1:] != other[:-1])
    return hashes[keep], other[keep]
