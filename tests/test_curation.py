"""Curation before selection, end to end: duplicates and test records are removed before any
strategy chooses (counted per reason, each naming its kept twin or test record), found before
any model runs, resumed after a kill, shown in the report, and decontamination is on by
default in `study`. The methods' own numbers are tested in test_minhash, test_semdedup and
test_decontaminate."""
from __future__ import annotations

import json
import sys

import pyarrow.parquet as pq
import pytest
from processes import kill_when
from typer.testing import CliRunner

import sftpick
from cli_errors import one_line_error
from sftpick.cli import app
from sftpick.io import read_dataset

GSM8K = "gsm8k_test_sample.json"  # 50 real GSM8K problems


@pytest.fixture(scope="module")
def gsm8k(request) -> list[dict]:
    return json.loads((request.config.rootpath / "tests" / "fixtures" / GSM8K).read_text())


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_repeated_records_are_selected_once_and_the_summary_says_how_many_were_dropped(tmp_path, gsm8k):
    """The defect of issue 27: the 5 longest of 30 records three times each, 10 asked for."""
    records = gsm8k[:30]
    longest = sorted(range(30), key=lambda i: -len(records[i]["output"]))[:5]
    pool = records + [records[i] for i in longest for _ in range(2)]
    write_jsonl(tmp_path / "pool.jsonl", pool)
    done = CliRunner().invoke(app, ["run", str(tmp_path / "pool.jsonl"), "-o", str(tmp_path / "out"), "--scorers",
                                    "len", "--by", "len", "--budget", "10", "--no-progress"])
    assert done.exit_code == 0, done.output
    selected = [json.loads(line) for line in (tmp_path / "out" / "selected.jsonl").read_text().splitlines()]
    assert len(selected) == 10 and len({json.dumps(r, sort_keys=True) for r in selected}) == 10
    assert "dropped before ranking: 10 (exact duplicate of an earlier record)" in done.output
    assert "selected: 10 of 10 asked for" in done.output

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    counts, dropped = manifest["counts"], manifest["selection"]["dropped"]
    assert counts["removed_by_reason"] == {"exact duplicate": 10}
    assert counts["input"] == counts["scored"] + counts["rejected"] == 40
    table = pq.read_table(tmp_path / "out" / "scores.parquet").to_pydict()
    twins = {row: twin for row, twin in zip(table["row"], table["duplicate_of"]) if twin is not None}
    assert twins == {30 + 2 * k + j: longest[k] for k in range(5) for j in range(2)}  # each names the first copy
    assert all(table["len"][row] == table["len"][twin] for row, twin in twins.items())  # scores shared, not redone
    candidates = counts["scored"] - sum(dropped.values())
    assert candidates == 30 and dropped == {"exact duplicate of an earlier record": 10}


def test_dedup_none_keeps_duplicates_and_says_so(tmp_path, gsm8k):
    write_jsonl(tmp_path / "pool.jsonl", gsm8k[:6] + gsm8k[:2])
    done = CliRunner().invoke(app, ["run", str(tmp_path / "pool.jsonl"), "-o", str(tmp_path / "out"), "--scorers",
                                    "len", "--by", "len", "--budget", "8", "--dedup", "none", "--no-progress"])
    assert done.exit_code == 0, done.output
    assert "duplicates kept (--dedup none): 2 exact duplicates" in done.output
    assert len((tmp_path / "out" / "selected.jsonl").read_text().splitlines()) == 8
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["curation"]["exact_duplicates_kept"] == 2 and "removed_by_reason" not in manifest["counts"]
    assert "removed" not in pq.read_schema(tmp_path / "out" / "scores.parquet").names


def edited_copies(record: dict) -> list[dict]:
    """Light edits a near-duplicate test should see through: spacing and punctuation, one word,
    one number."""
    words = record["instruction"].split()
    changed_word = [*words[:6], "banana", *words[7:]]
    number = next(i for i, w in enumerate(words) if any(c.isdigit() for c in w))
    changed_number = [*words[:number], "987", *words[number + 1:]]
    return [{**record, "instruction": "  ".join(words) + " !!"}, {**record, "instruction": " ".join(changed_word)},
            {**record, "instruction": " ".join(changed_number)}]


