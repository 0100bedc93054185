"""Scorers add columns to the score table. This is the whole scorer contract.

A scorer is a dataclass (`options.Component`) with
- `name` and the `columns` it produces;
- its options, declared as fields with `options.option(...)` (type, default, range or
  choices, help): the CLI flags, config keys, API keywords and manifest entries come from
  them; `check()` validates them before anything loads (a typo fails in a second);
- `config()`: plain data naming what made its numbers (model, revision, settings). It keys
  the resume cache and goes into the manifest, so it is known before `setup()`, without
  loading a model (an engine keys the cache in the driver while models load in workers);
- `setup()`: loads heavy state once (attributes ending in `_`);
- `score(batch) -> {column: array}`: a pure function of the batch, so the local engine and a
  Ray actor run the same object. Per example it may return under `REJECT` a reason string (or
  None where scored): a record is scored or rejected with a reason, never given a default.

Optional:
- `cost(examples)` (e.g. token counts): the engine sorts and batches by it;
- `token_budget_`, `piece_cost_`: how much of a shard one in-process call takes (progress);
- `stats_`: figures for the manifest (retries, recall, …).
Traits, class attributes read through `engines.base.trait` (default False):
- `runs_a_model`: worth a worker process or a Ray actor; scorers without one stay in the driver;
- `embeds` (kNN): `score(batch)` returns `{"vector": [n, d]}`, cached per record under
  `vector_config()`; then `search(vectors)`, the global step, runs once over every distinct
  example's vector;
- `derived` (rule): columns computed from the other scorers' by `derive(columns)`;
- `keeps_journal` (judge): saves each record as it finishes through `open_journal(Journal)`.

A new scorer is one module that registers itself (`@register`) and one import line below.
"""
from __future__ import annotations

from ..errors import OptionError, did_you_mean
from ..options import Component

REJECT = "_reject"

Scorer = Component  # the type of every scorer; see the contract above


SCORERS: dict[str, type] = {}


def register(cls: type) -> type:
    SCORERS[cls.name] = cls
    return cls


def make_scorer(name: str, **options) -> Scorer:
    if name not in SCORERS:
        raise OptionError(f"unknown scorer {name!r}{did_you_mean(name, SCORERS)}; "
                          f"valid scorers: {', '.join(sorted(SCORERS))}")
    return SCORERS[name](**options)


from . import deita  # noqa: E402,F401  (DEITA's complexity and quality scorers)
from . import ifd  # noqa: E402,F401  (modules register themselves)
from . import instruction_ppl  # noqa: E402,F401  (Cherry LLM: perplexity of the instruction alone)
from . import judge  # noqa: E402,F401  (AlpaGasus: an LLM judge over the OpenAI API)
from . import knn, length, mtld, reward, rule  # noqa: E402,F401  (Instruction Mining indicators)
