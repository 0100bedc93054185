"""The AlpaGasus judge against a real OpenAI-compatible server on loopback: `transformers
serve` with the embedded SmolLM2-135M, started and stopped here, and a fault-injecting proxy
in front of it. Every record is rated exactly once and none is lost, whatever the faults; a
failed run keeps its ratings and a rerun sends no request for them; the API key reaches no
file, log line or error message.

SmolLM2-135M is no judge: under AlpaGasus's prompt it writes prose, which is rejected (no
parsable score). The tests use a short prompt to which it sometimes answers with a number,
so both the score and the reject path run on real replies."""
import dataclasses
import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter

import pytest
from judge_servers import FaultProxy, embedded_model_folder, serving, transformers_serve
from processes import kill_when

import sftpick
from sftpick.api import build_scorers
from sftpick.cache import Journal
from sftpick.scorers.judge import collapse_note, parse_rating, rate
from sftpick.scorers.judge_client import JudgeRefused, JudgeUnavailable, retry_after
from sftpick.scorers.judge_prompts import ALPAGASUS_SYSTEM, ALPAGASUS_USER, load_prompt

TEST_PROMPT = {"user": "Instruction: {instruction}\nResponse: {response}\n\n"
                       "Rate the response from 0 to 5. Reply with just the number, for example: 4"}
N_RECORDS = 6  # each rating takes the tiny model about a second on a busy CPU


# ---------------------------------------------------------------------------- no server needed
@pytest.mark.parametrize("reply, expected", [
    ("4.5\n\nThe response is accurate but brief.", 4.5),  # AlpaGasus: the first line is the score
    ("  5", 5.0), ("3.", 3.0),
    ("The response is fine.\nScore: 4.5", 4.5),  # else the number after "score:"
    ("**Score:** 2", 2.0), ("score:0\nbad", 0.0),
    ("I would give it 4 out of 5", None), ("4/5", None), ("nan", None), ("", None),
])
def test_parse_rating_follows_alpagasus(reply, expected):
    assert parse_rating(reply) == expected


@pytest.mark.parametrize("reply, reason", [
    ("7", r"judge's score outside 0-5 \(7\): '7'"),
    ("-1\nterrible", r"judge's score outside 0-5 \(-1\)"),
    ("### Explanation:\nThe response contains a score of 5", "no parsable score in the judge's reply: '### Explanation"),
])
def test_a_reply_without_a_score_in_range_is_a_reject_never_a_default(reply, reason):
    rating, why = rate(reply)
    assert rating is None
    assert re.search(reason, why), why


def test_a_collapsed_judge_is_noted():
    assert collapse_note(Counter({3.0: 18, 4.0: 1})) is None  # too few to tell
    assert "rated 28 of 30 records 3" in collapse_note(Counter({3.0: 28, 4.0: 1, 5.0: 1}))
    assert collapse_note(Counter({3.0: 20, 4.0: 10})) is None


def test_the_alpagasus_prompt_is_the_authors(real_dataset):
    prompt = load_prompt("alpagasus")
    assert prompt.system == ALPAGASUS_SYSTEM and prompt.user == ALPAGASUS_USER
    example = real_dataset.examples[0]
    system, user = prompt.messages(example)
    assert user["content"].startswith(f"###Instruction:\n{example.instruction}\n\n### Input:\n{example.input}\n\n"
                                      f"### Response:\n{example.response}\n\nPlease rate according to the accuracy")
    assert user["content"].endswith("avoiding any potential bias. \n\n")


def test_record_text_with_braces_is_not_a_placeholder(real_dataset):
    example = dataclasses.replace(real_dataset.examples[0], instruction="Print {response} and {input}")
    user = load_prompt("alpagasus").messages(example)[-1]["content"]
    assert user.startswith("###Instruction:\nPrint {response} and {input}\n")


