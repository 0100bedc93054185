"""RDS+ (arXiv 2503.01807) as a strategy, on the real embedded SmolLM2-135M and real records:
the pooling against a hand-written weighted sum of the model's hidden states (one record at a
time, as the authors' code runs, against sftpick's padded batches), the picks against a plain
round-robin loop over the cosine matrix of those hand-made vectors, the cache, the subtasks,
`--target` mistakes refused before any model loads, and a whole `sftpick.run`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from cli_errors import one_line_error
from typer.testing import CliRunner

import sftpick
from sftpick.cli import app
from sftpick.errors import DataError, OptionError, SftpickError
from sftpick.models import load_causal_lm
from sftpick.spans import micro_batches
from sftpick.selectors.rds import RDS, embed_ids, pad_id, token_ids, tulu_conversation

SAMPLE = Path(sftpick.__file__).parent / "data" / "sample_alpaca.jsonl"
MAX_LENGTH = 96
TASKS = ["write", "explain", "write", "list", "explain", "write"]  # subtasks of the six targets


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lm():
    return load_causal_lm(device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def targets(tmp_path_factory) -> Path:
    """Six real records of the bundled sample, each with a `task` field."""
    lines = SAMPLE.read_text().splitlines()[:6]
    path = tmp_path_factory.mktemp("targets") / "targets.jsonl"
    path.write_text("".join(json.dumps({**json.loads(line), "task": task}) + "\n" for line, task in zip(lines, TASKS)))
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rds-cache")


def table_of(examples) -> pa.Table:
    return pa.table({"row": [e.row for e in examples], "id": [e.id for e in examples]})


def strategy(targets: Path, records, workdir: Path | None, **options) -> RDS:
    chosen = RDS(target=targets, max_length=MAX_LENGTH, device="cpu", by=None, **options)
    chosen.records_, chosen.workdir_ = records, workdir
    return chosen


def hand_pooled(lm, ids: list[int]) -> np.ndarray:
    """The code's way: one record, no padding, `hidden_states[-1]`, Σ_t t·h_t / Σ_t t."""
    with torch.inference_mode():
        hidden = lm.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
    hidden = hidden.double().numpy()
    total = np.zeros(hidden.shape[1])
    for t, h in enumerate(hidden, start=1):
        total += t * h
    return total / (len(ids) * (len(ids) + 1) / 2)


@pytest.fixture(scope="module")
def reference(lm, real_dataset, targets):
    """Candidate and target vectors made by hand, one record at a time."""
    from sftpick.io import read_dataset

    target_examples = read_dataset(targets).examples
    tokenizer = lm.tokenizer
    candidate_ids = token_ids(real_dataset.examples, tokenizer, "tulu", MAX_LENGTH, "candidate")
    target_ids = token_ids(target_examples, tokenizer, "tulu", MAX_LENGTH, "target")
    return (np.array([hand_pooled(lm, ids) for ids in candidate_ids]),
            np.array([hand_pooled(lm, ids) for ids in target_ids]))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T


def reference_round_robin(similarity: np.ndarray, budget: int, order, skip_taken: bool) -> list[int]:
    """The plain loop of `get_top_influences.py`: full stable sorts, one pop per turn."""
    ranked = {q: list(np.argsort(-similarity[:, q], kind="stable")) for q in order}
    chosen: list[int] = []
    while len(chosen) < min(budget, len(similarity)):
        for q in order:
            while skip_taken and ranked[q] and ranked[q][0] in chosen:
                ranked[q].pop(0)
            if ranked[q]:
                x = int(ranked[q].pop(0))
                if x not in chosen:
                    chosen.append(x)
    return chosen[:budget]


# ---------------------------------------------------------------- text and pooling