def test_near_duplicates_and_test_records_are_removed_before_any_scorer_runs(tmp_path, gsm8k):
    pool = gsm8k[:40] + edited_copies(gsm8k[3]) + edited_copies(gsm8k[7])[:1]
    write_jsonl(tmp_path / "pool.jsonl", pool)
    tests = [gsm8k[10], {**gsm8k[11], "output": gsm8k[11]["output"].replace("1", "7")}]  # one copied, one edited
    write_jsonl(tmp_path / "test.jsonl", tests)
    result = sftpick.score(tmp_path / "pool.jsonl", tmp_path / "scores.parquet", scorers=["len"], dedup="near",
                           decontaminate=[tmp_path / "test.jsonl"], progress=False)
    table = result.table.to_pydict()
    removed = {row: (why, twin, match) for row, why, twin, match
               in zip(table["row"], table["removed"], table["duplicate_of"], table["matched"]) if why is not None}
    test_file = str(tmp_path / "test.jsonl")
    assert removed == {40: ("near duplicate", 3, None), 41: ("near duplicate", 3, None),
                       42: ("near duplicate", 3, None), 43: ("near duplicate", 7, None),
                       10: ("contaminated", None, f"{test_file} row 0"), 11: ("contaminated", None, f"{test_file} row 1")}
    assert all(table["len"][row] is None for row in removed)  # never scored
    assert result.timings["len"]["scored_now"] == 40 - 2  # the scorer saw none of them
    assert result.counts["removed_by_reason"] == {"contaminated": 2, "near duplicate": 4}
    assert result.curation["tests_found"] == {test_file: {"records": 2, "found_in_pool": 2, "too_short_to_check": 0}}

    selection = sftpick.select(tmp_path / "scores.parquet", 1.0, by="len")
    assert len(selection.rows) == 38 and not set(selection.rows) & set(removed)
    assert sum(selection.dropped.values()) == 6


def test_curation_options_come_from_one_declaration_and_fail_before_any_work(tmp_path, gsm8k):
    write_jsonl(tmp_path / "pool.jsonl", gsm8k[:8])
    config = tmp_path / "run.toml"
    config.write_text('dedup = "near"\ndedup_threshold = 0.9\nscorers = ["len"]\nby = "len"\nbudget = 4\n')
    done = CliRunner().invoke(app, ["run", str(tmp_path / "pool.jsonl"), "-o", str(tmp_path / "out"), "--config",
                                    str(config), "--no-progress"])
    assert done.exit_code == 0, done.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["config"]["dedup"] == "near" and manifest["config"]["dedup_threshold"] == 0.9
    assert manifest["curation"]["dedup_threshold"] == 0.9
    for args, message in ((["--dedup", "nearr"], "dedup='nearr' is not one of"),
                          (["--dedup-threshold", "1.5"], "dedup_threshold=1.5 should be"),
                          (["--decontaminate", str(tmp_path / "missing.jsonl")], "missing.jsonl: no such file")):
        failed = CliRunner().invoke(app, ["run", str(tmp_path / "pool.jsonl"), "-o", str(tmp_path / "bad"),
                                          "--scorers", "ifd", *args])
        assert failed.exit_code == 2 and message in one_line_error(failed.output), failed.output
        assert not (tmp_path / "bad").exists()  # refused before the output folder was made
    with pytest.raises(ValueError, match="dedup='semantc' is not one of"):
        sftpick.score(tmp_path / "pool.jsonl", scorers=["len"], dedup="semantc")


