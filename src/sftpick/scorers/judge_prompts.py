"""Rating prompts for the `judge` scorer: a system message and a user message whose
`{instruction}`, `{input}` and `{response}` are replaced by the record's text (one pass, so
braces in the record are left alone and no other brace in the prompt needs escaping).

`alpagasus` is AlpaGasus's accuracy prompt, verbatim from the authors' rating script,
github.com/gpt4life/alpagasus, `rating/chatgpt_rating.py` (commit 42f57bf): its system
prompt, and a user message of the Alpaca triplet (``###Instruction:`` without a space,
``### Input:`` with one, as there) followed by the rating request, trailing space and blank
line included. Chen et al., "AlpaGasus: Training A Better Alpaca with Fewer Data" (ICLR
2024, arXiv 2307.08701) print the same prompt, with a [dimension] slot, in their Figure 3.

A prompt file is JSON: ``{"system": "...", "user": "... {response} ..."}`` ("system" optional).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import OptionError
from ..examples import Example

FIELDS = ("instruction", "input", "response")
_FIELD = re.compile(r"\{(instruction|input|response)\}")

ALPAGASUS_SYSTEM = ("We would like to request your feedback on the performance of AI assistant in response "
                    "to the instruction and the given input displayed following.")
ALPAGASUS_USER = (
    "###Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{response}\n\n"
    "Please rate according to the accuracy of the response to the instruction and the input. Each assistant "
    "receives a score on a scale of 0 to 5, where a higher score indicates higher level of the accuracy. Please "
    "first output a single line containing value indicating the scores. In the subsequent line, please provide "
    "a comprehensive explanation of your evaluation, avoiding any potential bias. \n\n")


@dataclass(frozen=True)
class JudgePrompt:
    system: str | None
    user: str

    def messages(self, example: Example) -> list[dict[str, str]]:
        """The chat messages that ask the judge to rate `example`. A record that is not
        Alpaca has its context turns joined as the instruction and an empty input."""
        values = {"instruction": example.instruction, "input": example.input, "response": example.response}
        user = _FIELD.sub(lambda match: values[match[1]], self.user)
        return ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": user}]

    @property
    def sha256(self) -> str:
        """What the cache key holds: the prompt's text, not its name or path."""
        return hashlib.sha256(json.dumps([self.system, self.user]).encode()).hexdigest()[:16]


PROMPTS = {"alpagasus": JudgePrompt(ALPAGASUS_SYSTEM, ALPAGASUS_USER)}


def load_prompt(name_or_file: str) -> JudgePrompt:
    """A built-in prompt by name, or a prompt file; the error says what was wrong."""
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
    if "{response}" not in spec["user"]:
        raise OptionError(f"judge prompt file {str(path)!r}: the \"user\" message has no {{response}} "
                          f"placeholder (placeholders: {', '.join('{' + f + '}' for f in FIELDS)})")
    return JudgePrompt(spec.get("system") or None, spec["user"])
