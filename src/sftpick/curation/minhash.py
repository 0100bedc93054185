"""Near duplicates: MinHash signatures of word n-gram shingles, grouped by LSH banding.

MinHash (Broder, "On the resemblance and containment of documents", 1997): for a random
permutation of the shingle universe, the probability that two shingle sets have the same
minimum is their Jaccard similarity, so the fraction of equal values among `num_perm`
minima estimates it (standard error sqrt(J(1-J)/num_perm)). LSH banding (Leskovec,
Rajaraman and Ullman, *Mining of Massive Datasets*, ch. 3.4): cut a signature into `bands`
bands of `rows` values; two records that agree on a whole band are candidates, which
happens with probability 1 - (1 - J**rows)**bands, an S-curve around the threshold.
`lsh_params` picks (bands, rows) as datasketch's `MinHashLSH` does (`_optimal_param`).

Implementation follows text-dedup (ChenghaoMou/text-dedup, `minhash.py`) and datasketch
(ekzhu/datasketch, `MinHash`): permutations h -> ((a*h + b) mod (2**61 - 1)) & (2**32 - 1)
over 32-bit shingle hashes, with (a, b) drawn from `np.random.RandomState(seed)` in
datasketch's order, so a datasketch `MinHash(num_perm, seed, hashfunc=<our shingle hash>)`
holds the same values. Unlike both, which loop over records, the permuted matrix is
computed for all shingles of a batch at once, in cache-sized blocks, and reduced per record
with `np.minimum.reduceat`. Candidates share a band key (found by sorting each band column);
without sketches, clusters are the connected components of "shares a band key" (text-dedup's
union-find, scipy's `connected_components`). With b-bit sketches (Li and König, "b-Bit
Minwise Hashing", WWW 2010; one byte a permutation), each link is verified by its Jaccard
estimate and chains are cut (`lsh.near_duplicates`): the LSH false positives of records that
share a long block (GPTeacher Toolformer) and union-find's chaining through them took the
record precision from 0.64 to 0.97 (docs/methods/dedup.md).

Defaults of the anchors: data-juicer's `document_minhash_deduplicator` 5-word shingles, 256
permutations, Jaccard 0.7; DataFlow's `MinHashDeduplicateFilter` 5-grams (of characters),
128, 0.9; text-dedup 5-word shingles, 250 permutations (240 in its current example config),
0.7. sftpick: 5-word shingles, 128 permutations, 0.7.
0.7 because one changed word in a 50-word record changes up to 5 of its 46 shingles
(Jaccard 41/51 = 0.80): 0.7 finds it, 0.9 misses it. 128 permutations because they run 1.6
times as fast as 256 and keep 14 band keys and 128 sketch bytes a record instead of 25 and
256, for the same record recall with sketches on 3,000 real records with planted copies
(0.929 against 0.926) and a little less precision (record 0.973 against 0.985, pair 0.950
against 0.973; docs/methods/dedup.md, benchmarks/near_dup_quality.py).
"""
from __future__ import annotations

import sys
import unicodedata
from functools import cache

import numpy as np

DEFAULT_NGRAM = 5
DEFAULT_PERMUTATIONS = 128
DEFAULT_THRESHOLD = 0.7

MAX_HASH = np.uint64(2**32 - 1)  # every signature value is below it; an empty text's are all it
MERSENNE_PRIME = np.uint64(2**61 - 1)
EMPTY_KEY = np.uint64(2**64 - 1)  # the band key of an all-MAX_HASH band: matches nothing

SKETCH_BITS = 8  # bits a signature value keeps in a sketch
SKETCH_MULTIPLIER = np.uint32(0x9E3779B1)  # odd: 2**32 / golden ratio (Knuth's multiplicative hashing)

_BLOCK_VALUES = 2**19  # values per block of the permuted matrix (4 MiB as uint64); 2**16-2**20 ran alike
_BATCH_CHARS = 2**20  # characters hashed at a time: ~35 MB of temporary arrays; larger was no faster
_WORD_MULTIPLIER = np.uint64(0x100000001B3)  # FNV-1's 64-bit prime
_SHINGLE_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: the polynomial step is a bijection