def test_the_paper_prompt_is_figure_3_with_a_dimension_slot(real_dataset):
    example = real_dataset.examples[2]  # one with an input
    system, user = load_prompt("alpagasus-paper").messages(example)
    assert system["content"] == (f"{ALPAGASUS_SYSTEM}\nInstruction: {example.instruction}\nInput: {example.input}\n"
                                 f"Response: {example.response}")
    assert user["content"].startswith("Please rate according to the accuracy of the response to the instruction and "
                                      "the input. Each assistant receives a score on a scale of 0 to 5, where a higher "
                                      "score indicates higher level of the accuracy. Please first output a single line "
                                      "containing the value indicating the scores.")
    helpful = load_prompt("alpagasus-paper", "helpfulness")
    assert "according to the helpfulness" in helpful.user and "level of the helpfulness" in helpful.user
    assert len({load_prompt("alpagasus-paper").sha256, helpful.sha256, load_prompt("alpagasus").sha256}) == 3
    assert load_prompt("alpagasus-gpt4life") == load_prompt("alpagasus")  # the default, under a name that says whose
    with pytest.raises(ValueError, match="this prompt has no {dimension} slot"):
        load_prompt("alpagasus", "helpfulness")


def test_a_prompt_file_may_hold_the_record_in_its_system_message(tmp_path, real_dataset):
    path = tmp_path / "prompt.json"
    path.write_text(json.dumps({"system": "Rate this.\nInstruction: {instruction}\nResponse: {response}",
                                "user": "Rate its {dimension} from 0 to 5."}))
    system, user = load_prompt(str(path), "clarity").messages(real_dataset.examples[0])
    assert system["content"].endswith(f"Response: {real_dataset.examples[0].response}")
    assert user["content"] == "Rate its clarity from 0 to 5."


@pytest.mark.parametrize("options, message", [
    ({}, "needs --judge-url"),
    ({"judge_url": "ftp://host/v1"}, "should be an http:// or https:// URL"),
    ({"judge_url": "http://user:hunter2@/v1"}, r"judge_url='http://\*\*\*@/v1'"),
    ({"judge_url": "http://h/v1"}, "needs --judge-model"),
    ({"judge_url": "http://h/v1", "judge_model": "m", "concurrency": 0}, "concurrency=0 should be a whole number >= 1"),
    ({"judge_url": "http://h/v1", "judge_model": "m", "judge_timeout": 0}, "judge_timeout=0 should be a number > 0"),
    ({"judge_url": "http://h/v1", "judge_model": "m", "judge_prompt": "alpagassus"}, "neither a built-in prompt"),
    ({"judge_url": "http://h/v1", "judge_model": "m", "judge_dimension": "helpfulness"}, "no {dimension} slot"),
    ({"judge_url": "http://h/v1", "judge_model": "m", "judge_key_env": "sk-live-123"}, "NAME of an environment variable"),
    ({"judge_url": "http://h/v1", "judge_model": "m", "judge_key_env": "SFTPICK_NO_SUCH_VAR"},
     "SFTPICK_NO_SUCH_VAR .* is not set"),
])
def test_options_are_checked_before_any_request(options, message):
    with pytest.raises(ValueError, match=message) as error:
        build_scorers(["judge"], options)
    assert "hunter2" not in str(error.value) and "sk-live-123" not in str(error.value)


@pytest.mark.parametrize("content, message", [
    ("not json", "is not JSON"), ('{"system": "x"}', 'string "user"'),
    ('{"user": "Rate {instruction}"}', r"no \{response\} placeholder"), ('{"user": "{response}", "tone": 1}', "unknown key"),
])
def test_a_bad_prompt_file_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "prompt.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_prompt(str(path))


def test_retry_after_reads_seconds_and_dates():
    assert retry_after("2") == 2.0 and retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait


# ---------------------------------------------------------------------------- a real server
@pytest.fixture(scope="module")
def judge_server(tmp_path_factory):
    folder = embedded_model_folder()
    log = tmp_path_factory.mktemp("serve") / "transformers-serve.log"
    with transformers_serve(folder, log) as url:
        yield url, str(folder)


