"""An LLM judge rates every (instruction, input, response) from 0 to 5, as in AlpaGasus.

Chen et al., "AlpaGasus: Training A Better Alpaca with Fewer Data" (ICLR 2024, arXiv
2307.08701) rated each Alpaca record for accuracy with ChatGPT (gpt-3.5-turbo-0301,
temperature 0, top_p 1) and trained on those rated >= 4.5. Here the judge is any server
that speaks the OpenAI chat API: `judge_url` is its base URL (`http://127.0.0.1:8000/v1`),
`judge_model` the model it serves.

- Prompt: AlpaGasus's, laid out as gpt4life/alpagasus's unofficial rating script does by
  default, or as the paper's Figure 3 (`alpagasus-paper`, with `judge_dimension`: accuracy
  unless told otherwise); `judge_prompts.py` says where the two differ. Or a JSON prompt file.
- Sampling: temperature 0 and top_p 1, as AlpaGasus; `max_tokens` 32, not their 256: they
  asked for the score on the first line and an explanation after it, and read only the score.
- Parse (`parse_rating`), AlpaGasus's `parse_score`: the reply's first line is the score;
  failing that, the number after "score:" (any case; their script took only the first
  character after "Score:", which misreads "Score: 4.5"). A reply with neither, or a score
  outside 0-5, is rejected with the reply's first characters as the reason, never given a
  default (their script logged it and scored -1).
- Requests (`judge_client.py`): `concurrency` at a time, retried with backoff on 429, 5xx and
  timeouts. A request that still fails is neither a reject nor a score: the run stops with
  one line saying how many ratings are saved, and the same command resumes from them.
- Resume: the engine gives this scorer a journal beside its shards (`keeps_journal`), and
  every rating is appended to it the moment it arrives, so a killed or failed run loses
  only the requests in flight; a rerun sends no request for a rating it holds. The cache
  key is the record's content, the prompt's text, the judge model and the sampling
  parameters: not the URL (the same model behind another server keeps its ratings) and
  never the API key, which is read from the environment variable `judge_key_env` names in
  `setup()`, kept in a private attribute and redacted from every message.
"""
from __future__ import annotations

import importlib.util
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from ..cache import Journal
from ..errors import MissingDependency, OptionError
from ..examples import Example
from ..options import Component, option
from ..stats import dominant_value
from . import REJECT, register
from .judge_client import ChatClient, JudgeRefused, JudgeUnavailable, Reply
from .judge_prompts import load_prompt

SCALE = (0.0, 5.0)
PARSE = "alpagasus: first line, else 'score: X'"  # part of the cache key: a new rule rates anew
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_SCORE_AFTER = re.compile(r"score\s*:[\s*]*(" + _NUMBER + ")", re.IGNORECASE)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONVENTIONAL_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,47}")  # OPENAI_API_KEY; a key rarely looks like this


