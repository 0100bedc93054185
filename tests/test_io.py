"""Reading the three formats from JSON/JSONL/Parquet, rejecting bad records with file,
line and reason, and writing the subset back byte-for-byte."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sftpick.examples import InvalidRecord, UnknownFormat, to_example
from sftpick.io import UnreadableInput, read_dataset
from sftpick.io import write_subset
from sftpick.writers import write_rejects

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
    assert found[7] == "a JSON array on one line (2 items); expected one record, a JSON object"
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


def write_bytes_jsonl(path, lines: list[bytes]):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


GOOD = json.dumps(ALPACA).encode()


@pytest.mark.parametrize("line, reason", [
    (GOOD[:20] + b"\xff" + GOOD[20:], "not valid UTF-8: byte 21 of the line (invalid start byte)"),
    (json.dumps({**ALPACA, "output": "x\ud800"}).encode(), r"text holds a lone surrogate: \ud800 in field 'output' at character 2"),
    (GOOD.replace(b"Add", b"A\x00dd"), "text holds a NUL character: a NUL byte at column 19"),
    (json.dumps({**ALPACA, "input": "a\x00"}).encode(), r"text holds a NUL character: \u0000 in field 'input'"),
    (json.dumps({**ALPACA, "output": "x" * 1_000_001}).encode(), "field too long: 'output' has 1,000,001 characters, over the limit of 1,000,000"),
    (b"[" * 5000 + b"]" * 5000, "nested deeper than 100 levels"),
    (b'{"instruction": "a", "output": "b", "m": ' + b"[" * 101 + b"]" * 101 + b"}", "nested deeper than 100 levels"),
    (GOOD + b" " + GOOD, "two JSON values on one line (the second starts at column 92)"),
    (GOOD + b"}}", "text after the record (column 91): '}}'"),
    (json.dumps(SHAREGPT).encode(), "a ShareGPT record in an Alpaca file"),
    (json.dumps(OPENAI).encode(), "an OpenAI-messages record in an Alpaca file"),
    (b"instruction,input,output", "not JSON: the line starts with 'instruction,input,output'"),
    (json.dumps({**ALPACA, "output": "\u200b \u2060"}).encode(), "empty response (only invisible characters: U+200B, U+2060)"),
    (json.dumps({**ALPACA, "instruction": " ", "input": ""}).encode(), "empty instruction"),
    (b"[" + GOOD + b"]", "a JSON array on one line (1 items); expected one record, a JSON object"),
    (b'{"instruction": "a", "output": "b", "n": ' + b"1" * 5000 + b"}", "invalid JSON: Exceeds the limit"),
    (json.dumps({**ALPACA, "id": "x\ud800"}).encode(), r"text holds a lone surrogate: \ud800 in field 'id'"),
])
def test_each_record_defect_is_one_reject_with_its_line(tmp_path, line, reason):
    path = write_bytes_jsonl(tmp_path / "d.jsonl", [GOOD, line, GOOD])
    dataset = read_dataset(path)
    assert (dataset.n_records, len(dataset.examples)) == (3, 2)
    (reject,) = dataset.rejects
    assert (reject.line, reject.row) == (2, 1)
    assert reason in reject.reason
    write_rejects(dataset.rejects, tmp_path / "rejects.jsonl")  # every reject can be written as UTF-8
    assert json.loads((tmp_path / "rejects.jsonl").read_text(encoding="utf-8"))["line"] == 2


def test_bom_crlf_and_joined_files_are_read_with_the_right_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD + b"\r\n\r\n" + GOOD + b"\r\n\xef\xbb\xbf" + GOOD + b"\r\n")
    dataset = read_dataset(path)
    assert not dataset.rejects and [e.line for e in dataset.examples] == [1, 3, 4]
    write_subset(dataset, [0, 1, 2], tmp_path / "s.jsonl")
    assert (tmp_path / "s.jsonl").read_bytes() == (GOOD + b"\n") * 3  # the subset is written without BOM or CR


def test_an_undecodable_line_keeps_a_readable_copy_in_the_rejects(tmp_path):
    path = write_bytes_jsonl(tmp_path / "d.jsonl", [GOOD, b'{"instruction": "caf\xe9"}'])
    (reject,) = read_dataset(path).rejects
    assert reject.record == '{"instruction": "caf\\xe9"}'


def test_a_reject_holding_a_lone_surrogate_is_written_with_escapes(tmp_path):
    path = write_bytes_jsonl(tmp_path / "d.jsonl", [GOOD, json.dumps({**ALPACA, "output": "\ud800"}).encode()])
    write_rejects(read_dataset(path).rejects, tmp_path / "r.jsonl")
    assert json.loads((tmp_path / "r.jsonl").read_bytes())["record"]["output"] == "\ud800"


def test_json_array_rejects_only_the_element_that_is_not_utf8(tmp_path):
    path = tmp_path / "d.json"
    path.write_bytes(b"[\n" + GOOD + b",\n" + GOOD.replace(b"Add", b"A\xffdd") + b",\n" + GOOD + b"\n]")
    dataset = read_dataset(path)
    assert [(r.line, r.reason) for r in dataset.rejects] == [(3, "not valid UTF-8: byte 19 of the record")]
    assert [e.line for e in dataset.examples] == [2, 4]


@pytest.mark.parametrize("content, match", [
    (b"[\n" + GOOD + b",\n" + GOOD + b"\n]\n", r"looks like a JSON array spread over many lines .*rename the file to \.json"),
    (b"[" + GOOD + b",\n" + GOOD + b"]\n", r"looks like a JSON array spread over many lines"),
    (b"[" + GOOD + b", " + GOOD + b"]\n", r"line 1 holds a JSON array, not one record; expected JSON Lines"),
    (b"\n{\n" + b'  "instruction": "a", "output": "b"\n}\n', r"pretty-printed JSON \(line 2 is '\{' alone\)"),
    (b"\xff\xfe" + GOOD.decode().encode("utf-16-le"), r"UTF-16 text .*expected UTF-8"),
])
def test_a_jsonl_file_of_another_shape_is_one_file_level_error(tmp_path, content, match):
    path = tmp_path / "d.jsonl"
    path.write_bytes(content)
    with pytest.raises(UnreadableInput, match=match):
        read_dataset(path)


@pytest.mark.parametrize("content, match", [
    (b"[\n" + GOOD + b",\n" + GOOD + b"\n", r"the file ends before the array's closing '\]' \(cut short\?\)"),
    (b"[\n" + GOOD + b",\n", r"the file ends before the array's closing '\]'"),
    (b"[\n" + GOOD + b"\n" + GOOD + b"]", r"invalid JSON at line 3: expected ',' or '\]' after a record"),
    (b"[\n" + GOOD + b",\n  {\"instruction\": \xff}\n]", r"line 3, column 19: a byte that is not UTF-8; "
                                                          r"the array cannot be read past this point \(expected a record"),
    (b"[\n" + GOOD.replace(b"Add", b"A\x00dd") + b"\n]", r"line 2, column 19: a NUL byte"),
    (b"[\n" + b"[" * 5000 + b"]" * 5000 + b"\n]", r"the record at line 2 is nested deeper than the JSON reader allows"),
])
def test_a_broken_json_array_is_one_line_with_line_and_column(tmp_path, content, match):
    path = tmp_path / "d.json"
    path.write_bytes(content)
    with pytest.raises(UnreadableInput, match=match) as error:
        read_dataset(path)
    assert "\n" not in str(error.value)


def test_forced_format_that_fits_no_record_is_a_file_level_error(tmp_path):
    path = write_jsonl(tmp_path / "alpaca.jsonl", [json.dumps(ALPACA)] * 3)
    with pytest.raises(UnknownFormat, match=r"--format sharegpt does not match .*alpaca.jsonl: its records look like Alpaca"):
        read_dataset(path, "sharegpt")
    odd = write_jsonl(tmp_path / "odd.jsonl", [json.dumps({"q": 1, "a": 2})])
    with pytest.raises(UnknownFormat, match="--format openai does not match .*: its records look like the first record has fields a, q"):
        read_dataset(odd, "openai")
    with pytest.raises(UnknownFormat, match="format='chatml' is not one of alpaca, sharegpt, openai"):
        read_dataset(path, "chatml")


def test_a_file_with_no_record_or_no_readable_record_is_a_file_level_error(tmp_path):
    with pytest.raises(UnknownFormat, match="holds no records"):
        read_dataset(write_jsonl(tmp_path / "empty.jsonl", ["", "  "]))
    with pytest.raises(UnknownFormat, match=r"none of the first 2 records can be read \(line 1: invalid JSON"):
        read_dataset(write_jsonl(tmp_path / "broken.jsonl", ['{"a": ', '{"b": ']))


def test_parquet_with_unknown_columns_names_them_and_the_expected_ones(tmp_path):
    pq.write_table(pa.table({"question": ["q"], "answer": ["a"]}), tmp_path / "d.parquet")
    with pytest.raises(UnknownFormat, match=r"unknown format: its columns are answer, question; expected Alpaca "
                                            r"\(instruction/input/output\), ShareGPT .*--format"):
        read_dataset(tmp_path / "d.parquet")


def test_parquet_rows_with_bad_values_are_rejected_by_row(tmp_path):
    offsets = pa.py_buffer(bytes([0, 0, 0, 0, 4, 0, 0, 0, 6, 0, 0, 0, 10, 0, 0, 0]))
    output = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"fine\xff\xfefine")])
    table = pa.table({"instruction": ["a", "b", "c"], "output": output})
    pq.write_table(table, tmp_path / "d.parquet")
    dataset = read_dataset(tmp_path / "d.parquet")
    assert [(r.row, r.line, r.reason) for r in dataset.rejects] == [
        (1, None, "not valid UTF-8: column 'output' (invalid start byte at byte 1)")]
    assert [e.row for e in dataset.examples] == [0, 2]
