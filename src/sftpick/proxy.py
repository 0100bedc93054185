"""Proxy check: score a dataset with a small (weak) model only after checking, on a seeded
random sample, that it ranks the data like the stronger model it stands in for.

Superfiltering (Li et al., ACL 2024, arXiv 2402.00530) shows that IFD from a weak model
(GPT-2) ranks instruction data consistently with IFD from much larger models, so the weak
model can filter for the strong one. Whether that holds for a given pair of models and a
given dataset is an empirical question; this module measures it before the full run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from .compare import Agreement, compare
from .engines.stream import score_examples
from .errors import DataError, OptionError
from .examples import Example
from .io import read_dataset
from .models import DEFAULT_LM
from .options import check_options, option, settings_from
from .writers import atomic_write, sibling

DEFAULT_CHECK = 500


@dataclass
class ProxyCheck:
    strong: str
    weak: str
    sample: int  # records drawn
    seed: int
    min_agreement: float | None  # on Spearman rho
    agreement: Agreement

    @property
    def passed(self) -> bool:
        return self.min_agreement is None or self.agreement.spearman >= self.min_agreement

    def to_dict(self) -> dict:
        return {"strong": self.strong, "weak": self.weak, "sample": self.sample, "seed": self.seed,
                "min_agreement": self.min_agreement, "passed": self.passed,
                "agreement": self.agreement.to_dict()}


def sample_examples(examples: list[Example], n: int, seed: int) -> list[Example]:
    """`n` examples drawn without replacement with `seed`, in input order."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(examples), size=min(n, len(examples)), replace=False))
    return [examples[i] for i in chosen]


def agreement_on(examples: list[Example], strong, weak, *, column: str = "ifd",
                 cache_dir: Path | None = None, progress: bool = True) -> Agreement:
    """Score `examples` with both scorers and compare their `column`, rows matched by `row`;
    no input validation."""
    tables = []
    for scorer in (strong, weak):
        columns, _, _ = score_examples(examples, [scorer], cache_dir=cache_dir, progress=progress)
        if column not in columns:
            raise OptionError(f"column={column!r} is not produced by the scorer {scorer.name!r}")
        tables.append(pa.table({"row": columns["row"], column: columns[column]}))
    return compare(tables[0], tables[1], column=column, key="row")


@dataclass(kw_only=True)
class ProxySettings:
    """`score --proxy`: score with a weak model once it agrees with the strong one on a sample."""

    proxy: str | None = option(None, "Weak model that scores everything once it agrees with --model on a sample.")
    check: int = option(DEFAULT_CHECK, "Records sampled (seed 0) for the --proxy check.", ge=2)
    min_agreement: float | None = option(None, "Stop when the proxy's Spearman rho on the sample is below this.",
                                         ge=-1, le=1, what="a Spearman rho")


def score_with_proxy(data: str | Path, output: str | Path, *, proxy: str, check: int = DEFAULT_CHECK,
                     min_agreement: float | None = None, seed: int = 0, proxy_options: dict | None = None,
                     on_check: Callable[[ProxyCheck], None] | None = None, **options):
    """Check that `proxy` (weak) agrees with `model` (strong, from `options`) on `check` sampled
    records, then score the whole dataset with `proxy`. Raises DataError when Spearman rho is
    below `min_agreement`. Writes the check beside the scores (`<output stem>.proxy.json`).
    `proxy_options` override `options` for the weak model only (e.g. another template);
    `on_check` is called with the check's figures before the decision (the CLI prints them);
    the other `options` are `score`'s (settings and scorer options) for the full run (the
    check's sample is scored here)."""
    from .scoring import ScoreSettings, build_scorers, engine_options, score

    check_options(ProxySettings(proxy=proxy, check=check, min_agreement=min_agreement))
    settings, scorer_options = settings_from(ScoreSettings, {"data": data, "output": output, **options})
    settings.check(device=scorer_options.get("device"))
    settings.scorers = settings.scorers or ["ifd"]
    scorer_options = engine_options(settings, scorer_options)
    model = scorer_options.get("model") or DEFAULT_LM
    weak_options = {**scorer_options, **(proxy_options or {}), "model": proxy}
    dataset = read_dataset(data, settings.fmt)
    sample = sample_examples(dataset.examples, check, seed)
    cache_dir = Path(str(output) + ".cache")
    strong = _scorer_of(build_scorers(settings.scorers, {**scorer_options, "model": model}), "ifd")
    weak = _scorer_of(build_scorers(settings.scorers, weak_options), "ifd")
    result = ProxyCheck(model, proxy, len(sample), seed, min_agreement,
                        agreement_on(sample, strong, weak, cache_dir=cache_dir, progress=settings.progress))
    atomic_write(sibling(output, ".proxy.json"), json.dumps(result.to_dict(), indent=2))
    if on_check is not None:
        on_check(result)
    if not result.passed:
        raise DataError(
            f"proxy {proxy!r} disagrees with {model!r}: Spearman rho = {result.agreement.spearman:.3f} on "
            f"{result.agreement.n} sampled records, below min_agreement={min_agreement}; "
            f"score with {model!r} instead, or choose another proxy")
    return score(data, output, **{**options, **weak_options}), result


def _scorer_of(scorers: list, column: str):
    found = [s for s in scorers if column in s.columns]
    if not found:
        raise OptionError(f"the proxy check compares {column!r}, which none of the scorers "
                          f"({', '.join(s.name for s in scorers)}) produces")
    return found[0]