@pytest.fixture(scope="module")
def records(tmp_path_factory, real_records_path):
    folder = tmp_path_factory.mktemp("judge-data")
    data = folder / "data.json"
    data.write_text(json.dumps(json.loads(real_records_path.read_text())[:N_RECORDS]))
    prompt = folder / "prompt.json"
    prompt.write_text(json.dumps(TEST_PROMPT))
    return data, str(prompt)


def _judge(data, out, url, model, prompt, **options):
    options = {"concurrency": 3, "judge_max_tokens": 4, "judge_timeout": 20.0, **options}
    return sftpick.score(data, out, scorers=["judge"], judge_url=url, judge_model=model, judge_prompt=prompt,
                         progress=False, **options)


def _outcomes(result) -> dict[int, object]:
    """row -> rating or reject reason: every record's one outcome."""
    table = result.table.to_pydict()
    outcomes = dict(zip(table["row"], table["judge"]))
    for reject in result.rejects:
        assert reject.row not in outcomes, f"row {reject.row} is both rated and rejected"
        outcomes[reject.row] = reject.reason
    return outcomes


@pytest.fixture(scope="module")
def direct(judge_server, records, tmp_path_factory):
    """Every record rated straight from the server, no fault."""
    url, model = judge_server
    data, prompt = records
    out = tmp_path_factory.mktemp("direct") / "scores.parquet"
    return _judge(data, out, url, model, prompt), out


def test_every_record_gets_one_rating_or_a_reject_with_the_reply(direct):
    result, _ = direct
    outcomes = _outcomes(result)
    assert sorted(outcomes) == list(range(N_RECORDS))
    stats = result.timings["judge"]
    assert stats["requests"] == N_RECORDS and stats["retries"] == 0 and stats["rated_now"] == N_RECORDS
    assert sum(stats["ratings_now"].values()) + stats["rejected_now"] == N_RECORDS
    for value in outcomes.values():
        assert isinstance(value, str) and value.startswith(("no parsable score in the judge's reply: '",
                                                            "judge's score outside 0-5")) or 0 <= value <= 5


def test_the_paper_prompt_rates_through_a_real_server(judge_server, records, tmp_path):
    url, model = judge_server
    result = _judge(records[0], tmp_path / "paper.parquet", url, model, "alpagasus-paper",
                    judge_dimension="helpfulness")
    assert sorted(_outcomes(result)) == list(range(N_RECORDS))
    assert result.scorers[0]["dimension"] == "helpfulness"
    assert result.scorers[0]["prompt_sha256"] == load_prompt("alpagasus-paper", "helpfulness").sha256


def test_a_rerun_sends_no_request(direct, judge_server, records):
    result, out = direct
    url, model = judge_server
    again = _judge(records[0], out, url, model, records[1])
    assert again.timings["judge"]["requests"] == 0 and again.timings["judge"]["from_cache"] == N_RECORDS
    assert _outcomes(again) == _outcomes(result)


def test_through_faults_every_record_is_rated_exactly_once(direct, judge_server, records, tmp_path):
    url, model = judge_server
    data, prompt = records
    proxy = FaultProxy(url, seed=1, rate=0.3, delay=9.0)
    with serving(proxy) as proxy_url:  # two at a time: a real answer waits for at most one other
        result = _judge(data, tmp_path / "scores.parquet", proxy_url, model, prompt, concurrency=2,
                        judge_timeout=8.0, judge_retries=8, judge_backoff=0.05)
        rerun = _judge(data, tmp_path / "scores.parquet", proxy_url, model, prompt)
    assert set(proxy.faults) == {"drop", "delay", "429", "500"}
    assert _outcomes(result) == _outcomes(direct[0])  # no fault became a reject or a score
    assert sorted(proxy.forwarded.values()) == [1] * N_RECORDS  # the server rated each record once
    stats = result.timings["judge"]
    assert stats["transient_failures"] == stats["retries"] >= sum(proxy.faults.values())
    assert rerun.timings["judge"]["requests"] == 0 and proxy.requests == stats["requests"]