def test_a_candidate_is_its_tulu_conversation(lm, real_dataset):
    example = real_dataset.examples[0]
    eos = lm.tokenizer.eos_token
    user = example.instruction + ("\n" + example.input if example.input else "")
    text = f"<|user|>\n{user.strip()}\n<|assistant|>\n{example.response.strip()}{eos}"
    assert tulu_conversation(example.messages, eos) == text
    assert token_ids([example], lm.tokenizer, "tulu", 4096, "candidate")[0] == lm.tokenizer(text)["input_ids"]
    prompt = lm.tokenizer(f"<|user|>\n{user}\n<|assistant|>\n")["input_ids"]
    label = lm.tokenizer(example.response + eos, add_special_tokens=False)["input_ids"]
    assert token_ids([example], lm.tokenizer, "tulu", 4096, "target")[0] == prompt + label


def test_pooling_in_padded_batches_equals_the_hand_written_weighted_sum(lm, real_dataset):
    ids = token_ids(real_dataset.examples[:8], lm.tokenizer, "tulu", MAX_LENGTH, "candidate")
    ids[1], ids[5] = ids[1][:17], ids[5][:40]  # lengths vary: every batch below is padded
    budget = 2 * MAX_LENGTH
    batches = micro_batches(np.array([len(row) for row in ids]), budget)
    assert any(len({len(ids[i]) for i in batch}) > 1 for batch in batches), "no batch needed padding"
    pooled = embed_ids(lm.model, ids, pad_id=pad_id(lm.tokenizer), token_budget=budget)
    expected = np.array([hand_pooled(lm, row) for row in ids])
    assert pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, expected, rtol=0, atol=2e-4 * np.abs(expected).max())
    np.testing.assert_allclose(cosine(pooled, pooled), cosine(expected, expected), atol=1e-5)


# ---------------------------------------------------------------- selection through the strategy

@pytest.mark.parametrize("order, duplicates", [("shuffled", "skip"), ("file", "forfeit")])
def test_picks_are_the_round_robin_of_the_hand_made_cosines(real_dataset, targets, workdir, reference, order,
                                                            duplicates):
    examples = real_dataset.examples
    picker = strategy(targets, examples, workdir, target_order=order, rds_duplicates=duplicates)
    chosen = picker.select(table_of(examples), 15)
    candidates, target_vectors = reference
    similarity = cosine(candidates, target_vectors)
    turns = np.random.default_rng(42).permutation(6) if order == "shuffled" else np.arange(6)
    assert chosen.tolist() == reference_round_robin(similarity, 15, turns, duplicates == "skip")
    assert picker.stats_["targets"] == 6 and picker.stats_["passes"] >= 15 // 6
    assert picker.stats_["similarity"]["max"] == pytest.approx(similarity.max(), abs=1e-4)


def test_subtasks_take_turns_with_their_best_target(real_dataset, targets, workdir, reference):
    examples = real_dataset.examples
    picker = strategy(targets, examples, workdir, target_subtask="task")
    chosen = picker.select(table_of(examples), 10)
    similarity = cosine(*reference)
    names = sorted(set(TASKS))  # explain, list, write
    columns = np.stack([similarity[:, [t == name for t in TASKS]].max(axis=1) for name in names], axis=1)
    assert chosen.tolist() == reference_round_robin(columns, 10, range(3), True)
    assert picker.stats_["subtasks"] == {"explain": 2, "list": 1, "write": 3}


def test_vectors_are_cached_per_record_and_the_model_is_not_loaded_again(real_dataset, targets, workdir,
                                                                          monkeypatch):
    examples = real_dataset.examples
    first = strategy(targets, examples, workdir).select(table_of(examples), 9)
    assert list(workdir.glob("rds-*/config.json"))
    monkeypatch.setattr("sftpick.models.load_causal_lm", lambda *a, **k: pytest.fail("the model was loaded again"))
    again = strategy(targets, examples[::-1], workdir).select(table_of(examples[::-1]), 9)
    assert [examples[::-1][i].row for i in again] == [examples[i].row for i in first]  # the same records


