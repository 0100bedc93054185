"""Judged win rates (Cherry LLM's protocol): the pairwise parse and the both-orders rule against
Cherry's own counting, the win rate and its interval, the test-set formats, and a whole
`sftpick eval --prompts` against `transformers serve` on loopback (the embedded model judging:
a weak judge, the real protocol), whose rerun asks the judge nothing."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from judge_servers import FaultProxy, embedded_model_folder, serving, transformers_serve
from sftpick.cli import app
from sftpick.io.prompts import load_prompts
from sftpick.train.winrate import outcome, parse_pair, summarize_outcomes


@pytest.mark.parametrize("reply, expected", [
    ("8 7\nAssistant 1 is more detailed.", (8.0, 7.0)), ("9, 6", (9.0, 6.0)), ("  7.5 7.5  ", (7.5, 7.5)),
    ("8\n7", None), ("8 7 6", None), ("Assistant 1: 8", None), ("", None),
])
def test_the_pair_of_scores_is_read_as_cherry_reads_it(reply, expected):
    assert parse_pair(reply) == expected


def cherry_count(k1, k2, k1_reverse, k2_reverse) -> str:
    """review_eval_score.py's get_scores_all, one prompt (k1: the arm, first in `scores`)."""
    if (k1 > k2 and k1_reverse > k2_reverse) or (k1 == k2 and k1_reverse > k2_reverse) or \
            (k1 > k2 and k1_reverse == k2_reverse):
        return "win"
    if (k1 < k2 and k1_reverse < k2_reverse) or (k1 == k2 and k1_reverse < k2_reverse) or \
            (k1 < k2 and k1_reverse == k2_reverse):
        return "loss"
    return "tie"


def test_the_both_orders_rule_is_cherry_s():
    for a, b, c, d in itertools.product([3.0, 5.0, 7.0], repeat=4):
        forward, reverse = (a, b), (c, d)  # reverse: the reference is Assistant 1
        assert outcome(forward, reverse) == cherry_count(a, b, d, c), (forward, reverse)
    assert outcome(None, (5, 5)) == outcome((5, 5), None) == "unparsed"


def test_the_win_rate_is_wins_minus_losses_over_the_judged_plus_one():
    outcomes = ["win"] * 6 + ["tie"] * 3 + ["loss"] * 1 + ["unparsed"] * 2
    summary = summarize_outcomes(outcomes)
    assert (summary["wins"], summary["ties"], summary["losses"], summary["unparsed"], summary["n"]) == (6, 3, 1, 2, 12)
    assert summary["win_rate"] == pytest.approx((6 - 1) / 10 + 1)
    low, high = summary["ci"]
    assert low < summary["win_rate"] < high and 1.0 <= low and high <= 2.0
    assert summarize_outcomes(["unparsed"])["win_rate"] is None


def test_prompt_files_in_cherry_s_formats_and_as_records(tmp_path):
    cherry = tmp_path / "cherry.jsonl"
    cherry.write_text("\n".join(json.dumps(r) for r in [
        {"question_id": 1, "text": "How can I sleep better?", "category": "generic"},  # Vicuna
        {"id": "k", "prompt": "Write a haiku."},  # Koala
        {"id": "s", "instruction": "Fix the grammar.", "instances": [{"input": "me go home", "output": ""}]},
        {"idx": 3, "Instruction": "Explain entropy."},  # WizardLM
        {"conversations": "Tell me a joke."}]) + "\n")  # LIMA
    prompts = load_prompts(cherry)
    assert [p.question for p in prompts] == ["How can I sleep better?", "Write a haiku.", "Fix the grammar.\nme go home",
                                             "Explain entropy.", "Tell me a joke."]
    records = tmp_path / "records.json"
    records.write_text(json.dumps([{"instruction": "Add 2 and 3.", "input": "", "output": "5"}]))
    assert [p.question for p in load_prompts(records)] == ["Add 2 and 3."]


# ---------------------------------------------------------------------------- a real judge
@pytest.fixture(scope="module")
def judge_url(tmp_path_factory):
    folder = embedded_model_folder()
    with transformers_serve(folder, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url, str(folder)


def test_eval_judges_every_arm_against_random_and_a_rerun_asks_nothing(judge_url, tmp_path, real_records_path):
    records = json.loads(real_records_path.read_text())
    for name, rows in (("subset", records[:4]), ("pool", records[:16]), ("heldout", records[20:23])):
        (tmp_path / f"{name}.json").write_text(json.dumps(rows))
    prompts = tmp_path / "vicuna.jsonl"
    prompts.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["Name a color.", "Say hello.", "Count to 3."]))
    url, model = judge_url
    proxy = FaultProxy(url, first=(), rate=0.0)
    args = ["eval", "--train", str(tmp_path / "subset.json"), "--baseline", "random", "--pool", str(tmp_path / "pool.json"),
            "--eval-set", str(tmp_path / "heldout.json"), "--prompts", str(prompts), "--max-new-tokens", "6",
            "--max-length", "96", "--max-steps", "1", "--batch-size", "4", "--device", "cpu", "--no-progress",
            "--concurrency", "2", "--judge-max-tokens", "8", "--judge-timeout", "120", "-o", str(tmp_path / "eval")]
    with serving(proxy) as proxy_url:
        done = CliRunner().invoke(app, [*args, "--judge-url", proxy_url, "--judge-model", model])
        assert done.exit_code == 0, done.output
        asked = proxy.requests
        again = CliRunner().invoke(app, [*args, "--judge-url", proxy_url, "--judge-model", model])
        assert again.exit_code == 0, again.output
    result = json.loads((tmp_path / "eval" / "result.json").read_text())
    rates = result["win_rate"]
    assert set(rates) == {"subset"} and set(rates["subset"]) == {"vicuna", "overall"}
    cell = rates["subset"]["vicuna"]
    assert cell["wins"] + cell["ties"] + cell["losses"] + cell["unparsed"] == cell["n"] == 3
    assert 2 * 3 <= asked <= 2 * 3 * 3  # both orders of every prompt, an unparsed reply asked again at most twice
    assert proxy.requests == asked  # the rerun asked the judge nothing
    assert all(arm["reused"] for arm in json.loads((tmp_path / "eval" / "result.json").read_text())["arms"])
    assert result["win_rate_settings"]["reference"] == "random" and result["win_rate_settings"]["max_new_tokens"] == 6
    answers = list((tmp_path / "eval" / "generations").glob("*.jsonl"))
    assert len(answers) == 2 and all(len(a.read_text().splitlines()) == 3 for a in answers)
    assert "Win rates" in (tmp_path / "eval" / "result.html").read_text()
    assert np.isfinite(result["summary"][0]["eval"]["heldout"]["mean"])


def test_win_rate_options_are_checked_before_any_model_loads(tmp_path, real_records_path):
    train = tmp_path / "subset.json"
    train.write_text(json.dumps(json.loads(real_records_path.read_text())[:4]))
    base = ["eval", "--train", str(train), "--eval-set", str(train), "-o", str(tmp_path / "e"), "--model", "no-such"]
    cases = [(["--prompts", str(train)], "needs --judge-url"),
             (["--prompts", str(train), "--judge-url", "http://127.0.0.1:9/v1", "--judge-model", "m"],
              "reference='random' is none of the arms"),
             (["--prompts", str(tmp_path / "none.jsonl"), "--judge-url", "http://h/v1", "--judge-model", "m"],
              "none.jsonl: no such file")]
    for extra, message in cases:
        done = CliRunner().invoke(app, [*base, *extra])
        assert done.exit_code == 2 and message in done.output, done.output
