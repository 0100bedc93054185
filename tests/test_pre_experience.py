"""Cherry LLM's pre-experience sampling: the instruction's perplexity under the LM (as
Cherry's `data_analysis.py --mod pre` computes it) and the middle band of it, evenly
sampled, in every k-means cluster (`data_by_cluster.py`)."""
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from typer.testing import CliRunner

import sftpick
from cli_errors import one_line_error
from sftpick.cli import app
from sftpick.selectors.pre_experience import middle_band
from sftpick.templates import render_prompt

SAMPLE = Path(sftpick.__file__).parent / "data" / "sample_alpaca.jsonl"


def test_middle_band_keeps_the_25_75_band_evenly():
    members = np.arange(20, 40)
    confidence = np.zeros(40)
    confidence[20:40] = 39 - np.arange(20, 40)  # descending: the band is found by value, kept in input order
    assert middle_band(members, confidence, 2, 25, 75).tolist() == [25, 30]
    assert middle_band(members, confidence, 30, 25, 75).tolist() == list(range(20, 40))  # cluster too small
    assert middle_band(members, confidence, 12, 25, 75).tolist() == list(range(25, 35))  # band too narrow


def test_each_cluster_gives_its_band():
    rng = np.random.default_rng(0)
    centers = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    vectors = np.concatenate([c + rng.normal(scale=0.1, size=(20, 2)) for c in centers]).astype(np.float32)
    table = pa.table({"row": np.arange(60), "ppl_ins": rng.uniform(1, 50, size=60)})
    selection = sftpick.select(table, 9, strategy="pre_experience", clusters=3, embeddings=vectors)
    assert selection.params["by"] == "ppl_ins" and selection.stats == {"clusters": 3, "per_cluster": 3}
    chosen = selection.order
    assert len(chosen) == 9
    values = table.column("ppl_ins").to_numpy()
    for c in range(3):
        members = np.arange(20 * c, 20 * (c + 1))
        picked = [p for p in chosen if p in members]
        low, high = np.percentile(values[members], [25, 75])
        assert len(picked) == 3 and all(low <= values[p] <= high for p in picked)


def test_instruction_perplexity_is_cherry_s(real_dataset):
    """exp(mean loss over the Alpaca prompt's tokens), as `model(ids, labels=ids).loss` gives it."""
    from sftpick.scorers.instruction_ppl import InstructionPerplexity

    scorer = InstructionPerplexity(device="cpu")
    scorer.setup()
    examples = real_dataset.examples[:4]
    got = scorer.score(examples)["ppl_ins"]
    lm = scorer.lm_
    for example, value in zip(examples, got):
        ids = lm.tokenizer(render_prompt(example, "alpaca"), return_tensors="pt")["input_ids"][:, :512]
        with torch.inference_mode():
            expected = torch.exp(lm.model(ids, labels=ids).loss).item()
        assert value == pytest.approx(expected, rel=1e-4)


def test_lm_hidden_states_are_cherry_s_sentence_embeddings(real_dataset):
    """Mean over the prompt's tokens of the last hidden state, as `hidden_states[-1].mean(dim=1)`."""
    from sftpick.embeddings import embed_examples, example_text
    from sftpick.models import load_causal_lm

    examples = real_dataset.examples[:3]
    vectors = embed_examples(examples, model="lm:smollm2-135m", text="prompt", device="cpu")
    lm = load_causal_lm("smollm2-135m", device="cpu")
    for example, vector in zip(examples, vectors):
        ids = lm.tokenizer(example_text(example, "prompt"), return_tensors="pt")["input_ids"][:, :512]
        with torch.inference_mode():
            expected = lm.model(ids, output_hidden_states=True).hidden_states[-1].mean(dim=1)[0].numpy()
        np.testing.assert_allclose(vector, expected, rtol=1e-4, atol=1e-4)


def test_cli_runs_cherry_s_recipe(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(SAMPLE), "-o", str(out), "--scorers", "ppl_ins",
                                      "--strategy", "pre_experience", "--clusters", "4", "--budget", "8",
                                      "--max-length", "128", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["selection"]["by"] == "ppl_ins" and manifest["counts"]["selected"] == 8
    assert manifest["selection"]["stats"] == {"clusters": 4, "per_cluster": 2}
    from sftpick.embeddings import load_embeddings

    rows, vectors, meta = load_embeddings(out / "scores.embeddings-lm_smollm2-135m.parquet")  # the LM's, kept
    assert (meta["model"], meta["text"], vectors.shape) == ("lm:smollm2-135m", "prompt", (120, 576))


def test_it_clusters_with_the_model_that_scored_ppl_ins_and_refuses_another(tmp_path):
    """Cherry uses one LM for the perplexity and the clustering: by default the scores' own
    (read from their metadata), and an LM that is not it is refused with a clear message."""
    from sftpick.embeddings import load_embeddings
    from sftpick.models import resolve_lm_source

    folder = resolve_lm_source("smollm2-135m")  # the same weights under another name: the .gguf file
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(SAMPLE.read_text().splitlines()[:30]) + "\n")
    scores = tmp_path / "s.parquet"
    sftpick.score(data, scores, scorers=["ppl_ins"], model=folder, device="cpu", max_length=128, progress=False)
    selection = sftpick.select(scores, 6, strategy="pre_experience", clusters=3, data=data)
    assert selection.params["embeddings"]["model"] == f"lm:{folder}"
    (vectors_file,) = tmp_path.glob("s.embeddings-lm_*.parquet")  # its own file, named after the LM
    _, _, meta = load_embeddings(vectors_file)
    assert meta["model"] == f"lm:{folder}" and meta["text"] == "prompt"
    result = CliRunner().invoke(app, ["select", str(data), "--scores", str(scores), "-o", str(tmp_path / "x.jsonl"),
                                      "--strategy", "pre_experience", "--budget", "6", "--embedder",
                                      "lm:smollm2-135m"])
    assert result.exit_code == 2
    message = one_line_error(result.output)
    assert f"clusters with another LM than the one that scored ppl_ins ({folder!r})" in message
    assert f"--embedder lm:{folder}" in message and not (tmp_path / "x.jsonl").exists()
    other = sftpick.select(scores, 6, strategy="pre_experience", clusters=3, data=data, embedder="all-minilm-l6-v2")
    assert other.params["embeddings"]["model"] == "all-minilm-l6-v2"  # a sentence embedder may stand in