def test_duplicate_records_give_distinct_positions_and_meet_the_budget(real_dataset, targets, workdir):
    examples = [e for e in real_dataset.examples[:4] for _ in range(3)]  # four records, three copies each
    table = pa.table({"row": np.arange(12), "id": [f"r{i}" for i in range(12)]})
    picker = strategy(targets, examples, workdir)
    chosen = picker.select(table, 10)
    assert len(chosen) == 10 == len(set(chosen.tolist()))
    assert chosen.tolist() == strategy(targets, examples, workdir).select(table, 10).tolist()
    assert len(strategy(targets, examples, workdir).select(table, 50)) == 12


def test_without_records_it_says_what_to_give(targets):
    picker = RDS(target=targets)
    with pytest.raises(DataError, match="give the data"):
        picker.select(pa.table({"row": [0, 1], "id": ["a", "b"]}), 1)


# ---------------------------------------------------------------- mistakes before any model loads

@pytest.fixture
def no_model(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")
    monkeypatch.setattr("sftpick.models.load_causal_lm", refuse)
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", refuse)
    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", refuse)


def bad_targets(tmp_path: Path) -> dict[str, tuple[Path | None, str | None, str]]:
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "unknown.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "ok.jsonl").write_text(SAMPLE.read_text().splitlines()[0] + "\n")
    return {"none": (None, None, "--target"), "missing": (tmp_path / "nope.jsonl", None, "nope.jsonl"),
            "empty": (tmp_path / "empty.jsonl", None, "empty.jsonl"),
            "no format": (tmp_path / "unknown.jsonl", None, "unknown.jsonl"),
            "other type": (tmp_path / "notes.txt", None, "notes.txt"),
            "no such field": (tmp_path / "ok.jsonl", "task", "task")}


def test_target_mistakes_fail_before_any_model_loads(tmp_path, real_records_path, no_model):
    for case, (target, subtask, named) in bad_targets(tmp_path).items():
        out = tmp_path / f"out-{case.replace(' ', '-')}"
        with pytest.raises(SftpickError) as error:
            sftpick.run(real_records_path, out, 5, strategy="rds", target=target, target_subtask=subtask,
                        progress=False)
        assert named in str(error.value), (case, str(error.value))
        assert not (out / "scores.parquet").exists(), case


def test_the_cli_refuses_a_missing_target_in_one_line(tmp_path, real_records_path, no_model):
    done = CliRunner().invoke(app, ["run", str(real_records_path), "-o", str(tmp_path / "out"),
                                                "--strategy", "rds", "--budget", "5"])
    assert done.exit_code == 2 and "--target" in one_line_error(done.output)
    done = CliRunner().invoke(app, ["run", str(real_records_path), "-o", str(tmp_path / "out"),
                                                "--strategy", "rds", "--target", str(tmp_path / "nope.jsonl")])
    assert done.exit_code == 2 and "nope.jsonl" in one_line_error(done.output)
    with pytest.raises(OptionError, match="rds_duplicates"):
        sftpick.run(real_records_path, tmp_path / "out", 5, strategy="rds", target=SAMPLE, rds_duplicates="drop")


# ---------------------------------------------------------------- end to end

def test_run_selects_for_the_target_from_a_data_file(tmp_path, real_records_path, targets, real_dataset,
                                                     reference):
    out = tmp_path / "out"
    scored, selection = sftpick.run(real_records_path, out, 8, strategy="rds", target=str(targets),
                                    max_length=MAX_LENGTH, device="cpu", order="pick", progress=False)
    similarity = cosine(*reference)
    expected = reference_round_robin(similarity, 8, np.random.default_rng(42).permutation(6), True)
    assert selection.order.tolist() == [real_dataset.examples[i].row for i in expected]
    manifest = json.loads((out / "manifest.json").read_text())
    stats = manifest["selection"]["stats"]
    assert stats["targets"] == 6 and stats["target_order"] == "shuffled (seed 42)" and stats["passes"] == 2
    assert list((out / "cache" / "strategies" / "rds").glob("rds-*/shard-*.parquet"))
    subset = json.loads((out / "selected.json").read_text())
    records = json.loads(real_records_path.read_text())
    assert subset == [records[i] for i in expected]