@dataclass(kw_only=True, eq=False)
class JudgeConnection:
    """How to reach a judge: an OpenAI-compatible server, its model, the key's variable, and
    the client's concurrency, retries, timeout and sampling. The `judge` scorer and `sftpick
    eval`'s win rates both declare their judge with it."""

    judge_url: str | None = option(None, "`judge`: OpenAI base URL of the judge's server, e.g. "
                                         "http://127.0.0.1:8000/v1.")
    judge_model: str | None = option(None, "`judge`: the model name the server serves.")
    judge_key_env: str | None = option(None, "`judge`: NAME of the environment variable holding the API key "
                                             "(never the key).")  # the key itself is never an attribute here
    concurrency: int = option(8, "`judge`: requests in flight at once.", ge=1, what="a whole number")
    judge_retries: int = option(6, "`judge`: retries of a request on 429/5xx/timeouts before the run stops.",
                                ge=0, what="a whole number")
    judge_timeout: float = option(60.0, "`judge`: seconds to wait for one reply.", gt=0, what="a number")
    judge_backoff: float = option(1.0, "`judge`: seconds before the first retry (doubled each time).", ge=0,
                                  what="a number")
    judge_temperature: float = option(0.0, "`judge`: sampling temperature of the judge.", ge=0, what="a number")
    judge_max_tokens: int = option(32, "`judge`: max_tokens of a reply (the score is on its first line).", ge=1,
                                   what="a whole number")

    def check_connection(self, who: str = "scorer 'judge'") -> None:
        """Every connection option, before any request (and the key's variable is set, unread)."""
        if importlib.util.find_spec("httpx") is None:
            raise MissingDependency(f"{who} needs httpx: pip install 'sftpick[judge]'")
        _check_url(self.judge_url, who)
        if not self.judge_model:
            raise OptionError(f"{who} needs --judge-model NAME: the model the server at --judge-url serves")
        if self.judge_key_env is not None:
            # The value is never echoed unless it looks like a variable's name: it may be the key itself.
            if not _ENV_NAME.fullmatch(self.judge_key_env):
                raise OptionError("--judge-key-env (judge_key_env) should be the NAME of an environment variable "
                                  "that holds the key (e.g. OPENAI_API_KEY), not the key")
            if not os.environ.get(self.judge_key_env):
                shown = self.judge_key_env if _CONVENTIONAL_NAME.fullmatch(self.judge_key_env) else "it names"
                raise OptionError(f"the environment variable {shown} (--judge-key-env) is not set or empty")

    def client(self) -> ChatClient:
        key = os.environ[self.judge_key_env] if self.judge_key_env else None
        return ChatClient(self.judge_url, self.judge_model, key=key, sampling=self.sampling(),
                          concurrency=self.concurrency, timeout=self.judge_timeout, retries=self.judge_retries,
                          backoff=self.judge_backoff)

    def sampling(self) -> dict:
        return {"temperature": self.judge_temperature, "top_p": 1.0, "max_tokens": self.judge_max_tokens}