def normalise(text: str) -> str:
    """Lowercase, drop punctuation and symbols, collapse whitespace.

    text-dedup's `normalize` (after cc_net: lowercase, strip Unicode punctuation, symbols and
    control characters) without its digits-to-0 step: in math records the numbers are the
    content, and a changed number must stay a (small) difference. Whitespace and control
    characters that are whitespace separate words; other format and control characters
    (zero-width space, soft hyphen) are dropped. data-juicer's default ("space" tokens,
    lowercase) keeps punctuation, so "word," and "word" differ there and not here.
    """
    if not isinstance(text, str):
        raise TypeError(f"text should be a str, got {type(text).__name__}.")
    return " ".join(_words(text))


def signatures(texts: list[str], *, num_perm: int = DEFAULT_PERMUTATIONS, ngram: int = DEFAULT_NGRAM,
               seed: int = 1) -> np.ndarray:
    """MinHash signatures, uint32 [len(texts), num_perm], of the texts' word n-gram shingles.

    Shingles are the `ngram`-word windows of `normalise(text)`; a text of fewer words is one
    shingle of all its words. A text with no words has no shingles and gets MAX_HASH
    (2**32 - 1) everywhere, datasketch's empty MinHash, whose band keys are EMPTY_KEY, which
    `lsh.near_duplicates` never links: an empty text is nobody's duplicate.

    Shingle hash, all in numpy over the batch's UTF-8 bytes: each word is hashed as a
    polynomial of its bytes mod 2**64, the `ngram` word hashes of a shingle are combined as a
    polynomial mod 2**64, each finalised with MurmurHash3's fmix64; the high 32 bits of the
    shingle's are the value that is permuted (32 bits, as datasketch's sha1_hash32). Stable
    across processes and platforms (Python's `hash` is salted per process), and about twice
    as fast as a dict of distinct words hashed with hashlib (measured: 45,000 against 25,000
    records a second for this step).
    """
    if not isinstance(texts, list):
        raise TypeError(f"texts should be a list of str, got {type(texts).__name__}.")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] should be a str, got {type(text).__name__}.")
    _check_positive(num_perm=num_perm, ngram=ngram)
    a, b = _permutations(num_perm, seed)
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    start = 0
    while start < len(texts):  # batches of about _BATCH_CHARS characters bound the byte arrays
        before = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, before + _BATCH_CHARS, side="right")), start + 1)
        hashes, counts = _shingle_hashes(texts[start:stop], ngram)
        out[start:stop] = _min_hash(hashes, counts, a, b)
        start = stop
    return out


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows), bands * rows <= num_perm, that minimise the false positive area (the
    candidate probability integrated over Jaccard [0, threshold]) plus the false negative
    area (its complement over [threshold, 1]), both weighted 0.5: datasketch's
    `MinHashLSH._optimal_param` (ekzhu/datasketch, lsh.py), also used by text-dedup and
    data-juicer. At threshold 1 that is one band of every value: equal shingle sets only."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold={threshold!r} should be in (0, 1].")
    _check_positive(num_perm=num_perm)
    return _optimal_param(float(threshold), int(num_perm))


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One uint64 key per band, [n, bands]: a hash of the band's `rows` values, seeded with
    the band's index so that equal values in different bands give different keys. A band
    whose values are all MAX_HASH (an empty text's) gets EMPTY_KEY, which no other band gets.
    Values past bands * rows are not used, as in datasketch."""
    sigs = np.asarray(sigs)
    if sigs.ndim != 2 or sigs.dtype != np.uint32:
        raise ValueError(f"sigs should be a 2-D uint32 array (from signatures), got {sigs.ndim}-D {sigs.dtype}.")
    _check_positive(bands=bands, rows=rows)
    if bands * rows > sigs.shape[1]:
        raise ValueError(f"bands * rows = {bands * rows} should be <= num_perm={sigs.shape[1]}.")
    keys = np.empty((len(sigs), bands), dtype=np.uint64)
    for band in range(bands):
        values = sigs[:, band * rows:(band + 1) * rows].astype(np.uint64)
        key = np.full(len(sigs), _fmix64(np.array([band + 1], dtype=np.uint64))[0])
        for j in range(0, rows, 2):  # two 32-bit values per 64-bit step
            word = values[:, j] << np.uint64(32)
            if j + 1 < rows:
                word |= values[:, j + 1]
            key = _fmix64(key ^ word)
        key[key == EMPTY_KEY] -= np.uint64(1)  # EMPTY_KEY is kept for empty bands
        key[(values == MAX_HASH).all(axis=1)] = EMPTY_KEY
        keys[:, band] = key
    return keys


def sketches(signatures: np.ndarray) -> np.ndarray:
    """b-bit MinHash sketches, uint8 [n, num_perm], b = 8 (Li and König, "b-Bit Minwise
    Hashing", WWW 2010): 128 bytes a record at 128 permutations against 512 for the signature.
    Two bytes are equal when the signature values are (with probability J) or, for different
    values, by chance (2**-8), so from the fraction f of equal bytes J = (f - 2**-8) / (1 -
    2**-8), with standard error sqrt(f(1-f)/num_perm) / (1 - 2**-8) for sets much smaller
    than the 2**32 hash values (their Theorem 1): 0.4% more than the signature's
    sqrt(J(1-J)/num_perm) at J = 0.7. `lsh.near_duplicates` verifies its links with them.

    Each byte is the top byte of the value times SKETCH_MULTIPLIER mod 2**32 (multiplicative
    hashing), not the value's lowest 8 bits as in the paper and datasketch's `bBitMinHash`:
    the paper assumes random permutations, and under datasketch's (a*h + b) mod (2**61 - 1)
    the lowest byte of a value is that of a*h + b plus a carry of 0-7, a function of the low
    bytes of a, h and b, which for even a takes fewer values. Measured on edited real pairs,
    different values had equal lowest bytes 1.17-1.43 times as often as 2**-8 (1.8 times for
    even a), biasing the estimate up; the multiplied top byte, 0.96-1.05 times."""
    signatures = np.asarray(signatures)
    if signatures.ndim != 2 or signatures.dtype != np.uint32:
        raise ValueError(f"signatures should be a 2-D uint32 array (from signatures), "
                         f"got {signatures.ndim}-D {signatures.dtype}.")
    return ((signatures * SKETCH_MULTIPLIER) >> np.uint32(32 - SKETCH_BITS)).astype(np.uint8)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}={value!r} should be a whole number >= 1.")


@cache
def _optimal_param(threshold: float, num_perm: int) -> tuple[int, int]:
    """No input validation."""
    from scipy.integrate import quad  # loaded when bands are chosen, not with the CLI

    best, params = float("inf"), (0, 0)
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            false_positive, _ = quad(lambda s: 1 - (1 - s ** rows) ** bands, 0.0, threshold)
            false_negative, _ = quad(lambda s: (1 - s ** rows) ** bands, threshold, 1.0)
            error = 0.5 * false_positive + 0.5 * false_negative
            if error < best:
                best, params = error, (bands, rows)
    return params


@cache
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's (a, b): one scalar draw of a, then of b, per permutation."""
    gen = np.random.RandomState(seed)
    pairs = [(gen.randint(1, MERSENNE_PRIME, dtype=np.uint64), gen.randint(0, MERSENNE_PRIME, dtype=np.uint64))
             for _ in range(num_perm)]
    a, b = np.array(pairs, dtype=np.uint64).reshape(num_perm, 2).T.copy()
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


@cache
def _normalisation_table() -> dict[int, str | None]:
    """str.translate table: Unicode punctuation (P*), symbols (S*), and control, format and
    surrogate characters that are not whitespace are deleted; non-ASCII whitespace becomes a
    space (so that in UTF-8 every separator is a byte <= 32). Built once, in about 0.3 s."""
    table: dict[int, str | None] = {}
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        category = unicodedata.category(char)
        if char.isspace():
            if code > 127:
                table[code] = " "
        elif category[0] in "PS" or category in ("Cc", "Cf", "Cs"):  # Cs: lone surrogates, not encodable
            table[code] = None
    return table


def _words(text: str) -> list[str]:
    """The words of normalise(text). No input validation."""
    return text.lower().translate(_normalisation_table()).split()


def _word_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit hash of every word of every text, concatenated in text order, and each
    text's number of words. No input validation.

    The normalised texts are joined by NUL (which normalisation deletes) and read as UTF-8
    bytes: word bytes are those > 32 (multi-byte UTF-8 sequences are all >= 128). A word's
    hash is fmix64(sum_k byte_k * Q**k + length), k counted from the word's first byte.
    """
    table = _normalisation_table()
    data = np.frombuffer("\0".join([text.lower().translate(table) for text in texts]).encode(), dtype=np.uint8)
    in_word = data > 32
    edges = np.diff(in_word.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    words_per_text = np.bincount(np.searchsorted(np.flatnonzero(data == 0), starts), minlength=len(texts))
    if len(starts) == 0:
        return np.zeros(0, dtype=np.uint64), words_per_text
    lengths = ends - starts
    offsets = np.cumsum(lengths) - lengths  # of each word's first byte among the word bytes
    position = np.arange(offsets[-1] + lengths[-1]) - np.repeat(offsets, lengths)
    powers = np.cumprod(np.r_[np.uint64(1), np.full(lengths.max() - 1, _WORD_MULTIPLIER)], dtype=np.uint64)
    weighted = data[in_word].astype(np.uint64) * powers[position]
    return _fmix64(np.add.reduceat(weighted, offsets) + lengths.astype(np.uint64)), words_per_text


def _shingle_hashes(texts: list[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """The 32-bit hash (as uint64) of every shingle of every text, concatenated in text
    order, and each text's number of shingles. No input validation."""
    word_hashes, lengths = _word_hashes(texts)
    window = np.minimum(lengths, ngram)  # a short text is one shingle of all its words
    counts = np.where(lengths > 0, lengths - window + 1, 0)
    word_starts = np.cumsum(lengths) - lengths
    shingle_starts = np.cumsum(counts) - counts
    starts = np.arange(counts.sum()) + np.repeat(word_starts - shingle_starts, counts)
    hashes = word_hashes[starts]
    short = np.repeat(window, counts) if (window < ngram).any() else None
    last = max(len(word_hashes) - 1, 0)
    for j in range(1, ngram):
        step = hashes * _SHINGLE_MULTIPLIER + word_hashes[np.minimum(starts + j, last)]
        hashes = step if short is None else np.where(j < short, step, hashes)
    return _fmix64(hashes) >> np.uint64(32), counts


def _min_hash(hashes: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per record, the minimum over its shingles of each permutation
    ((a*h + b) mod 2**64 mod (2**61 - 1)) & (2**32 - 1), exactly as datasketch computes it
    (numpy uint64 arithmetic wraps). No input validation."""
    out = np.full((len(counts), len(a)), MAX_HASH, dtype=np.uint32)
    nonempty = np.flatnonzero(counts)
    starts = (np.cumsum(counts) - counts)[nonempty]  # strictly increasing
    size = max(1, _BLOCK_VALUES // len(a))
    # permutations x shingles: each permutation's row is contiguous, for the in-place ufuncs and reduceat
    permuted = np.empty((len(a), size), dtype=np.uint64)
    spare = np.empty_like(permuted)
    low = np.empty(permuted.shape, dtype=np.uint32)
    a, b, shift, one = a[:, None], b[:, None], np.uint64(61), np.uint64(1)
    for lo in range(0, len(hashes), size):
        block = hashes[lo:lo + size]
        x, t, y = permuted[:, :len(block)], spare[:, :len(block)], low[:, :len(block)]
        np.multiply(a, block, out=x)
        x += b
        # x mod p for p = 2**61 - 1: fold the high bits down, then subtract p once if needed
        np.bitwise_and(x, MERSENNE_PRIME, out=t)
        x >>= shift
        x += t  # now < 2**61 + 7
        np.add(x, one, out=t)
        t >>= shift  # 1 where x >= p
        x += t  # x + 1 - 2**61 = x - p in the low 61 bits, and only the low 32 are kept
        np.copyto(y, x, casting="unsafe")  # the low 32 bits
        first = np.searchsorted(starts, lo, side="right") - 1
        last = np.searchsorted(starts, lo + len(block), side="left")
        offsets = np.maximum(starts[first:last] - lo, 0)
        rows = nonempty[first:last]
        out[rows] = np.minimum(out[rows], np.minimum.reduceat(y, offsets, axis=1).T)
    return out


def _fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (a bijection on uint64). No input validation."""
    x = x ^ (x >> np.uint64(33))
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x
