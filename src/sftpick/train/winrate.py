"""Judged win rates, as Cherry LLM (arXiv 2308.12032) and Superfiltering (arXiv 2402.00530)
report them, and AlpaGasus, LIFT and DiverseEvol with them: each tuned model answers the test
prompts (Vicuna, Koala, WizardLM, LIMA, Self-Instruct: ../shared/data/eval/), and a judge
compares its answer with a reference model's, in both orders to cancel position bias.

Followed from Cherry LLM's `evaluation/generation/` scripts:
- generation (`eva_generation.py`): the training prompt template (Alpaca by default) around the
  test prompt, greedy decoding; Cherry caps the whole sequence at 1024 tokens, sftpick the new
  tokens (`max_new_tokens`), recorded with the answers;
- the judge's prompt (`eval.py`: Vicuna's pairwise review, system "You are a helpful and
  precise assistant…", both answers, scores 1-10 for each on the first line), temperature 0,
  each pair asked twice, the answers swapped the second time;
- the parse: the first line, commas read as spaces, exactly two numbers; a reply that has not
  is asked again (`UNPARSED_RETRIES` times), then counted apart as unparsed, never as a tie
  (Cherry's script logs it and scores it -1 -1, which counts as a tie);
- the rule (`review_eval_score.py`): a win is winning in both orders, or winning one and tying
  the other; a loss is the reverse; anything else is a tie; the win rate is
  (wins - losses) / n + 1 over the n prompts judged (Cherry's figure 2 plots it).
The interval is a bootstrap over the prompts (2,000 resamples, seed 0, percentile 95%).
Generations are cached per tuned model and prompt, judgments per pair and order (journals that
survive a killed run): a rerun over the same output sends the judge no request.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cache import Journal, config_hash
from ..examples import Example
from ..io.prompts import TestPrompt
from ..templates import render_prompt

PAIRWISE_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
PAIRWISE_USER = ("[Question]\n{question}\n\n[The Start of Assistant 1's Answer]\n{answer_1}\n\n"
                 "[The End of Assistant 1's Answer]\n\n[The Start of Assistant 2's Answer]\n{answer_2}\n\n"
                 "[The End of Assistant 2's Answer]\n\n[System]\n{criteria}\n\n")
CRITERIA = ("We would like to request your feedback on the performance of two AI assistants in response to the "
            "user question displayed above.\nPlease rate the helpfulness, relevance, accuracy, level of details of "
            "their responses. Each assistant receives an overall score on a scale of 1 to 10, where a higher score "
            "indicates better overall performance.\nPlease first output a single line containing only two values "
            "indicating the scores for Assistant 1 and 2, respectively. The two scores are separated by a space. In "
            "the subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any "
            "potential bias and ensuring that the order in which the responses were presented does not affect your "
            "judgment.")
UNPARSED_RETRIES = 2
BOOTSTRAP = 2000
_FIELD = re.compile(r"\{(question|answer_1|answer_2|criteria)\}")


def generate(model, tokenizer, prompts: list[TestPrompt], *, template: str, max_new_tokens: int,
             batch_size: int = 8) -> list[str]:
    """Greedy answers to `prompts` under the training template (left-padded batches)."""
    import torch

    texts = [render_prompt(_as_example(p), template, tokenizer) for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers = []
    for start in range(0, len(texts), batch_size):
        encoded = [tokenizer(t)["input_ids"] for t in texts[start:start + batch_size]]
        width = max(len(ids) for ids in encoded)
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
        with torch.inference_mode():
            out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                                 max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad)
        answers += [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out.cpu()]
    return answers


def _as_example(prompt: TestPrompt) -> Example:
    return Example(row=0, id="", record={}, instruction=prompt.instruction, input=prompt.input,
                   messages=[{"role": "user", "content": prompt.question}, {"role": "assistant", "content": ""}])


def cached_answers(journal: Journal, prompts: list[TestPrompt], answer) -> dict[str, str]:
    """prompt key -> answer: from `journal` where done, else `answer(prompts)` for the rest,
    each appended as it is made."""
    done = {k: v["answer"] for k, v in journal.load().items()}
    todo = [p for p in prompts if p.key not in done]
    if todo:
        for prompt, text in zip(todo, answer(todo)):
            journal.append(prompt.key, {"answer": text})
            done[prompt.key] = text
    return done


def parse_pair(reply: str) -> tuple[float, float] | None:
    """Cherry's parse: the first line, commas as spaces, exactly two numbers."""
    parts = reply.strip().split("\n")[0].replace(",", " ").split()
    try:
        return (float(parts[0]), float(parts[1])) if len(parts) == 2 else None
    except ValueError:
        return None


def pairwise_messages(question: str, answer_1: str, answer_2: str) -> list[dict]:
    values = {"question": question, "answer_1": answer_1, "answer_2": answer_2, "criteria": CRITERIA}
    return [{"role": "system", "content": PAIRWISE_SYSTEM},
            {"role": "user", "content": _FIELD.sub(lambda m: values[m[1]], PAIRWISE_USER)}]