@register
@dataclass(kw_only=True, eq=False)
class JudgeScorer(JudgeConnection, Component):
    name = "judge"
    columns = ("judge",)
    keeps_journal = True  # engines/stream.py opens a per-rating journal beside the shards

    judge_prompt: str = option("alpagasus", "`judge`: alpagasus (gpt4life's layout of AlpaGasus's prompt, the "
                                            "default), alpagasus-paper (the paper's Figure 3) or a JSON prompt file.")
    judge_dimension: str | None = option(None, "`judge`: the property rated, for a prompt with a {dimension} slot "
                                               "(alpagasus-paper): accuracy by default, AlpaGasus's; helpfulness in "
                                               "its appendix.")

    # ------------------------------------------------------------------ setup
    def check(self) -> None:
        """Every option, before any request."""
        super().check()
        self.check_connection()
        load_prompt(self.judge_prompt, self.judge_dimension)

    def setup(self) -> None:
        self.check()
        self.prompt_ = load_prompt(self.judge_prompt, self.judge_dimension)
        self.client_ = self.client()
        self.piece_cost_ = 4 * self.concurrency  # records per engine call: a few waves of requests
        self.ratings_: dict[str, dict] = {}  # content hash -> result, this process and the journal
        self.journal_: Journal | None = None
        self.counts_: Counter = Counter()  # from_journal, rated_now, rejected_now
        self.histogram_: Counter = Counter()  # rating -> how many this run made

    def open_journal(self, journal: Journal) -> None:
        """Called by the engine once the cache folder is known: earlier ratings are read back
        and every new one is appended as it arrives."""
        self.journal_ = journal
        self.ratings_.update(journal.load())

    def config(self) -> dict:
        return {"scorer": self.name, "judge_model": self.judge_model, "prompt": self.judge_prompt,
                **({"dimension": self.judge_dimension} if self.judge_dimension else {}),
                "prompt_sha256": load_prompt(self.judge_prompt, self.judge_dimension).sha256, **self.sampling(),
                "parse": PARSE}

    @property
    def stats_(self) -> dict:
        """Requests, retries and transient failures, and the ratings made in this run by
        value (a judge that rates everything 3 shows here); the engine puts it in the manifest."""
        stats = {key: int(self.client_.stats[key]) for key in ("requests", "retries", "transient_failures")}
        ratings = {f"{value:g}": n for value, n in sorted(self.histogram_.items())}
        note = collapse_note(self.histogram_)
        return {**stats, **{key: self.counts_[key] for key in ("from_journal", "rated_now", "rejected_now")},
                "ratings_now": ratings, **({"note": note} if note else {})}

    # ------------------------------------------------------------------ scoring
    def score(self, batch: list[Example]) -> dict[str, np.ndarray]:
        results: list[dict | None] = [self.ratings_.get(e.content_hash) for e in batch]
        self.counts_["from_journal"] += sum(r is not None for r in results)
        todo = [i for i, result in enumerate(results) if result is None]
        try:
            for j, reply in self.client_.replies([self.prompt_.messages(batch[i]) for i in todo]):
                results[todo[j]] = self._keep(batch[todo[j]].content_hash, reply)
        except (JudgeUnavailable, JudgeRefused) as error:
            raise type(error)(f"{error}; {self._saved()}") from None
        return {"judge": np.array([r["judge"] for r in results], dtype=np.float64),
                REJECT: np.array([r[REJECT] for r in results], dtype=object)}

    def _keep(self, key: str, reply: Reply) -> dict:
        """The rating or reject of one reply, saved at once."""
        rating, reason = (None, reply.refused) if reply.refused else rate(reply.text)
        reason = self.client_.redact(reason) if reason else None
        result = {"judge": math.nan if rating is None else rating, REJECT: reason}
        self.ratings_[key] = result
        if self.journal_ is not None:
            self.journal_.append(key, result)
        self.counts_["rated_now"] += 1
        if rating is None:
            self.counts_["rejected_now"] += 1
        else:
            self.histogram_[rating] += 1
        return result

    def _saved(self) -> str:
        if self.journal_ is None:
            return (f"{self.counts_['rated_now']} ratings were made and are lost (no cache folder: "
                    "score with an output file to keep them)")
        return (f"{len(self.ratings_)} ratings are done and saved ({self.journal_.path}); "
                "run the same command again to resume from them")


def collapse_note(histogram: Counter, *, at_least: int = 20, share: float = 0.9) -> str | None:
    """A warning when one value holds `share` of `at_least` ratings or more: a judge that rates
    everything 3 (deita#36) says nothing about quality."""
    found = dominant_value(histogram, share=share, at_least=at_least)
    if found is None:
        return None
    value, n, total = found
    return (f"the judge rated {n} of {total} records {value:g}: its ratings hardly separate them "
            "(check the judge model, the prompt and the replies)")


def parse_rating(reply: str) -> float | None:
    """AlpaGasus's parse: the first line as a number, else the number after "score:"."""
    first = reply.strip().split("\n", 1)[0].strip()
    if re.fullmatch(_NUMBER, first):
        return float(first)
    match = _SCORE_AFTER.search(reply)
    return float(match[1]) if match else None


def rate(reply: str) -> tuple[float | None, str | None]:
    """(rating, None), or (None, the reason) for a reply with no score in 0-5."""
    rating = parse_rating(reply)
    if rating is None:
        return None, f"no parsable score in the judge's reply: {_start(reply)}"
    if not SCALE[0] <= rating <= SCALE[1]:
        return None, f"judge's score outside 0-5 ({rating:g}): {_start(reply)}"
    return rating, None


def _start(reply: str, limit: int = 80) -> str:
    text = " ".join(reply.split())
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def _check_url(url: str | None, who: str) -> None:
    if not url:
        raise OptionError(f"{who} needs --judge-url: the OpenAI base URL of the judge's server "
                          "(e.g. http://127.0.0.1:8000/v1)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = re.sub(r"//[^/@]*@", "//***@", url)
        raise OptionError(f"judge_url={shown!r} should be an http:// or https:// URL with a host, "
                          "e.g. http://127.0.0.1:8000/v1")
