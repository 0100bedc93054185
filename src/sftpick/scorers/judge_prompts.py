"""Rating prompts for the `judge` scorer: a system message and a user message whose
`{instruction}`, `{input}` and `{response}` are replaced by the record's text, in either
message (one pass, so braces in the record are left alone and no other brace in the prompt
needs escaping). `{dimension}` is the property rated (`--judge-dimension`, accuracy by
default); it is filled in when the prompt loads, so it is part of the prompt's text and of
the cache key.

Two layouts of AlpaGasus's rating prompt (Chen et al., "AlpaGasus: Training A Better Alpaca
with Fewer Data", ICLR 2024, arXiv 2307.08701):
- `alpagasus-paper`: the paper's Figure 3. The system message is the request for feedback
  followed by the record, its fields labelled `Instruction:`, `Input:`, `Response:` (one per
  line: the figure's own line breaks cannot be read from its text, and the code copies of it
  put one field per line); the user message asks for the rating of the [dimension], "the
  value" on the first line. The paper rates accuracy (§2.3) and, in Appendix A.5, helpfulness.
- `alpagasus` (also `alpagasus-gpt4life`; the default, so earlier ratings stay cached):
  github.com/gpt4life/alpagasus, `rating/chatgpt_rating.py` (commit 42f57bf), which calls
  itself "the unofficial implementation". The same sentences, laid out otherwise: the system
  message is the request alone; the user message is the Alpaca triplet (``###Instruction:``
  without a space, ``### Input:`` with one) followed by the rating request ("containing value",
  accuracy written in, a trailing space and blank line).
OpenDCAI/DataFlow's `AlpagasusPrompt` follows the paper's split but sends both parts as one
user message, with "a higher level" and "quality" as its default dimension; it is not offered.

A prompt file is JSON: ``{"system": "...", "user": "..."}`` ("system" optional), `{response}`
in one of them.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import OptionError
from ..examples import Example

FIELDS = ("instruction", "input", "response")
_FIELD = re.compile(r"\{(instruction|input|response)\}")
DIMENSION = "{dimension}"
DEFAULT_DIMENSION = "accuracy"  # AlpaGasus's (§2.3)

ALPAGASUS_SYSTEM = ("We would like to request your feedback on the performance of AI assistant in response "
                    "to the instruction and the given input displayed following.")
ALPAGASUS_USER = (
    "###Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{response}\n\n"
    "Please rate according to the accuracy of the response to the instruction and the input. Each assistant "
    "receives a score on a scale of 0 to 5, where a higher score indicates higher level of the accuracy. Please "
    "first output a single line containing value indicating the scores. In the subsequent line, please provide "
    "a comprehensive explanation of your evaluation, avoiding any potential bias. \n\n")
PAPER_SYSTEM = (ALPAGASUS_SYSTEM + "\nInstruction: {instruction}\nInput: {input}\nResponse: {response}")
PAPER_USER = (
    "Please rate according to the {dimension} of the response to the instruction and the input. Each assistant "
    "receives a score on a scale of 0 to 5, where a higher score indicates higher level of the {dimension}. Please "
    "first output a single line containing the value indicating the scores. In the subsequent line, please provide "
    "a comprehensive explanation of your evaluation, avoiding any potential bias.")


@dataclass(frozen=True)
class JudgePrompt:
    system: str | None
    user: str

    def messages(self, example: Example) -> list[dict[str, str]]:
        """The chat messages that ask the judge to rate `example`. A record that is not
        Alpaca has its context turns joined as the instruction and an empty input."""
        values = {"instruction": example.instruction, "input": example.input, "response": example.response}
        fill = functools.partial(_FIELD.sub, lambda match: values[match[1]])
        return ([{"role": "system", "content": fill(self.system)}] if self.system else []) + [
            {"role": "user", "content": fill(self.user)}]

    def rating(self, dimension: str | None) -> "JudgePrompt":
        """The prompt with its `{dimension}` slot filled (a prompt without one takes none)."""
        if DIMENSION not in f"{self.system}{self.user}":
            if dimension not in (None, DEFAULT_DIMENSION):
                raise OptionError(f"judge_dimension={dimension!r}: this prompt has no {{dimension}} slot (it rates "
                                  "what it says); use --judge-prompt alpagasus-paper, or a prompt file with one")
            return self
        dimension = dimension or DEFAULT_DIMENSION
        return JudgePrompt(self.system and self.system.replace(DIMENSION, dimension),
                           self.user.replace(DIMENSION, dimension))

    @property
    def sha256(self) -> str:
        """What the cache key holds: the prompt's text, not its name or path."""
        return hashlib.sha256(json.dumps([self.system, self.user]).encode()).hexdigest()[:16]


PROMPTS = {"alpagasus": JudgePrompt(ALPAGASUS_SYSTEM, ALPAGASUS_USER),
           "alpagasus-gpt4life": JudgePrompt(ALPAGASUS_SYSTEM, ALPAGASUS_USER),
           "alpagasus-paper": JudgePrompt(PAPER_SYSTEM, PAPER_USER)}


def load_prompt(name_or_file: str, dimension: str | None = None) -> JudgePrompt:
    """A built-in prompt by name, or a prompt file, with its `{dimension}` filled; the error
    says what was wrong."""
    return _load(name_or_file).rating(dimension)


def _load(name_or_file: str) -> JudgePrompt:
    if name_or_file in PROMPTS:
        return PROMPTS[name_or_file]
    path = Path(name_or_file)
    if not path.is_file():
        raise OptionError(f"judge_prompt={name_or_file!r} is neither a built-in prompt "
                          f"({', '.join(PROMPTS)}) nor an existing file")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise OptionError(f"judge prompt file {str(path)!r} is not JSON ({error}); expected "
                          '{"system": "...", "user": "... {response} ..."}') from None
    if not isinstance(spec, dict) or not isinstance(spec.get("user"), str) or not isinstance(
            spec.get("system", ""), (str, type(None))):
        raise OptionError(f"judge prompt file {str(path)!r} should be an object with a string \"user\" "
                          "(and optionally \"system\")")
    unknown = sorted(set(spec) - {"system", "user"})
    if unknown:
        raise OptionError(f"judge prompt file {str(path)!r} has unknown key(s) {', '.join(unknown)}; "
                          "expected \"system\" and \"user\"")
    if "{response}" not in spec["user"] + (spec.get("system") or ""):
        raise OptionError(f"judge prompt file {str(path)!r}: no {{response}} placeholder in either message "
                          f"(placeholders: {', '.join('{' + f + '}' for f in FIELDS)}, and {DIMENSION})")
    return JudgePrompt(spec.get("system") or None, spec["user"])
