"""Test prompts, as Cherry LLM's test sets ship them (Vicuna, Koala, WizardLM, LIMA,
Self-Instruct) or as records of any supported format: what judged win rates answer and what
decontamination looks for in a pool."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..cache import config_hash
from ..errors import DataError
from .source import read_dataset

PROMPT_FIELDS = ("prompt", "text", "instruction", "Instruction", "conversations")  # Cherry's test sets' keys


@dataclass(frozen=True)
class TestPrompt:
    instruction: str
    input: str = ""

    @property
    def question(self) -> str:
        """What the judge is shown (Cherry shows the instruction; its input follows it here)."""
        return self.instruction + (f"\n{self.input}" if self.input else "")

    @property
    def key(self) -> str:
        return config_hash([self.instruction, self.input])


def load_prompts(path: str | Path) -> list[TestPrompt]:
    """Test prompts: JSONL objects with a `prompt`, `text`, `instruction` (Self-Instruct's input
    in `instances`), `Instruction` or `conversations` field, as Cherry's test sets; or records
    of any supported format (their instruction and input)."""
    path = Path(path)
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if path.suffix == ".jsonl" and path.is_file() else []
    try:
        objects = [json.loads(line) for line in lines]
    except ValueError:
        objects = []
    if objects and all(isinstance(o, dict) and any(isinstance(o.get(f), str) for f in PROMPT_FIELDS)
                       for o in objects):
        return [_cherry_prompt(o) for o in objects]
    examples = read_dataset(path).examples
    if not examples:
        raise DataError(f"{path}: no test prompt (expected JSONL with a `text` or `prompt` field, or records)")
    return [TestPrompt(e.instruction or e.context[-1]["content"], e.input) for e in examples]


def _cherry_prompt(record: dict) -> TestPrompt:
    """The prompt and its input: Self-Instruct's in `instances`, an Alpaca record's in `input`."""
    text = next(record[f] for f in PROMPT_FIELDS if isinstance(record.get(f), str))
    instances = record.get("instances")
    given = instances[0].get("input") if instances and isinstance(instances[0], dict) else record.get("input")
    return TestPrompt(text, given if isinstance(given, str) else "")
