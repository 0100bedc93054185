"""MoDS, model-oriented data selection (Du, Zong & Zhang, "MoDS: Model-oriented Data Selection
for Instruction Tuning", arXiv 2311.15653; CASIA-LM/MoDS @ 7d179bd): quality, then coverage,
then necessity.

1. Quality: records whose reward (the `reward` column, or the reward model run here when the
   scores have none) is above `quality_threshold` (0.0, `high-quality-data-extraction.py`).
2. Coverage: a seed of `seed_size` (the paper's 1,000, at most the budget) chosen by k-center
   greedy (`kcenter.kcenter_greedy`, Euclidean) among the high-quality records, the first
   center drawn with `np.random.RandomState(seed)` as `kCenterGreedy` draws it (unseeded there).
3. An initial model: `model` fine-tuned on the seed (`train.finetune`; MoDS's recipe: 3 epochs,
   lr 2e-5, cosine, 3% warmup, the Alpaca prompt, all weights; LoRA rank 8 on a CPU).
4. It answers every other high-quality instruction: deterministic beam search, 4 beams, up to
   `max_new_tokens` (MoDS's 1024) and at most `max_length`, prompted with the template it was
   trained with; the EOS is stripped as a token (`instruction_filter.py` cuts 4 characters).
5. Necessity: the reward model scores each generated response; a record whose response scores
   below `necessity_threshold` is needed (-1.0, the paper's value as our notes recall it; the
   README leaves the threshold blank).
6. The needed records join the seed by k-center greedy started from the seed's vectors, up to
   the budget (the paper); `augment="all"` adds them all in input order instead, cut at the
   budget, as the released `merge.py` concatenates them without any k-center.
7. The result: the seed, then the additions, no record twice (merge.py concatenates the lists,
   so a seed record the model still answers badly appears twice there).

Where sftpick differs from the released code, and why:
- Both extraction scripts compare a float with the threshold read from `sys.argv` as text
  (`float > str`: TypeError in Python 3); here the thresholds are floats, checked (finite)
  before any model loads, and the comparisons strict as the scripts intend.
- The records are embedded by sftpick's sentence embedder (all-MiniLM-L6-v2, normalised) over
  the instruction and its input, where `run.py` takes bert-base-uncased's [CLS] vector of the
  `instruction` field alone (96 tokens, not normalised).
- The seed records are not generated for: their outcome cannot change the selection (they are
  in already), so only `generated` = high quality minus seed are answered and scored.
- One text pair for both reward passes: (instruction [+ "\\n" + input], response), the quality
  script's; `necessity-evaluation.py` always appends "\\n" + input, also when it is empty. The
  pairs are truncated to the reward model's length; a failure stops the run instead of
  dropping the record silently.
- The seed fine-tune keeps `train.finetune`'s batch size (16, no gradient accumulation) where
  MoDS's effective batch is 512 (4 GPUs × 8 × 16): 6 optimizer steps in all on 1,000 seeds.

Every stage is cached in `workdir_`, keyed by what made it: the rewards of the records and of
the generated responses (per record, by content), the seed picks, the fine-tuned model (the
LoRA adapter; all weights until the generations are complete) and the generations (saved
every few seconds), so a killed run redoes at most the stage it was in, and a rerun with
another necessity threshold or `augment` loads no model.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from ..cache import ShardStore, column_values, config_hash, digests
from ..errors import DataError, OptionError
from ..examples import Example
from ..features.settings import CPU_LORA_RANK
from ..models import DEFAULT_EMBEDDER, DEFAULT_LM, model_option, model_revision, resolve_device
from ..options import option
from ..provenance import table_meta
from ..templates import TEMPLATES, render_prompt
from ..writers import atomic_write
from . import Selector, register
from .kcenter import kcenter_greedy

SEED_SIZE = 1000  # the paper's seed set
AUGMENTS = ("kcenter", "all")
TRAINING = "training.json"  # written last in a model folder: the fine-tune finished


@register
@dataclass(kw_only=True, eq=False)
class MoDS(Selector):
    name = "mods"
    needs_embeddings = True
    needs_records = True
    default_by = "reward"
    default_scorers = ("reward",)

    by: str | None = "reward"
    quality_threshold: float = option(0.0, "mods: records whose reward is above this are high quality (MoDS's 0.0).")
    necessity_threshold: float = option(-1.0, "mods: a high-quality record is needed when the seed model's own "
                                              "response to it gets a reward below this (-1.0, the paper's).")
    seed_size: int = option(SEED_SIZE, "mods: seed records chosen by k-center among the high-quality ones (the "
                                       "paper's 1,000; at most the budget).", ge=1)
    augment: str = option("kcenter", "mods: how the needed records join the seed: kcenter (the paper: k-center "
                                     "from the seed, up to the budget) | all (MoDS's merge.py: every one, in input "
                                     "order, cut at the budget).", choices=AUGMENTS)
    reward_model: str | None = option(None, "mods: the reward model of both stages (the reward scorer's; default: "
                                            "the one that scored the reward column).")
    reward_batch_size: int = option(8, "mods: records per batch of the reward model.", ge=1)
    model: str = model_option(DEFAULT_LM, "mods: the causal LM fine-tuned on the seed, which then answers the "
                                          "other high-quality instructions")
    device: str = option("auto", "mods: where its models run: auto | cpu | cuda | cuda:N.")
    trust_remote_code: bool = option(False, "mods: allow model code from the hub to run (its LM and reward model).")
    epochs: float = option(3.0, "mods: epochs of the seed fine-tune (MoDS's 3).", gt=0)
    lr: float | None = option(None, "mods: peak learning rate of the seed fine-tune (default: 2e-5, MoDS's, for "
                                    "all weights; 2e-4 with LoRA).", gt=0)
    batch_size: int = option(16, "mods: records per optimizer step of the seed fine-tune (MoDS: 512).", ge=1)
    max_length: int = option(1024, "mods: longest training sequence and generated response, in tokens (MoDS's "
                                   "model_max_length, 1024).", ge=2)
    lora_rank: int | None = option(None, "mods: LoRA rank of the seed fine-tune, 0 for all weights (MoDS's); "
                                         "default: all weights on CUDA, rank 8 on a CPU.", ge=0)
    max_steps: int | None = option(None, "mods: stop the seed fine-tune after this many optimizer steps.", ge=1)
    template: str = option("alpaca", "mods: the prompt template the seed model is trained and prompted with "
                                     "(MoDS's: alpaca).", choices=TEMPLATES)
    seed: int = option(0, "mods: seed of the first k-center pick (MoDS's is unseeded) and of the fine-tune.")
    max_new_tokens: int = option(1024, "mods: longest generated response, in tokens (MoDS's 1024; at most "
                                       "--max-length).", ge=1)
    num_beams: int = option(4, "mods: beams of the deterministic beam search (MoDS's 4; 1: greedy).", ge=1)
    generate_batch_size: int = option(8, "mods: prompts generated together (left-padded).", ge=1)

    def check(self) -> None:
        super().check()
        for name in ("quality_threshold", "necessity_threshold"):
            if not math.isfinite(getattr(self, name)):
                raise OptionError(f"mods: {name}={getattr(self, name)!r} should be a finite number")
        resolve_device(self.device)
        model_revision(self.model)  # an unknown model fails now, before any work

    def prepare(self, table: pa.Table) -> None:
        """The reward model of both stages: the one named, else the one that scored `reward`
        (the table's metadata says); another than the scores' is refused (MoDS uses one)."""
        scored = next((s for s in table_meta(table).get("scorers", []) if s.get("scorer") == "reward"), None)
        scored_by = scored.get("reward_model") if scored else None
        if self.reward_model and scored_by and self.reward_model != scored_by and "reward" in table.column_names:
            raise OptionError(f"mods: reward_model={self.reward_model!r} is not the model that scored the reward "
                              f"column ({scored_by!r}); MoDS scores quality and necessity with one: pass "
                              f"--reward-model {scored_by}, or score again")
        self.reward_model_ = self.reward_model or scored_by
        self.reward_max_length_ = scored.get("max_length") if scored and self.reward_model_ == scored_by else None
        if not self.reward_model_:
            where = "the scores' reward column does not say which model made it" if "reward" in table.column_names \
                else "the scores have no reward column"
            raise OptionError(f"mods scores the seed model's responses with a reward model, and {where}: pass "
                              "--reward-model NAME_OR_PATH (e.g. OpenAssistant/reward-model-deberta-v3-large-v2)")

    def embedding(self) -> tuple[str | None, str, int | None]:
        """sftpick's sentence embedder over the instruction (and input): MoDS embeds the
        instruction alone, with bert-base-uncased's [CLS] vector."""
        return DEFAULT_EMBEDDER, "instruction", None

    def choose(self, table: pa.Table, budget: int, vectors: np.ndarray | None) -> np.ndarray:
        """The seed, then the needed records added to it, in pick order."""
        if getattr(self, "records_", None) is None:
            raise OptionError("strategy 'mods' reads the records: pass the data file (`sftpick select DATA …`, "
                              "`data=`)")
        if not hasattr(self, "reward_model_"):
            self.prepare(table)
        records = self.records_
        self.workdir_ = Path(getattr(self, "workdir_", None) or tempfile.mkdtemp(prefix="sftpick-mods-"))
        self.stages_: dict[str, str] = {}
        stats: dict = {"candidates": table.num_rows, "quality_threshold": self.quality_threshold,
                       "necessity_threshold": self.necessity_threshold, "reward_model": self.reward_model_,
                       "augment": self.augment}
        seconds, clock = {}, _Clock()
        if "reward" in table.column_names:
            rewards = table.column("reward").to_numpy(zero_copy_only=False).astype(np.float64)
            self.stages_["quality"] = "from the scores' reward column"
        else:
            rewards = self._cached_rewards("quality", records)
        seconds["quality"] = clock()
        high = np.flatnonzero(rewards > self.quality_threshold)  # NaN is not above it
        k = min(self.seed_size, budget, len(high))
        seed = high[self._seed_picks(records, vectors, high, k)] if k else high[:0]
        rest = high[~np.isin(high, seed)]
        seconds["seed"] = clock()
        needed, generated = rest[:0], 0
        if len(seed) < budget and len(rest):
            responses, stats["generation"] = self._generations([records[i] for i in seed], [records[i] for i in rest])
            seconds["fine_tune_and_generation"] = clock()
            answered = self._cached_rewards("necessity", [_answered(records[i], r) for i, r in zip(rest, responses)])
            needed, generated = rest[answered < self.necessity_threshold], len(rest)
            stats["generated_reward"] = _summary(answered)
            seconds["necessity"] = clock()
        else:
            why = ("no record is of high quality" if not len(high) else "the seed fills the budget"
                   if len(seed) >= budget else "every high-quality record is in the seed")
            self.stages_.update(dict.fromkeys(("fine_tune", "generation", "necessity"), "not needed: " + why))
        room = budget - len(seed)
        radius = None
        if self.augment == "all" or not len(needed):
            added = needed[:room]
        else:
            picks, radius = kcenter_greedy(vectors[needed], room, vectors[seed])
            added = needed[picks]
        chosen = np.concatenate([seed, added]).astype(np.int64)
        self.stats_ = {**stats, "high_quality": len(high), "seed": len(seed), "generated": generated,
                       "needed": len(needed), "added": len(added), "final": len(chosen), "covering_radius": radius,
                       "stages": self.stages_, "seconds": seconds}
        self.notes_ = [] if len(chosen) >= budget else [
            self._shortfall(budget, table.num_rows, len(high), len(seed), generated, len(needed), len(added))]
        return chosen

    # ------------------------------------------------------------ stages

    def _seed_picks(self, records: list[Example], vectors: np.ndarray, high: np.ndarray, k: int) -> np.ndarray:
        """Positions in `high` of the k-center seed (cached by the records, their vectors, k, seed)."""
        x = np.ascontiguousarray(vectors[high], dtype=np.float32)
        key = config_hash({"records": [records[i].content_hash for i in high], "k": k, "seed": self.seed,
                           "vectors": hashlib.sha256(x.tobytes()).hexdigest()})
        path = self.workdir_ / f"seed-{key}.json"
        if path.exists():
            self.stages_["seed"] = "cached"
            return np.asarray(json.loads(path.read_text())["picks"], dtype=np.int64)
        first = int(np.random.RandomState(self.seed).choice(len(high)))
        picks, _ = kcenter_greedy(x, k, first=first)
        atomic_write(path, json.dumps({"first": first, "k": k, "picks": picks.tolist()}))
        self.stages_["seed"] = "computed"
        return picks

    def _generations(self, seed: list[Example], rest: list[Example]) -> tuple[np.ndarray, dict]:
        """The seed model's response to each of `rest`, from the cache or generated (the model
        fine-tuned, or read from the cache, only when some are missing)."""
        config, rank = self._train_config()
        model_key = config_hash({"model": self.model, "revision": model_revision(self.model),
                                 "train": config.to_dict(), "seed": [e.content_hash for e in seed]})
        max_new_tokens = min(self.max_new_tokens, self.max_length)
        settings = {"model": model_key, "max_new_tokens": max_new_tokens, "num_beams": self.num_beams,
                    "template": self.template, "prompt_tokens": self.max_length}
        folder = self.workdir_ / f"model-{model_key}"
        self.stages_["fine_tune"] = "not needed: every generation is cached"

        def generate() -> Callable[[list[Example]], np.ndarray]:
            model, tokenizer = self._seed_model(seed, config, folder)
            return lambda part: np.array(self._generate(model, tokenizer, part, max_new_tokens), dtype=object)

        store = ShardStore(self.workdir_, "generations", settings)
        responses, self.stages_["generation"] = _cached(store, rest, "response", generate, self.generate_batch_size)
        if not rank and (folder / "config.json").exists():  # all weights: kept only until the generations are done
            for path in folder.iterdir():
                if path.name != TRAINING:
                    path.unlink() if path.is_file() else shutil.rmtree(path)
        info = json.loads((folder / TRAINING).read_text()) if (folder / TRAINING).exists() else {}
        return responses, {"max_new_tokens": max_new_tokens, "max_new_tokens_asked": self.max_new_tokens,
                           "num_beams": self.num_beams, "template": self.template, "training": info}

    def _train_config(self):
        from ..train.config import TrainConfig

        cuda = resolve_device(self.device).startswith("cuda")
        rank = (None if cuda else CPU_LORA_RANK) if self.lora_rank is None else (self.lora_rank or None)
        return TrainConfig(epochs=self.epochs, lr=self.lr or (2e-4 if rank else 2e-5), batch_size=self.batch_size,
                           max_length=self.max_length, seed=self.seed, lora_rank=rank, template=self.template,
                           max_steps=self.max_steps), rank

    def _seed_model(self, seed: list[Example], config, folder: Path):
        """(model, tokenizer): `model` fine-tuned on the seed, read from `folder` when a finished
        fine-tune is there, else trained and saved there (the LoRA adapter, or all weights and
        the tokenizer, then `training.json`, in a temporary folder renamed at the end)."""
        from ..models import load_causal_lm
        from ..train.data import encode
        from ..train.finetune import fine_tune

        done = (folder / TRAINING).exists()
        if done and not config.lora_rank and (folder / "config.json").exists():
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.stages_["fine_tune"] = "cached"
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
            return model.to(resolve_device(self.device)).eval(), AutoTokenizer.from_pretrained(folder)
        lm = load_causal_lm(self.model, device=self.device, dtype="float32", trust_remote_code=self.trust_remote_code)
        if done and config.lora_rank and (folder / "adapter_config.json").exists():
            from peft import PeftModel

            self.stages_["fine_tune"] = "cached"
            return PeftModel.from_pretrained(lm.model, folder).merge_and_unload().eval(), lm.tokenizer
        encoded, reasons = encode(seed, lm.tokenizer, config.template, config.max_length)
        kept = [e for e in encoded if e is not None]
        if not kept:
            raise DataError(f"mods: no seed record fits max_length={config.max_length}: {next(filter(None, reasons))}")
        tuned = fine_tune(lm.model, lm.tokenizer, kept, config, progress=False, label="MoDS seed", merge_lora=False)
        tmp = folder.with_name(f".{folder.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tuned.model.save_pretrained(tmp)  # peft: the adapter alone
        if not config.lora_rank:
            lm.tokenizer.save_pretrained(tmp)
        info = {"config": config.to_dict(), "records": len(kept), "too_long": len(seed) - len(kept),
                "steps": tuned.steps, "loss_first": tuned.losses[0] if tuned.losses else None,
                "loss_last": tuned.losses[-1] if tuned.losses else None, "seconds": round(tuned.seconds, 3)}
        (tmp / TRAINING).write_text(json.dumps(info, indent=2))
        shutil.rmtree(folder, ignore_errors=True)  # a fine-tune whose weights were removed after its generations
        tmp.rename(folder)
        self.stages_["fine_tune"] = "trained"
        model = tuned.model.merge_and_unload() if config.lora_rank else tuned.model
        return model.eval(), lm.tokenizer

    def _generate(self, model, tokenizer, examples: list[Example], max_new_tokens: int) -> list[str]:
        """Beam search (no sampling) from each record's prompt, rendered and tokenised as in
        training and cut to its last `max_length` tokens, batched with left padding; the
        response decoded without special tokens."""
        import torch
        from transformers import GenerationConfig

        prompts = [render_prompt(e, self.template, tokenizer) for e in examples]
        ids = [row[-self.max_length:] for row in tokenizer(prompts)["input_ids"]]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        config = GenerationConfig(max_new_tokens=max_new_tokens, num_beams=self.num_beams, do_sample=False,
                                  pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        device = next(model.parameters()).device
        out = [""] * len(examples)
        order = np.argsort([len(row) for row in ids], kind="stable")
        for start in range(0, len(order), self.generate_batch_size):
            batch = order[start: start + self.generate_batch_size]
            width = max(len(ids[i]) for i in batch)
            tokens = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                tokens[r, width - len(ids[i]):] = torch.tensor(ids[i])
                mask[r, width - len(ids[i]):] = 1
            with torch.inference_mode():
                generated = model.generate(input_ids=tokens.to(device), attention_mask=mask.to(device),
                                           generation_config=config)
            for r, i in enumerate(batch):
                out[i] = tokenizer.decode(generated[r, width:], skip_special_tokens=True)
        return out

    def _cached_rewards(self, stage: str, examples: list[Example]) -> np.ndarray:
        """The reward of each (context, response), per record (by content) from the cache or scored."""
        store = ShardStore(self.workdir_, f"reward-{stage}", self._reward_scorer().config())

        def score() -> Callable[[list[Example]], np.ndarray]:
            self._reward_scorer().setup()
            return lambda part: self._reward_scorer().score(part)["reward"]

        values, self.stages_[stage] = _cached(store, examples, "reward", score, 256)
        return values.astype(np.float64)

    def _reward_scorer(self):
        from ..scorers.reward import RewardScorer

        if getattr(self, "scorer_", None) is None:
            self.scorer_ = RewardScorer(reward_model=self.reward_model_, device=self.device,
                                        reward_batch_size=self.reward_batch_size,
                                        reward_max_length=self.reward_max_length_,
                                        trust_remote_code=self.trust_remote_code)
        return self.scorer_

    def _shortfall(self, budget: int, n: int, high: int, seed: int, generated: int, needed: int, added: int) -> str:
        """Why fewer than the budget: the counts of each stage."""
        text = (f"mods: selected {seed + added} of {budget}: {high} of {n} candidates have a reward above "
                f"quality_threshold={self.quality_threshold:g}, {seed} of them form the seed")
        if generated:
            text += (f", and {needed} of the other {generated} are needed (the seed model's response scored below "
                     f"necessity_threshold={self.necessity_threshold:g}; a higher threshold adds more)")
        if added < min(needed, budget - seed) or seed < min(self.seed_size, budget, high):
            text += "; the others duplicate chosen records (k-center's covering radius is 0)"
        return text


def _cached(store: ShardStore, examples: list[Example], column: str,
            compute: Callable[[], Callable[[list[Example]], np.ndarray]], chunk: int) -> tuple[np.ndarray, str]:
    """`column` for each example, by content: from `store` where done, the rest computed
    `chunk` records at a time (identical records once) and saved as they finish (the store
    writes every few seconds). `compute()` loads what computing needs, only when something is
    missing. Returns the values and what happened ("cached", "computed", "N of M computed")."""
    keys = [e.content_hash for e in examples]
    index, table = store.load()
    found = index.find(digests(keys))
    values = np.empty(len(examples), dtype=object)
    hit = found >= 0
    if hit.any():
        values[hit] = list(column_values(table.column(column).take(pa.array(found[hit]))))
    todo: dict[str, list[int]] = {}
    for i in np.flatnonzero(~hit):
        todo.setdefault(keys[i], []).append(int(i))
    if not todo:
        return values, "cached"
    fn = compute()
    firsts = [positions[0] for positions in todo.values()]
    try:
        for start in range(0, len(firsts), chunk):
            part = firsts[start: start + chunk]
            results = fn([examples[i] for i in part])
            store.save([keys[i] for i in part], {column: np.asarray(results)})
            for i, value in zip(part, results):
                values[todo[keys[i]]] = [value] * len(todo[keys[i]])
    finally:  # an error or ^C keeps what was done
        store.flush()
    return values, "computed" if len(todo) == len(set(keys)) else f"{len(todo)} of {len(set(keys))} computed"


class _Clock:
    """Seconds since the last call (or since it was made), rounded to milliseconds."""

    def __init__(self):
        self.last = time.perf_counter()

    def __call__(self) -> float:
        now = time.perf_counter()
        elapsed, self.last = now - self.last, now
        return round(elapsed, 3)


def _answered(example: Example, response: str) -> Example:
    """The record with the seed model's response in place of its own."""
    return replace(example, messages=[*example.messages[:-1], {"role": "assistant", "content": str(response)}])


def _summary(values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return {}
    return {"min": float(finite.min()), "median": float(np.median(finite)), "max": float(finite.max())}