def judge_pairs(client, journal: Journal, pairs: list[tuple[str, str, str]]) -> dict[str, tuple | None]:
    """pair key -> (score of answer 1, score of answer 2), or None when no reply could be read
    (after `UNPARSED_RETRIES` more asks; a request the server refuses is not asked again);
    every verdict is appended to `journal` as it arrives, so a rerun asks nothing it holds."""
    done = {k: (tuple(v["scores"]) if v["scores"] else None) for k, v in journal.load().items()}
    todo = list({pair_key(*p): p for p in pairs if pair_key(*p) not in done}.values())
    for attempt in range(UNPARSED_RETRIES + 1):
        again = []
        for index, reply in client.replies([pairwise_messages(*p) for p in todo]):
            scores = None if reply.refused else parse_pair(reply.text)
            if scores is None and not reply.refused and attempt < UNPARSED_RETRIES:
                again.append(todo[index])
                continue
            journal.append(pair_key(*todo[index]), {"scores": list(scores) if scores else None,
                                                    "reply": reply.text[:400], "refused": reply.refused})
            done[pair_key(*todo[index])] = scores
        todo = again
        if not todo:
            break
    return done


def pair_key(question: str, answer_1: str, answer_2: str) -> str:
    return config_hash([question, answer_1, answer_2])


def outcome(forward: tuple | None, reverse: tuple | None) -> str:
    """Cherry's rule for the arm against the reference: `forward` has the arm as Assistant 1,
    `reverse` the reference as Assistant 1."""
    if forward is None or reverse is None:
        return "unparsed"
    first = np.sign(forward[0] - forward[1])  # +1: the arm won in that order
    second = np.sign(reverse[1] - reverse[0])
    if first + second > 0:
        return "win"
    if first + second < 0:
        return "loss"
    return "tie"


def summarize_outcomes(outcomes: list[str], seed: int = 0) -> dict:
    """wins, ties, losses, unparsed, the win rate (W - L) / n + 1 over the n judged, and its
    95% bootstrap interval over the prompts."""
    counts = {kind: outcomes.count(kind) for kind in ("win", "tie", "loss", "unparsed")}
    judged = np.array([{"win": 1, "tie": 0, "loss": -1}[o] for o in outcomes if o != "unparsed"])
    rate = float(judged.mean() + 1) if len(judged) else None
    interval = None
    if len(judged) > 1:
        resampled = np.random.default_rng(seed).choice(judged, size=(BOOTSTRAP, len(judged))).mean(axis=1) + 1
        interval = [float(v) for v in np.percentile(resampled, [2.5, 97.5])]
    return {"wins": counts["win"], "ties": counts["tie"], "losses": counts["loss"], "unparsed": counts["unparsed"],
            "n": len(outcomes), "win_rate": rate, "ci": interval}


@dataclass
class WinRatePlan:
    """What `sftpick eval` does for win rates: each tuned model answers every prompt set right
    after its fine-tune (cached per model and settings), then every arm is judged against the
    reference arm, the first seed of each (one verdict per prompt)."""

    prompt_sets: dict[str, list[TestPrompt]]  # name (the file's stem) -> prompts
    connection: object  # scorers.judge.JudgeConnection: the server, model, key, retries
    reference: str
    template: str
    max_new_tokens: int
    out: Path

    def settings(self) -> dict:
        return {"decoding": "greedy", "max_new_tokens": self.max_new_tokens, "template": self.template}

    def _answers(self, arm_key: str) -> Journal:
        folder = self.out / "generations"
        folder.mkdir(parents=True, exist_ok=True)
        return Journal(folder / f"{arm_key}-{config_hash(self.settings())}.jsonl")

    def _prompts(self) -> list[TestPrompt]:
        return list({p.key: p for prompts in self.prompt_sets.values() for p in prompts}.values())

    def has_answers(self, arm_key: str) -> bool:
        done = self._answers(arm_key).load()
        return all(p.key in done for p in self._prompts())

    def answer(self, arm_key: str, model, tokenizer) -> None:
        cached_answers(self._answers(arm_key), self._prompts(),
                       lambda todo: generate(model, tokenizer, todo, template=self.template,
                                             max_new_tokens=self.max_new_tokens))

    def judge(self, arms: list[dict]) -> dict[str, dict]:
        """arm name -> {prompt set: counts, win rate, interval, and "overall"} for every arm but
        the reference, each arm's first fine-tune against the reference's first."""
        first = {}
        for arm in arms:
            first.setdefault(arm["name"], arm)
        reference = self._load_answers(first[self.reference]["key"])
        others = {name: self._load_answers(arm["key"]) for name, arm in first.items() if name != self.reference}
        pairs = [(p.question, answers[p.key], reference[p.key]) for answers in others.values()
                 for prompts in self.prompt_sets.values() for p in prompts]
        pairs += [(q, b, a) for q, a, b in pairs]  # the other order
        folder = self.out / "judgments"
        folder.mkdir(parents=True, exist_ok=True)
        judge = {"model": self.connection.judge_model, **self.connection.sampling(), "prompt": "cherry-pairwise"}
        verdicts = judge_pairs(self.connection.client(), Journal(folder / f"{config_hash(judge)}.jsonl"), pairs)
        return {name: self._rates(answers, reference, verdicts) for name, answers in others.items()}

    def _load_answers(self, arm_key: str) -> dict[str, str]:
        return {k: v["answer"] for k, v in self._answers(arm_key).load().items()}

    def _rates(self, answers: dict, reference: dict, verdicts: dict) -> dict:
        rates, everything = {}, []
        for name, prompts in self.prompt_sets.items():
            outcomes = [outcome(verdicts[pair_key(p.question, answers[p.key], reference[p.key])],
                                verdicts[pair_key(p.question, reference[p.key], answers[p.key])]) for p in prompts]
            rates[name] = summarize_outcomes(outcomes)
            everything += outcomes
        rates["overall"] = summarize_outcomes(everything)
        return rates
