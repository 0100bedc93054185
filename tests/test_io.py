"""Reading the three formats from JSON/JSONL/Parquet, rejecting bad records with file,
line and reason, and writing the subset back byte-for-byte."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sftpick.examples import InvalidRecord, UnknownFormat, to_example
from sftpick.io import UnreadableInput, read_dataset, write_subset

ALPACA = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5, because 2 + 3 = 5."}
SHAREGPT = {"id": "conv-7", "conversations": [{"from": "human", "value": "Hi, who are you?"},
                                              {"from": "gpt", "value": "An assistant."}]}
OPENAI = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
                       {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "Thanks"}]}


def write_jsonl(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize("record, fmt", [(ALPACA, "alpaca"), (SHAREGPT, "sharegpt"), (OPENAI, "openai")])
@pytest.mark.parametrize("kind", ["json", "jsonl", "parquet"])
def test_formats_are_detected_in_every_file_kind(tmp_path, record, fmt, kind):
    path = tmp_path / f"data.{kind}"
    if kind == "json":
        path.write_text(json.dumps([record, record], indent=2))
    elif kind == "jsonl":
        write_jsonl(path, [json.dumps(record)] * 2)
    else:
        pq.write_table(pa.Table.from_pylist([record, record]), path)
    dataset = read_dataset(path)
    assert dataset.format == fmt and dataset.n_records == 2 and not dataset.rejects
    assert [e.row for e in dataset.examples] == [0, 1]
    assert dataset.examples[0].messages[-1]["role"] == "assistant"


def test_conversion_to_messages():
    alpaca = to_example(ALPACA, 3, "alpaca")
    assert alpaca.messages == [{"role": "user", "content": "Add the numbers.\n2 and 3"},
                               {"role": "assistant", "content": ALPACA["output"]}]
    assert (alpaca.instruction, alpaca.input, alpaca.row) == ("Add the numbers.", "2 and 3", 3)
    assert len(alpaca.id) == 16  # content hash when the record has no id
    sharegpt = to_example(SHAREGPT, 0, "sharegpt")
    assert sharegpt.id == "conv-7" and sharegpt.response == "An assistant."
    openai = to_example(OPENAI, 0, "openai")  # trailing user turn has no response: dropped
    assert openai.response == "Paris." and [m["role"] for m in openai.context] == ["system", "user"]
    assert openai.instruction == "Be brief.\nCapital of France?"


def test_bad_records_are_rejected_with_line_and_reason(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        json.dumps(ALPACA),
        '{"instruction": "broken", "output": ',
        json.dumps({"instruction": "No output here"}),
        json.dumps({"instruction": 42, "output": "x y z"}),
        json.dumps({"instruction": "Say nothing", "output": "   "}),
        "",  # blank lines are not records
        json.dumps(["a", "list"]),
        json.dumps(ALPACA),
    ])
    dataset = read_dataset(path)
    assert dataset.n_records == 7 and len(dataset.examples) == 2
    assert len(dataset.examples) + len(dataset.rejects) == dataset.n_records
    found = {r.line: r.reason for r in dataset.rejects}
    assert found[2].startswith("invalid JSON")
    assert found[3] == "missing field 'output'"
    assert found[4] == "field 'instruction' is int, expected a string"
    assert found[5] == "empty response"
    assert found[7] == "a JSON array of 2 items on one line, expected one record (an object)"
    assert all(r.file == str(path) and r.stage == "read" for r in dataset.rejects)
    assert [r.row for r in dataset.rejects] == [1, 2, 3, 4, 5]
    assert dataset.rejects[0].record == '{"instruction": "broken", "output": '  # raw text kept


@pytest.mark.parametrize("record, reason", [
    ({"messages": [{"role": "user", "content": "hello"}]}, "no assistant turn"),
    ({"messages": [{"role": "assistant", "content": "hello"}]}, "assistant turn has no instruction before it"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]}, "messages\\[1\\].role='bot'"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]}, "messages\\[1\\].content is NoneType"),
    ({"messages": []}, "non-empty list"),
])
def test_chat_record_problems(record, reason):
    with pytest.raises(InvalidRecord, match=reason):
        to_example(record, 0, "openai")


def test_json_array_records_keep_their_line_numbers(tmp_path):
    path = tmp_path / "data.json"
    path.write_text('[\n  {"instruction": "a", "output": "b c"},\n  {"instruction": "a"},\n\n  {"instruction": 1, "output": "x"}\n]\n')
    dataset = read_dataset(path)
    assert [(r.line, r.row) for r in dataset.rejects] == [(3, 1), (5, 2)]


def test_strict_stops_at_the_first_bad_record(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [json.dumps(ALPACA), json.dumps({"instruction": "x"})])
    with pytest.raises(InvalidRecord, match=r"d.jsonl, line 2: missing field 'output'"):
        read_dataset(path, strict=True)


@pytest.mark.parametrize("name, content, match", [
    ("data.txt", "hello", "unsupported file type '.txt'"),
    ("data.json", '{"instruction": "x"}', "must hold an array"),
    ("data.json", '[{"instruction": "x", "output": "y"}, {"oops"]', "invalid JSON at line 1"),
    ("data.json", '[{"instruction": "x", "output": "y"} {"a": 1}]', "expected ',' or ']'"),
])
def test_unreadable_files_fail_with_one_clear_message(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UnreadableInput, match=match):
        read_dataset(path)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(UnreadableInput, match="no such file"):
        read_dataset(tmp_path / "absent.jsonl")
    path = write_jsonl(tmp_path / "d.jsonl", [json.dumps({"question": "q", "answer": "a"})])
    with pytest.raises(UnknownFormat, match=r"unknown format: the first record has fields answer, question; "
                                            r"expected Alpaca .*--format"):
        read_dataset(path)


def test_format_override(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [json.dumps({**ALPACA, "messages": "not a list"})])
    assert read_dataset(path).format == "alpaca"
    dataset = read_dataset(path, "openai")
    assert dataset.format == "openai" and dataset.rejects[0].reason.startswith("field 'messages' must be")


def test_subset_is_written_byte_for_byte(tmp_path):
    odd = ['{"output": "b c",   "instruction": "a", "extra": [1, 2]}',
           json.dumps(ALPACA, ensure_ascii=False),
           '{"instruction":"é ü","output":"ok fine","meta":{"k":null}}']
    path = write_jsonl(tmp_path / "in.jsonl", odd)
    write_subset(read_dataset(path), [2, 0], tmp_path / "out.jsonl")
    assert (tmp_path / "out.jsonl").read_text().splitlines() == [odd[0], odd[2]]

    array = tmp_path / "in.json"
    array.write_text("[\n" + ",\n".join(odd) + "\n]")
    write_subset(read_dataset(array), [1], tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text()) == [json.loads(odd[1])]
    assert odd[1] in (tmp_path / "out.json").read_text()

    table = pa.Table.from_pylist([ALPACA, {**ALPACA, "output": "6"}, {**ALPACA, "output": "7 days"}])
    pq.write_table(table, tmp_path / "in.parquet")
    write_subset(read_dataset(tmp_path / "in.parquet"), [2], tmp_path / "out.parquet")
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema == table.schema and out.to_pylist() == [table.to_pylist()[2]]