def test_a_judge_that_goes_down_stops_the_run_and_keeps_every_rating(direct, judge_server, records, tmp_path):
    url, model = judge_server
    data, prompt = records
    out = tmp_path / "scores.parquet"
    down = FaultProxy(url, first=(), rate=0.0, down_after=2)
    with serving(down) as proxy_url, pytest.raises(JudgeUnavailable) as error:
        _judge(data, out, proxy_url, model, prompt, concurrency=1, judge_retries=2, judge_backoff=0.01)
    message = str(error.value)
    assert "failed 3 times for one record (last: HTTP 503)" in message
    assert "2 ratings are done and saved" in message and "run the same command again" in message
    assert not out.exists()
    healthy = FaultProxy(url, first=(), rate=0.0)
    with serving(healthy) as proxy_url:
        resumed = _judge(data, out, proxy_url, model, prompt)
    assert healthy.requests == N_RECORDS - 2  # the two saved ratings are not asked again
    assert resumed.timings["judge"]["from_journal"] == 2
    assert _outcomes(resumed) == _outcomes(direct[0])  # the 503s were never cached as rejects


def test_a_killed_run_resumes_from_its_journal(direct, judge_server, records, tmp_path):
    url, model = judge_server
    data, prompt = records
    out = tmp_path / "scores.parquet"
    kill_when([sys.executable, "-m", "sftpick.cli", "score", str(data), "-o", str(out), "--scorers", "judge",
               "--judge-url", url, "--judge-model", model, "--judge-prompt", prompt, "--concurrency", "1",
               "--judge-max-tokens", "4", "--no-progress"],
              lambda: len(_journal_lines(tmp_path)) >= 2, what="two ratings saved", within=240, poll=0.1)
    saved = len(_journal_lines(tmp_path))
    assert 2 <= saved < N_RECORDS and not out.exists()
    proxy = FaultProxy(url, first=(), rate=0.0)
    with serving(proxy) as proxy_url:
        resumed = _judge(data, out, proxy_url, model, prompt)
    assert proxy.requests == N_RECORDS - saved
    assert _outcomes(resumed) == _outcomes(direct[0])


def _journal_lines(folder) -> list[dict]:
    """The whole lines of the judge's journal under `folder` (a kill may tear the last one)."""
    lines = []
    for journal in folder.glob("*.cache/judge-*/journal.jsonl"):
        for line in journal.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
    return lines


def test_the_judge_works_on_the_ray_engine_and_shares_its_cache(judge_server, records, tmp_path):
    """On `--engine ray` the judge rates in the driver (engines/ray.py says why), journaling
    each rating, while `mtld` runs in the actors; a local rerun then sends no request."""
    pytest.importorskip("ray", reason="the ray engine needs pip install 'sftpick[ray]'")
    url, model = judge_server
    data, prompt = records
    out = tmp_path / "scores.parquet"
    on_ray = sftpick.score(data, out, scorers=["judge", "mtld"], judge_url=url, judge_model=model,
                           judge_prompt=prompt, concurrency=3, judge_max_tokens=4, progress=False, engine="ray")
    assert sorted(_outcomes(on_ray)) == list(range(N_RECORDS))
    assert on_ray.timings["judge"]["requests"] == N_RECORDS and len(_journal_lines(tmp_path)) == N_RECORDS
    assert json.loads((tmp_path / "scores.manifest.json").read_text())["engine"]["engine"] == "ray"
    local = _judge(data, out, url, model, prompt)
    assert local.timings["judge"]["requests"] == 0 and _outcomes(local) == _outcomes(on_ray)