def test_a_killed_curation_pass_resumes_without_redoing_its_saved_parts(tmp_path, real_records_path, gsm8k):
    """Sentence vectors for SemDeDup, the slowest step, killed after two saved parts (of some 25:
    the kill comes long before the pass could end)."""
    more = json.loads((real_records_path.parent / "gsm8k_sample.json").read_text())[:130]
    write_jsonl(tmp_path / "pool.jsonl", gsm8k + more + json.loads(real_records_path.read_text()) * 2)
    distinct = len({e.content_hash for e in read_dataset(tmp_path / "pool.jsonl").examples})
    cache = tmp_path / "scores.parquet.cache"
    command = [sys.executable, "-m", "sftpick.cli", "score", str(tmp_path / "pool.jsonl"), "-o",
               str(tmp_path / "scores.parquet"), "--scorers", "len", "--dedup", "semantic", "--chunk-size", "8",
               "--no-progress", "--device", "cpu"]
    kill_when(command, lambda: len(list(cache.glob("vectors-*/shard-*.parquet"))) >= 2, what="two saved parts")
    saved = sum(pq.read_metadata(p).num_rows for p in cache.glob("vectors-*/shard-*.parquet"))
    assert 16 <= saved < distinct

    resumed = sftpick.score(tmp_path / "pool.jsonl", tmp_path / "scores.parquet", scorers=["len"], dedup="semantic",
                            chunk_size=8, progress=False, device="cpu")
    step = resumed.curation["steps"]["semantic duplicates"]
    assert step["scored_now"] == distinct - saved  # only what was not saved
    fresh = sftpick.score(tmp_path / "pool.jsonl", scorers=["len"], dedup="semantic", progress=False, device="cpu")
    assert resumed.table.column("removed").to_pylist() == fresh.table.column("removed").to_pylist()
    assert resumed.table.column("duplicate_of").to_pylist() == fresh.table.column("duplicate_of").to_pylist()
    again = sftpick.score(tmp_path / "pool.jsonl", tmp_path / "scores.parquet", scorers=["len"], dedup="semantic",
                          chunk_size=8, progress=False, device="cpu")
    assert again.curation["steps"]["semantic duplicates"]["scored_now"] == 0


def test_the_report_shows_removed_records_beside_their_twin_escaped(tmp_path, gsm8k):
    marked = {**gsm8k[5], "instruction": "<script>alert(1)</script> " + gsm8k[5]["instruction"]}
    write_jsonl(tmp_path / "pool.jsonl", gsm8k[:10] + [marked, marked])
    sftpick.run(tmp_path / "pool.jsonl", tmp_path / "out", 3, scorers=["len"], by="len", progress=False)
    page = (tmp_path / "out" / "report.html").read_text()
    panel = page.split("<h2>Removed before selection</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<h3>exact duplicate</h3>" in panel and "removed: row 11" in panel and "kept: row 10" in panel
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in panel and "<script>alert" not in panel


@pytest.mark.parametrize("decontaminate", [True, False])
def test_a_study_drops_copies_of_its_held_out_records_unless_told_not_to(tmp_path, gsm8k, decontaminate):
    heldout = gsm8k[40:44]
    edited = {**heldout[1], "output": heldout[1]["output"].replace("=", " = ")}
    (tmp_path / "pool.json").write_text(json.dumps(gsm8k[:16] + [heldout[0], edited]))
    (tmp_path / "heldout.json").write_text(json.dumps(heldout))
    args = ["study", str(tmp_path / "pool.json"), "-o", str(tmp_path / "study"), "--method", "topk:len", "--method",
            "random", "--budget", "4", "--scorers", "len", "--eval-set", str(tmp_path / "heldout.json"),
            "--max-steps", "1", "--batch-size", "4", "--max-length", "256", "--device", "cpu", "--no-progress"]
    done = CliRunner().invoke(app, args + ([] if decontaminate else ["--no-decontaminate", "--allow-overlap"]))
    assert done.exit_code == 0, done.output
    board = json.loads((tmp_path / "study" / "leaderboard.json").read_text())
    table = pq.read_table(tmp_path / "study" / "scores.parquet").to_pydict()
    removed = {row: why for row, why in zip(table["row"], table.get("removed", [None] * 18)) if why is not None}
    eval_manifest = json.loads((tmp_path / "study" / "eval" / "manifest.json").read_text())
    if decontaminate:
        assert removed == {16: "contaminated", 17: "contaminated"}
        assert board["pool"]["removed_before_selection"] == {"contaminated": 2}
        assert "2 of its 4 records were found in the pool" in (tmp_path / "study" / "leaderboard.md").read_text()
        assert len(eval_manifest["pool"]["contaminated"]) == 2  # the random arm's pool, too
        assert eval_manifest["config"]["decontaminate"] is True
    else:
        assert removed == {} and board["pool"]["removed_before_selection"] == {}
        assert "--no-decontaminate" in (tmp_path / "study" / "leaderboard.md").read_text()
        assert "contaminated" not in eval_manifest["pool"] and eval_manifest["config"]["decontaminate"] is False
