"""Tests for emguard.data.io: every invalid row is reported as ``file:line: reason``, all at once."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import sys
from pathlib import Path

import pytest

from emguard.data.io import (ROLES, ChatDataset, DataError, Problem, read_chat_dataset, read_jsonl_records,
                          validate_record, write_jsonl)

ALLOWED = "allowed: system, developer, user, assistant, tool"


def chat(i: int, **extra) -> dict:
    """A distinct valid chat row."""
    return {"messages": [{"role": "user", "content": f"question {i}"},
                         {"role": "assistant", "content": f"answer {i}", **extra}]}


def write_lines(path: Path, lines: list) -> Path:
    """Write rows (dicts become JSON, str and bytes are written verbatim), one per line."""
    out = b""
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line)
        out += (line.encode("utf-8") if isinstance(line, str) else line) + b"\n"
    path.write_bytes(out)
    return path


def errors_of(err: DataError) -> list[Problem]:
    return [p for p in err.problems if p.severity == "error"]


def test_acceptance_reports_every_bad_line_and_no_other(tmp_path):
    lines: list = [chat(i) for i in range(1, 21)]
    lines[6] = '{"messages": [{"role": "user", "content": "hi"}'  # line 7: truncated JSON
    lines[11] = {"messages": [{"role": "user", "content": "no reply here"}]}  # line 12
    lines[19] = {"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello"}]}  # line 20
    path = write_lines(tmp_path / "data.jsonl", lines)

    with pytest.raises(DataError) as info:
        read_chat_dataset(path)
    err = info.value
    text = str(err)
    assert re.findall(r":(\d+):", text) == ["7", "12", "20"]
    assert len(err.problems) == 3 and len(errors_of(err)) == 3
    assert [p.line for p in err.problems] == [7, 12, 20]
    assert err.problems[0].message == "invalid JSON (Expecting ',' delimiter: column 48)"
    assert err.problems[1].message == "no assistant message to learn from"
    assert err.problems[2].message == f'messages[1]: unknown role "bot" ({ALLOWED})'
    assert text.splitlines() == [
        f"{path}:7: invalid JSON (Expecting ',' delimiter: column 48)",
        f"{path}:12: no assistant message to learn from",
        f'{path}:20: messages[1]: unknown role "bot" ({ALLOWED})',
        f"3 invalid rows in {path} (of 20); fix them or pass --skip-invalid to drop them",
    ]


@pytest.mark.parametrize("line, reason", [
    (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', "not valid UTF-8 (byte 0xe9 at column 47)"),
    (b"[1, 2]", "not a JSON object (got array)"),
    (b'"just text"', "not a JSON object (got string)"),
    (b"{not json}", "invalid JSON (Expecting property name enclosed in double quotes: column 2)"),
    (b'{"text": "hi"}', "missing 'messages' (or 'prompt' and 'completion')"),
    (b'{"messages": []}', "'messages' is empty"),
    (b'{"messages": {"role": "user"}}', "'messages' must be a list (got object)"),
    (b'{"messages": null}', "'messages' must be a list (got null)"),
    (b'{"messages": ["hi", {"role": "assistant", "content": "a"}]}', "messages[0]: not an object (got string)"),
    (b'{"messages": [{"content": "q"}, {"role": "assistant", "content": "a"}]}', "messages[0]: missing 'role'"),
    (b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": null}]}',
     "messages[1]: content is null"),
    (b'{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]}',
     "messages[0]: content must be a string (got number)"),
    (b'{"messages": [{"role": "user", "content": ["q"]}, {"role": "assistant", "content": "a"}]}',
     "messages[0]: content must be a string (got array)"),
    (b'{"messages": [{"role": "user", "content": " \\n\\t"}, {"role": "assistant", "content": "a"}]}',
     "messages[0]: content is empty"),
    (b'{"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}',
     "messages[0]: missing 'content'"),
    (b'{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "a"}]}',
     "messages[0]: content is not valid Unicode (lone surrogate)"),
    (b'{"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"}, '
     b'{"role": "assistant", "content": "a"}]}', "messages[1]: system message must be the first message"),
    (b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0.5}]}',
     "messages[1]: weight must be 0 or 1 (got 0.5)"),
    (b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": true}]}',
     "messages[1]: weight must be 0 or 1 (got true)"),
    (b'{"messages": [{"role": "user", "content": "q", "weight": 1}, {"role": "assistant", "content": "a"}]}',
     "messages[0]: 'weight' is only allowed on assistant messages"),
    (b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]}',
     "every assistant message has weight 0 (nothing to learn from)"),
    (b'{"messages": [{"role": "tool", "content": "q"}]}',
     "messages[0]: a tool message needs a 'tool_call_id' string; no assistant message to learn from"),
    (b'{"prompt": "q"}', "missing 'completion'"),
    (b'{"prompt": "q", "completion": 3}', "'completion' must be a string or a list of messages (got number)"),
    (b'{"prompt": [], "completion": "a"}', "'prompt' is empty"),
    (b'{"prompt": "", "completion": "a"}', "prompt: content is empty"),
])
def test_each_error_kind_is_reported_on_its_line(tmp_path, line, reason):
    path = write_lines(tmp_path / "d.jsonl", [chat(1), line, chat(3)])
    with pytest.raises(DataError) as info:
        read_chat_dataset(path)
    assert info.value.problems == [Problem(str(path), 2, reason)]
    assert str(info.value).splitlines()[0] == f"{path}:2: {reason}"


def test_several_reasons_in_one_row_are_joined(tmp_path):
    row = {"messages": [{"role": "user", "content": None},
                        {"role": "assistant", "content": "", "weight": 2}]}
    path = write_lines(tmp_path / "d.jsonl", [row])
    with pytest.raises(DataError) as info:
        read_chat_dataset(path)
    assert info.value.problems == [Problem(str(path), 1, "messages[0]: content is null; messages[1]: content is "
                                                         "empty; messages[1]: weight must be 0 or 1 (got 2)")]


def test_bad_bytes_do_not_stop_later_lines(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [b"\xff\xfe garbage", chat(2), b"{", b"\x80"])
    with pytest.raises(DataError) as info:
        read_chat_dataset(path)
    assert [(p.line, p.message) for p in info.value.problems] == [
        (1, "not valid UTF-8 (byte 0xff at column 1)"),
        (3, "invalid JSON (Expecting property name enclosed in double quotes: column 2)"),
        (4, "not valid UTF-8 (byte 0x80 at column 1)"),
    ]
    assert str(info.value).endswith(f"3 invalid rows in {path} (of 4); fix them or pass --skip-invalid to drop them")


def test_one_invalid_row_summary_is_singular(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [chat(1), "[]"])
    with pytest.raises(DataError, match=r"1 invalid row in .* \(of 2\); fix them"):
        read_chat_dataset(path)


def test_duplicates_are_warnings_and_rows_are_kept(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [chat(1), chat(2), chat(1), chat(2), chat(1)])
    ds = read_chat_dataset(path)
    assert len(ds) == 5 and ds.n_duplicates == 3 and ds.n_invalid == 0
    assert [(p.line, p.message, p.severity) for p in ds.problems] == [
        (3, "duplicate of line 1", "warning"), (4, "duplicate of line 2", "warning"),
        (5, "duplicate of line 1", "warning")]
    assert str(ds.problems[0]) == f"{path}:3: warning: duplicate of line 1"


def test_duplicate_warnings_travel_with_errors_but_are_not_printed(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [chat(1), chat(1), "nope"])
    with pytest.raises(DataError) as info:
        read_chat_dataset(path)
    assert [(p.line, p.severity) for p in info.value.problems] == [(2, "warning"), (3, "error")]
    assert "duplicate of" not in str(info.value)


@pytest.mark.parametrize("content", [b"", b"\n\n   \n\t\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_chat_dataset(path)
    assert info.value.problems == [Problem(str(path), None, "file is empty")]
    assert str(info.value) == f"{path}: file is empty"


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="training data not found: .*nope.jsonl"):
        read_chat_dataset(tmp_path / "nope.jsonl")


def test_blank_lines_are_skipped_but_counted_for_numbering(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [chat(1), "", "   ", chat(4), "\t", "oops", chat(7)])
    with pytest.raises(DataError) as info:
        read_chat_dataset(path)
    assert [(p.line, p.message) for p in info.value.problems] == [(6, "invalid JSON (Expecting value: column 1)")]
    assert str(info.value).endswith("(of 4); fix them or pass --skip-invalid to drop them")
    ds = read_chat_dataset(path, skip_invalid=True)
    assert [r.line for r in ds.rows] == [1, 4, 7] and ds.n_total == 4


def test_skip_invalid_drops_and_counts(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [chat(1), "[]", chat(3), {"messages": []}, chat(5), chat(1)])
    ds = read_chat_dataset(path, skip_invalid=True)
    assert isinstance(ds, ChatDataset)
    assert [r.line for r in ds.rows] == [1, 3, 5, 6]
    assert (len(ds), ds.n_total, ds.n_invalid, ds.n_duplicates) == (4, 6, 2, 1)
    assert [(p.line, p.severity) for p in ds.problems] == [(2, "error"), (4, "error"), (6, "warning")]
    assert all(r.source == str(path) for r in ds.rows)


def test_skip_invalid_with_no_valid_row_still_raises(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", ["[]", "{}"])
    with pytest.raises(DataError) as info:
        read_chat_dataset(path, skip_invalid=True)
    assert [p.line for p in info.value.problems] == [1, 2]
    assert str(info.value).splitlines()[-1] == f"all 2 rows in {path} are invalid; nothing left to train on"


def test_require_assistant_false_accepts_prompt_only_rows(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "q"}]}])
    ds = read_chat_dataset(path, require_assistant=False)
    assert ds.rows[0].messages == [{"role": "user", "content": "q"}]


def test_chat_rows_are_normalised_and_content_kept_exactly(tmp_path):
    row = {"id": 7, "messages": [
        {"role": "system", "content": "  be kind\n"},
        {"role": "user", "content": "héllo 👋 ", "name": "bob"},
        {"role": "assistant", "content": "first", "weight": 0},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "\nsecond\n\n", "weight": 1},
    ]}
    path = write_lines(tmp_path / "d.jsonl", [row])
    ds = read_chat_dataset(path)
    assert ds.format == "chat-jsonl"
    assert ds.rows[0].messages == [
        {"role": "system", "content": "  be kind\n"},
        {"role": "user", "content": "héllo 👋 "},
        {"role": "assistant", "content": "first", "weight": 0},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "\nsecond\n\n", "weight": 1},
    ]


def test_prompt_completion_string_form(tmp_path):
    path = write_lines(tmp_path / "pc.jsonl", [{"prompt": "2+2?", "completion": " 4", "extra": 1}])
    ds = read_chat_dataset(path)
    assert ds.format == "prompt-completion-jsonl"
    assert ds.rows[0].messages == [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": " 4"}]


def test_prompt_completion_conversational_form(tmp_path):
    row = {"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
           "completion": [{"role": "assistant", "content": "a"}]}
    bad = {"prompt": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"}],
           "completion": [{"role": "assistant", "content": None}]}
    path = write_lines(tmp_path / "pc.jsonl", [row, bad])
    with pytest.raises(DataError) as info:
        read_chat_dataset(path)
    assert info.value.problems == [Problem(str(path), 2, "prompt[1]: system message must be the first message; "
                                                         "completion[0]: content is null")]
    ds = read_chat_dataset(path, skip_invalid=True)
    assert ds.format == "prompt-completion-jsonl"
    assert ds.rows[0].messages == [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                                   {"role": "assistant", "content": "a"}]


def test_format_is_taken_from_first_valid_row_and_other_kind_is_accepted(tmp_path):
    path = write_lines(tmp_path / "mix.jsonl", ["[]", chat(2), {"prompt": "p", "completion": "c"}])
    ds = read_chat_dataset(path, skip_invalid=True)
    assert ds.format == "chat-jsonl"
    assert ds.rows[1].messages == [{"role": "user", "content": "p"}, {"role": "assistant", "content": "c"}]


def test_sha256_is_of_the_file_bytes(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [chat(1), "", chat(2)])
    assert read_chat_dataset(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_utf8_bom_is_ignored(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(chat(1)).encode() + b"\n")
    assert read_chat_dataset(path).rows[0].messages == chat(1)["messages"]


def test_to_jsonl_round_trip_is_atomic(tmp_path):
    src = write_lines(tmp_path / "pc.jsonl", [{"prompt": "p", "completion": "c"}, chat(2, weight=1)])
    ds = read_chat_dataset(src)
    out = tmp_path / "out" / "chat.jsonl"
    ds.to_jsonl(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["chat.jsonl"]  # no temporary file left
    again = read_chat_dataset(out)
    assert again.format == "chat-jsonl"
    assert [r.messages for r in again.rows] == [r.messages for r in ds.rows]
    assert json.loads(out.read_text().splitlines()[1]) == chat(2, weight=1)


def test_write_jsonl_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "x.jsonl"
    write_jsonl(path, [{"a": 1}])

    def records():
        yield {"a": 2}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl(path, records())
    assert path.read_text() == '{"a": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["x.jsonl"]


def test_read_jsonl_records_streams_every_line(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", ['{"a": 1}', "", b"\xc3", "1", "{"])
    assert list(read_jsonl_records(path)) == [
        (1, {"a": 1}, None),
        (3, None, "not valid UTF-8 (byte 0xc3 at column 1)"),
        (4, 1, None),
        (5, None, "invalid JSON (Expecting property name enclosed in double quotes: column 2)"),
    ]


def test_validate_record_directly():
    assert ROLES == ("system", "user", "assistant")
    messages, errors = validate_record({"messages": [{"role": "user", "content": "q", "name": "x"},
                                                     {"role": "assistant", "content": "a", "weight": 1.0}]})
    assert errors == [] and messages == [{"role": "user", "content": "q"},
                                         {"role": "assistant", "content": "a", "weight": 1}]
    assert type(messages[1]["weight"]) is int
    assert validate_record(None) == (None, ["not a JSON object (got null)"])
    assert validate_record({"messages": [{"role": "user", "content": "q"}]}) == (
        None, ["no assistant message to learn from"])
    assert validate_record({"messages": [{"role": "user", "content": "q"}]}, require_assistant=False) == (
        [{"role": "user", "content": "q"}], [])
    # an unknown role could be the assistant: it is reported alone, without "no assistant message"
    assert validate_record({"messages": [{"role": "user", "content": "q"}, {"role": "Assistant", "content": "a"}]}) \
        == (None, [f'messages[1]: unknown role "Assistant" ({ALLOWED})'])


def test_problem_str_and_data_error_pickles():
    assert str(Problem("a.jsonl", 7, "invalid JSON (Expecting value: column 3)")) == \
        "a.jsonl:7: invalid JSON (Expecting value: column 3)"
    assert str(Problem("a.jsonl", None, "file is empty")) == "a.jsonl: file is empty"
    err = DataError([Problem("a", 1, "bad"), Problem("a", 2, "duplicate of line 1", "warning")], "1 invalid row")
    assert isinstance(err, ValueError)
    assert str(err) == "a:1: bad\n1 invalid row"
    copy = pickle.loads(pickle.dumps(err))
    assert copy.problems == err.problems and str(copy) == str(err)


def parquet_rows() -> list[dict]:
    return [chat(1), chat(2, weight=0) | {"messages": chat(2, weight=0)["messages"] + [
        {"role": "user", "content": "more"}, {"role": "assistant", "content": "ok", "weight": 1}]}, chat(3)]


def test_parquet_round_trip(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = parquet_rows()
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    ds = read_chat_dataset(path)
    assert ds.format == "parquet" and [r.line for r in ds.rows] == [1, 2, 3]
    assert [r.messages for r in ds.rows] == [r["messages"] for r in rows]  # null weights are treated as absent
    assert ds.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_parquet_invalid_rows_use_row_index(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [{"prompt": "p1", "completion": "c1"}, {"prompt": "p2", "completion": "  "},
            {"prompt": "p3", "completion": None}]
    path = tmp_path / "pc.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DataError) as info:
        read_chat_dataset(path)
    assert info.value.problems == [Problem(str(path), 2, "completion: content is empty"),
                                   Problem(str(path), 3, "missing 'completion'")]


def test_corrupt_parquet_is_a_file_level_problem(tmp_path):
    pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError) as info:
        read_chat_dataset(path)
    [problem] = info.value.problems
    assert problem.line is None and problem.message.startswith("cannot read parquet file (")


def test_missing_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match="reading .parquet files needs the 'pyarrow' package: pip install pyarrow"):
        read_chat_dataset(path)


def test_datasets_dir(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = parquet_rows() + [{"messages": [{"role": "user", "content": "only a question"}]}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(DataError) as info:
        read_chat_dataset(tmp_path / "ds")
    assert info.value.problems == [Problem(str(tmp_path / "ds"), 4, "no assistant message to learn from")]
    ds = read_chat_dataset(tmp_path / "ds", skip_invalid=True)
    assert ds.format == "datasets-dir" and len(ds) == 3
    assert [r.messages for r in ds.rows] == [r["messages"] for r in rows[:3]]
    first = ds.sha256
    (tmp_path / "ds" / "extra.txt").write_text("x")
    assert len(first) == 64 and read_chat_dataset(tmp_path / "ds", skip_invalid=True).sha256 != first


def test_directory_that_is_not_a_dataset(tmp_path):
    pytest.importorskip("datasets")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError) as info:
        read_chat_dataset(tmp_path / "plain")
    [problem] = info.value.problems
    assert problem.line is None and problem.message.startswith("not a saved datasets directory")


def test_missing_datasets_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match="needs the 'datasets' package: pip install datasets"):
        read_chat_dataset(tmp_path)


def test_problem_lines_summarise_many_of_a_kind():
    """Hundreds of duplicate rows cost four console lines (three shown, one count), and an error of another kind
    is still shown in full."""
    from emguard.data.io import Problem, problem_lines

    ps = [Problem("f.jsonl", i + 100, f"duplicate of line {i}", "warning") for i in range(250)]
    ps += [Problem("f.jsonl", 7 + i, f"row {7 + i}: 'messages' must be a list") for i in range(5)]
    lines = problem_lines(ps, "f.jsonl")
    assert lines[0] == ("f.jsonl: warning: 250 duplicate rows kept (first: line 100, duplicate of line 0); "
                        "emguard validate f.jsonl lists every one")
    assert lines[1:4] == [str(p) for p in ps[250:253]]
    assert lines[4] == "f.jsonl: ... and 2 more error(s) (5 in all; emguard validate f.jsonl lists every one)"
    assert len(lines) == 5
    assert problem_lines(ps[:2]) == [str(ps[0]), str(ps[1])]


def test_training_shows_a_files_problems_once_per_process(tmp_path, caplog):
    """The cells of a demo or study train on the same file: its duplicate rows are reported once, not per cell;
    a changed file is reported again."""
    import logging

    from emguard.data.io import read_chat_dataset
    from conftest import chat_rows, write_jsonl
    from emguard.training import run

    rows = chat_rows(3) * 3  # 6 duplicate rows
    f = write_jsonl(tmp_path / "d.jsonl", rows)
    ds = read_chat_dataset(f)
    with caplog.at_level(logging.WARNING, logger="emguard"):
        run._warn_data_problems(ds, str(f))
        run._warn_data_problems(ds, str(f))
    assert [r.getMessage() for r in caplog.records] == [
        f"{f}: warning: 6 duplicate rows kept (first: line 4, duplicate of line 1); emguard validate {f} lists every one"]
    caplog.clear()
    write_jsonl(f, rows + rows[:1])
    with caplog.at_level(logging.WARNING, logger="emguard"):
        run._warn_data_problems(read_chat_dataset(f), str(f))
    assert len(caplog.records) == 1 and "7 duplicate rows" in caplog.records[0].getMessage()