def test_a_torn_journal_line_is_skipped_and_the_next_stands_alone(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append("a", {"judge": 4.0, "_reject": None})
    with open(journal.path, "a") as out:
        out.write('{"content_hash": "b", "jud')  # killed mid-write
    assert journal.load() == {"a": {"judge": 4.0, "_reject": None}}
    journal.append("c", {"judge": float("nan"), "_reject": "no parsable score in the judge's reply: 'x'"})
    loaded = journal.load()
    assert sorted(loaded) == ["a", "c"] and loaded["c"]["_reject"].startswith("no parsable")


def test_a_refused_key_stops_the_run_at_once(judge_server, records, tmp_path, monkeypatch):
    url, model = judge_server
    monkeypatch.setenv("SFTPICK_TEST_JUDGE_KEY", "sk-wrong-" + uuid.uuid4().hex)
    proxy = FaultProxy(url, first=(), rate=0.0, key="the-right-key")
    with serving(proxy) as proxy_url, pytest.raises(JudgeRefused, match="HTTP 401 .check the key") as error:
        _judge(records[0], tmp_path / "s.parquet", proxy_url, model, records[1], judge_key_env="SFTPICK_TEST_JUDGE_KEY")
    assert os.environ["SFTPICK_TEST_JUDGE_KEY"] not in str(error.value) and "***" in str(error.value)
    assert proxy.requests <= 3  # one per worker at most: no retries


def test_the_key_reaches_no_file_log_line_or_error(judge_server, records, tmp_path):
    url, model = judge_server
    data, prompt = records
    key = "sk-test-" + uuid.uuid4().hex
    env = {**os.environ, "SFTPICK_TEST_JUDGE_KEY": key}
    refused = json.loads(data.read_text())[0]["output"][:20]  # the proxy echoes the key in its 400 body
    assert json.dumps(refused)[1:-1] == refused  # found as is in the JSON request
    proxy = FaultProxy(url, seed=2, rate=0.3, first=("429", "500"), key=key, refuse=refused)
    out = tmp_path / "out"
    judge = ["--scorers", "judge", "--judge-url", None, "--judge-model", model, "--judge-prompt", prompt,
             "--judge-key-env", "SFTPICK_TEST_JUDGE_KEY", "--concurrency", "3", "--judge-max-tokens", "4",
             "--no-progress"]
    with serving(proxy) as proxy_url:
        judge[3] = proxy_url
        ran = _cli("run", data, "-o", out, "--by", "judge", "--budget", "1", *judge, env=env)
        proxy.down_after = 0  # now every request fails: the error message must not hold the key either
        failed = _cli("score", data, "-o", tmp_path / "again.parquet", *judge, "--judge-retries", "1", env=env)
    assert ran.returncode == 0, ran.stderr
    assert "judge: " in ran.stderr and "retries; ratings made now by value:" in ran.stderr
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert failed.stderr.strip().splitlines()[-1].startswith("error: the judge at") and "failed 2 times" in failed.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"manifest.json", "scores.parquet", "rejects.jsonl", "journal.jsonl"} <= {p.name for p in files}
    for path in files:
        assert key.encode() not in path.read_bytes(), path
    for text in (ran.stdout, ran.stderr, failed.stdout, failed.stderr):
        assert key not in text
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert any("HTTP 400" in r["reason"] and "***" in r["reason"] for r in rejects)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["timings"]["scorers"]["judge"]["transient_failures"] >= 2
    assert manifest["scorers"][0]["prompt_sha256"] and "judge_key_env" not in json.dumps(manifest["scorers"])


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "sftpick.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_concurrency_overlaps_requests(judge_server, records, tmp_path):
    """With --concurrency 3 the proxy sees requests in flight together (the server may still
    run them one at a time: transformers serve on CPU does)."""
    url, model = judge_server
    seen = []

    class Watch(FaultProxy):
        in_flight = 0

        async def __call__(self, scope, receive, send):
            Watch.in_flight += 1
            seen.append(Watch.in_flight)
            try:
                await super().__call__(scope, receive, send)
            finally:
                Watch.in_flight -= 1

    with serving(Watch(url, first=(), rate=0.0)) as proxy_url:
        _judge(records[0], tmp_path / "s.parquet", proxy_url, model, records[1], concurrency=3)
    assert max(seen) == 3
