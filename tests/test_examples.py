"""Property tests of `to_example` and the JSONL reader: whatever a record or a line holds, the
result is an Example that every later stage can take, or a reject with a reason; never a crash."""
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftpick.examples import (FORMATS, SHAREGPT_ROLES, Example, InvalidRecord, UnknownFormat, is_blank,
                              to_example)
from sftpick.io import UnreadableInput, read_dataset

# Text as damaged files hold it: any code point, lone surrogates included, plus the ones that
# break tokenizers and writers or look empty.
TRICKY = ["\x00", "\ud800", "\udfff", "\u200b", "\u2060", "\ufeff", "\u3164", " ", "\n", "\r", "\t", "é", "🙂"]
CHAR = st.one_of(st.characters(codec="utf-8"), st.characters(exclude_categories=()), st.sampled_from(TRICKY))
TEXT = st.text(CHAR, max_size=20)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                    max_leaves=8)
FIELD = TEXT | TEXT | JSON  # mostly text, sometimes anything


def record(required: dict, optional: dict):
    """Records with the format's fields (most draws), or with any of them missing or of any type."""
    anything = {name: FIELD for name in required} | optional
    return st.fixed_dictionaries(required, optional=optional) | st.fixed_dictionaries({}, optional=anything)


def turns(role_key: str, text_key: str, ask: str, answer: str, roles: list[str]):
    """Conversations: question-answer pairs (most draws), or turns damaged in any way."""
    pair = st.tuples(*(st.fixed_dictionaries({role_key: st.just(role), text_key: TEXT}) for role in (ask, answer)))
    pairs = st.lists(pair, min_size=1, max_size=2).map(lambda ps: [turn for p in ps for turn in p])
    damaged = st.fixed_dictionaries({}, optional={role_key: st.sampled_from(roles) | JSON, text_key: FIELD})
    return pairs | pairs | st.lists(damaged | JSON, max_size=4) | JSON


ALPACA = record({"instruction": TEXT, "output": TEXT}, {"input": FIELD, "id": JSON})
SHAREGPT = record({"conversations": turns("from", "value", "human", "gpt", sorted(SHAREGPT_ROLES))}, {"id": JSON})
OPENAI = record({"messages": turns("role", "content", "user", "assistant",
                                                 ["system", "user", "assistant", "tool"])}, {"id": JSON})
RECORD = ALPACA | SHAREGPT | OPENAI | JSON


def assert_usable(example: Example) -> None:
    """What the scorers, the embedder and the writers need of an Example."""
    assert not is_blank(example.response) and not is_blank("".join(m["content"] for m in example.context))
    text = json.dumps([example.messages, example.instruction, example.input, example.id], ensure_ascii=False)
    text.encode("utf-8")  # no lone surrogate anywhere
    assert "\x00" not in text
    assert example.content_hash and example.id


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=300, deadline=None)
@given(record=RECORD)
def test_to_example_returns_a_usable_example_or_raises_invalid_record(fmt, record):
    try:
        example = to_example(record, 0, fmt)
    except InvalidRecord as reason:
        assert str(reason).strip()
        str(reason).encode("utf-8")  # the reason itself goes into the rejects file
        return
    assert_usable(example)


@pytest.mark.parametrize("fmt, strategy", [("alpaca", ALPACA), ("sharegpt", SHAREGPT), ("openai", OPENAI)])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_records_of_each_format_convert_or_are_rejected(fmt, strategy, data):
    record = data.draw(strategy)
    try:
        assert_usable(to_example(record, 0, fmt))
    except InvalidRecord:
        pass


def test_an_unknown_format_name_is_not_a_record_problem():
    with pytest.raises(UnknownFormat, match="format='chatml' is not one of alpaca, sharegpt, openai"):
        to_example({"instruction": "a", "output": "b"}, 0, "chatml")


GOOD_LINE = json.dumps({"instruction": "Name a colour.", "output": "Blue."}).encode()
LINE = st.binary(max_size=40) | st.builds(lambda r: json.dumps(r).encode(), RECORD) | st.just(GOOD_LINE)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(LINE, max_size=8))
def test_any_jsonl_bytes_give_counted_records_or_one_file_level_error(lines):
    """Every non-blank line is a record (scored or rejected with its line), or the whole file is
    one error a person can read."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.jsonl"
        path.write_bytes(b"\n".join([GOOD_LINE, *lines]))
        try:
            dataset = read_dataset(path)
        except (UnreadableInput, UnknownFormat) as error:
            assert "\n" not in str(error)
            return
    assert len(dataset.examples) + len(dataset.rejects) == dataset.n_records
    assert all(r.line and r.reason for r in dataset.rejects)
    for example in dataset.examples:
        assert_usable(example)
    for reject in dataset.rejects:
        reject.to_json().encode("utf-8")
