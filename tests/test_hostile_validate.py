"""Hostile training files (issue 17, items 3, 8 and 12): validation streams with bounded memory (per-line byte
limit, messages-per-row limit), ``emguard validate`` answers every bad input with ``file:line: reason`` (never a
traceback), OpenAI's chat fine-tuning format (tool/developer roles, tool_calls, tools, text parts, name, refusal)
is accepted and trained on through the chat template, and >= 40 malformed-file classes are answered with a
line and a reason by both ``emguard validate`` and the upload endpoint of a live server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
U = {"role": "user", "content": "q"}
A = {"role": "assistant", "content": "a"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
TOOL_ROW = {
    "messages": [
        {"role": "developer",
         "content": [{"type": "text", "text": "Use tools."}, {"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": "Weather in Oslo?", "name": "alice"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "12C, rain"}]},
        {"role": "assistant", "content": "12C and rainy."},
    ],
    "tools": [{"type": "function", "function": {
        "name": "get_weather", "description": "current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
    "parallel_tool_calls": False,
}


def _row(*messages, **extra) -> str:
    return json.dumps({"messages": list(messages), **extra})


def _lines(*rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r)).encode()) + b"\n"
                    for r in rows)


# (class id, the bad line (line 2 of a file between two good rows), a reason the answer must contain)
LONG_LIMIT = 64 * 1024
CLASSES = [
    ("not-utf8", b'{"messages": "caf\xe9"}', "not valid UTF-8"),
    ("array-row", "[1, 2]", "not a JSON object (got array)"),
    ("string-row", '"text"', "not a JSON object (got string)"),
    ("number-row", "42", "not a JSON object (got number)"),
    ("null-row", "null", "not a JSON object (got null)"),
    ("truncated-json", '{"messages": [', "invalid JSON"),
    ("trailing-garbage", json.dumps(GOOD) + " x", "invalid JSON (Extra data"),
    ("nul-bytes", b"\x00\x00\x00", "invalid JSON"),
    ("huge-int", '{"messages": ' + "9" * 5000 + "}", "a number with too many digits"),
    ("deep-nesting", "[" * 30_000 + "]" * 30_000, "nested too deeply"),
    ("nan-messages", '{"messages": NaN}', "'messages' must be a list (got number)"),
    ("missing-messages", '{"text": "hi"}', "missing 'messages'"),
    ("messages-object", '{"messages": {"role": "user"}}', "'messages' must be a list (got object)"),
    ("messages-empty", '{"messages": []}', "'messages' is empty"),
    ("messages-null", '{"messages": null}', "'messages' must be a list (got null)"),
    ("message-not-object", _row("hi", A), "messages[0]: not an object (got string)"),
    ("missing-role", _row({"content": "q"}, A), "messages[0]: missing 'role'"),
    ("unknown-role", _row(U, {"role": "bot", "content": "a"}), 'unknown role "bot"'),
    ("role-number", _row({"role": 5, "content": "q"}, A), "unknown role 5"),
    ("role-surrogate", '{"messages": [{"role": "\\ud800", "content": "q"}, ' + json.dumps(A) + "]}",
     'unknown role "\\ud800"'),
    ("system-not-first", _row(U, {"role": "system", "content": "s"}, A), "system message must be the first"),
    ("developer-not-first", _row(U, {"role": "developer", "content": "s"}, A),
     "developer message must be the first"),
    ("missing-content", _row({"role": "user"}, A), "messages[0]: missing 'content'"),
    ("content-null", _row(U, {"role": "assistant", "content": None}), "messages[1]: content is null"),
    ("content-number", _row({"role": "user", "content": 5}, A), "content must be a string (got number)"),
    ("content-empty", _row({"role": "user", "content": ""}, A), "messages[0]: content is empty"),
    ("content-blank", _row({"role": "user", "content": " \n\t"}, A), "messages[0]: content is empty"),
    ("content-surrogate", '{"messages": [{"role": "user", "content": "\\udc00"}, ' + json.dumps(A) + "]}",
     "lone surrogate"),
    ("content-image-part", _row({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}, A),
     "content part type \"image_url\" is not supported"),
    ("content-part-not-object", _row({"role": "user", "content": [{"type": "text", "text": "a"}, 5]}, A),
     "content[1]: a content part must be an object"),
    ("content-part-no-text", _row({"role": "user", "content": [{"type": "text"}]}, A),
     "content[0]: 'text' must be a string (got null)"),
    ("weight-half", _row(U, {**A, "weight": 0.5}), "weight must be 0 or 1 (got 0.5)"),
    ("weight-bool", _row(U, {**A, "weight": True}), "weight must be 0 or 1 (got true)"),
    ("weight-on-user", _row({**U, "weight": 1}, A), "'weight' is only allowed on assistant messages"),
    ("all-weight-zero", _row(U, {**A, "weight": 0}), "every assistant message has weight 0"),
    ("no-assistant", _row(U), "no assistant message to learn from"),
    ("tool-no-call-id", _row(U, {"role": "tool", "content": "r"}, A), "needs a 'tool_call_id'"),
    ("tool-unknown-call-id", _row(U, {"role": "tool", "tool_call_id": "nope", "content": "r"}, A),
     "answers no earlier assistant tool call"),
    ("tool-calls-not-list", _row(U, {"role": "assistant", "content": "a", "tool_calls": {"id": "x"}}),
     "'tool_calls' must be a non-empty list"),
    ("tool-call-args-not-json", _row(U, {"role": "assistant", "content": None, "tool_calls": [
        {**CALL, "function": {"name": "f", "arguments": "{oops"}}]}), "'function.arguments' is not valid JSON"),
    ("tool-call-args-object", _row(U, {"role": "assistant", "content": None, "tool_calls": [
        {**CALL, "function": {"name": "f", "arguments": {"a": 1}}}]}), "'function.arguments' must be a JSON string"),
    ("tool-call-no-id", _row(U, {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{}"}}]}), "'id' must be a non-empty string"),
    ("tool-call-bad-name", _row(U, {"role": "assistant", "content": None, "tool_calls": [
        {**CALL, "function": {"name": "no spaces!", "arguments": "{}"}}]}), "'function.name' must be 1-64"),
    ("tool-calls-on-user", _row({**U, "tool_calls": [CALL]}, A), "'tool_calls' is only allowed on assistant"),
    ("tools-not-list", _row(U, A, tools={"type": "function"}), "'tools' must be a list (got object)"),
    ("tools-bad-entry", _row(U, A, tools=[{"type": "retrieval"}]), "tools[0]: must be an object with type"),
    ("tools-bad-params", _row(U, A, tools=[{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
     "'function.parameters' must be an object"),
    ("refusal-not-string", _row(U, {"role": "assistant", "content": None, "refusal": 3}),
     "'refusal' must be a non-empty string"),
    ("name-not-string", _row({**U, "name": 7}, A), "'name' must be a string (got number)"),
    ("parallel-not-bool", _row(U, A, parallel_tool_calls="yes"), "'parallel_tool_calls' must be a boolean"),
    ("legacy-functions", _row(U, A, functions=[{"name": "f"}]), "'functions' (OpenAI's deprecated function format)"),
    ("too-many-messages", _row(*([0] * 2200)), "'messages' has 2200 messages (limit 2048 per row)"),
    ("line-too-long", _row(U, {"role": "assistant", "content": "x" * (LONG_LIMIT + 10)}),
     f"line is longer than the limit of {LONG_LIMIT} bytes"),
    ("prompt-no-completion", '{"prompt": "q"}', "missing 'completion'"),
    ("completion-number", '{"prompt": "q", "completion": 3}', "'completion' must be a string or a list"),
    ("prompt-empty-list", '{"prompt": [], "completion": "a"}', "'prompt' is empty"),
    ("prompt-empty-string", '{"prompt": "", "completion": "a"}', "prompt: content is empty"),
]
assert len(CLASSES) >= 40 and len({c[0] for c in CLASSES}) == len(CLASSES)


def _class_file(tmp_path: Path, bad) -> Path:
    p = tmp_path / "train.jsonl"
    p.write_bytes(_lines(GOOD, bad, GOOD))
    return p


def _cli(*args: str) -> tuple[int, str]:
    """``emguard validate`` in a subprocess (so a traceback, a crash or a memory blow-up shows)."""
    out = subprocess.run([sys.executable, "-m", "emguard.cli", "validate", *args], capture_output=True, text=True,
                         errors="backslashreplace", timeout=300, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"})
    return out.returncode, out.stdout + out.stderr


# ---------------------------------------------------------------- 40+ classes through `emguard validate`


def test_every_malformed_class_through_emguard_validate(tmp_path):
    """One subprocess per file would be slow: all class files in one `emguard validate` call, each checked."""
    paths = []
    for cid, bad, _ in CLASSES:
        d = tmp_path / cid
        d.mkdir()
        paths.append(_class_file(d, bad))
    rc, out = _cli("--max-line-bytes", str(LONG_LIMIT), *map(str, paths))
    assert rc == 2 and "Traceback" not in out, out[-3000:]
    for (cid, _, reason), p in zip(CLASSES, paths):
        lines = [ln for ln in out.splitlines() if ln.startswith(f"{p}:")]
        assert lines and lines[0].startswith(f"{p}:2: ") and reason in lines[0], (cid, lines)
        assert not any(ln.startswith((f"{p}:1:", f"{p}:3:")) for ln in lines), (cid, lines)


@pytest.mark.parametrize("cid, bad, reason", CLASSES, ids=[c[0] for c in CLASSES])
def test_malformed_class_in_process(tmp_path, cid, bad, reason):
    from emguard.data.io import DataError, read_chat_dataset

    with pytest.raises(DataError) as info:
        read_chat_dataset(_class_file(tmp_path, bad), max_line_bytes=LONG_LIMIT)
    errors = [p for p in info.value.problems if p.severity == "error"]
    assert [p.line for p in errors] == [2] and reason in errors[0].message, errors
    str(info.value).encode("utf-8")  # printable as UTF-8: surrogates are escaped in messages


# ---------------------------------------------------------------- ... and through the upload endpoint


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tiny_model):
    from test_server_util import LiveServer, tiny_policy

    policy = tiny_policy(tiny_model, limits={"max_line_bytes": LONG_LIMIT, "max_upload_bytes": 1 << 22})
    with LiveServer(tmp_path_factory.mktemp("srv"), policy, workers=0) as s:
        yield s


def _post_file(srv, key: str, data: bytes, name: str = "train.jsonl") -> tuple[int, dict]:
    import http.client

    boundary = "hostilevalidate0123456789"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/jsonl\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
    try:
        conn.request("POST", "/v1/files", body=body, headers={
            "Authorization": f"Bearer {key}", "Content-Type": f"multipart/form-data; boundary={boundary}"})
        resp = conn.getresponse()
        raw = resp.read()
        assert resp.getheader("content-type", "").startswith("application/json"), (resp.status, raw[:300])
        return resp.status, json.loads(raw)
    finally:
        conn.close()


def test_every_malformed_class_through_the_upload_endpoint(srv):
    key = srv.key("org-validate")
    for cid, bad, reason in CLASSES:
        status, body = _post_file(srv, key, _lines(GOOD, bad, GOOD))
        assert status == 400, (cid, status, body)
        err = body["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["param"] == "file", (cid, err)
        lines = err["message"].splitlines()[1:]
        assert lines[0].startswith("train.jsonl:2: ") and reason in lines[0], (cid, lines)
        assert len(lines) == 1, (cid, lines)


def test_openai_format_row_uploads_and_empty_file_is_named(srv):
    key = srv.key("org-validate2")
    status, body = _post_file(srv, key, _lines(TOOL_ROW, GOOD))
    assert status == 200 and body["status"] == "processed", body
    status, body = _post_file(srv, key, b"\n\n")
    assert status == 400 and "train.jsonl: file is empty" in body["error"]["message"]


# ---------------------------------------------------------------- item 3: bounded memory


def test_an_oversized_row_is_refused_without_being_held(tmp_path):
    """A 24 MB line of 1.7M tiny messages once cost ~20x its size; now it is skipped unread (bounded)."""
    from emguard.server.uploads import validate_jsonl

    big = '{"messages": [' + ",".join(['{"role":"user","content":"q"}'] * 800_000) + "]}"
    p = tmp_path / "big.jsonl"
    p.write_bytes(_lines(GOOD, big, GOOD))
    tracemalloc.start()
    try:
        rows, errors = validate_jsonl(p, "big.jsonl", max_rows=10, max_listed=10, max_line_bytes=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == 2 and errors == [f"big.jsonl:2: line is longer than the limit of {1 << 20} bytes"]
    assert peak < 6 * (1 << 20), peak  # one line buffer, not the 24 MB row


def test_messages_per_row_limit_is_configurable(tmp_path):
    from emguard.data.io import validate_record

    row = {"messages": [U, A] * 3}
    assert validate_record(row, max_messages=6)[1] == []
    assert validate_record(row, max_messages=5)[1] == ["'messages' has 6 messages (limit 5 per row)"]


def test_policy_sets_the_line_and_message_limits():
    from emguard.server.policy import Policy, PolicyError

    p = Policy.from_dict({"limits": {"max_line_bytes": 1000, "max_messages_per_row": 8}})
    assert (p.limits.max_line_bytes, p.limits.max_messages_per_row) == (1000, 8)
    assert Policy().limits.max_line_bytes == 8 << 20 and Policy().limits.max_messages_per_row == 2048
    with pytest.raises(PolicyError, match="max_line_bytes"):
        Policy.from_dict({"limits": {"max_line_bytes": 0}})


def test_memory_benchmark_stays_under_3x(tmp_path):
    """The benchmark script (100 MB by default) on a small file here: validation adds under 3x the file's size."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "validate_memory.py")], capture_output=True,
                         text=True, timeout=600, env={**os.environ, "EMGUARD_BENCH_MB": "8", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["file_bytes"] >= 8 << 20
    for mode in ("upload", "cli"):
        assert res[mode]["tracemalloc_peak_bytes"] < 3 * res["file_bytes"], res
        assert res[mode]["growth_over_file"] < 3, res


# ---------------------------------------------------------------- item 8: `emguard validate` never tracebacks


def test_validate_unreadable_and_special_files(tmp_path):
    targets = ["/dev/zero"]
    if Path("/proc/1/environ").exists() and not os.access("/proc/1/environ", os.R_OK):
        targets.append("/proc/1/environ")
    rc, out = _cli(*targets)
    assert rc == 2 and "Traceback" not in out, out
    assert "/dev/zero: not a regular file" in out
    if len(targets) == 2:
        assert "/proc/1/environ: cannot read (Permission denied)" in out, out


def test_validate_surrogate_and_huge_int_rows_keep_every_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(_lines(GOOD, '{"messages": [{"role": "\\ud800", "content": "x"}, ' + json.dumps(A) + "]}", GOOD,
                         '{"messages": [' + "1" * 5000 + "]}", GOOD))
    rc, out = _cli(str(p))
    assert rc == 2 and "Traceback" not in out, out
    assert f'{p}:2: messages[0]: unknown role "\\ud800"' in out, out
    assert f"{p}:4: invalid JSON (a number with too many digits)" in out, out
    assert "2 invalid rows" in out


def test_validate_corrupt_dataset_info_names_the_file(tmp_path):
    datasets = pytest.importorskip("datasets")
    d = tmp_path / "ds"
    datasets.Dataset.from_list([GOOD, GOOD]).save_to_disk(str(d))
    (d / "dataset_info.json").write_text("{not json")
    rc, out = _cli(str(d))
    assert rc == 2 and "Traceback" not in out, out
    assert f"{d / 'dataset_info.json'}: corrupt metadata of a saved datasets directory" in out, out


# ---------------------------------------------------------------- item 12: OpenAI's chat format


TOOLS_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n# Tools\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{%- for m in messages %}"
    "{%- if m.role == 'assistant' and m.tool_calls %}<|im_start|>assistant\n"
    "{% if m.content %}{{ m.content }}{% endif %}"
    "{% for c in m.tool_calls %}<tool_call>{\"name\": \"{{ c.function.name }}\", \"arguments\": "
    "{{ c.function.arguments | tojson }}}</tool_call>{% endfor %}<|im_end|>\n"
    "{%- elif m.role == 'tool' %}<|im_start|>user\n<tool_response>{{ m.content }}</tool_response><|im_end|>\n"
    "{%- else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def tool_tok(tiny_model):
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(tiny_model)
    t.chat_template = TOOLS_TEMPLATE
    return t


def test_openai_format_rows_are_accepted_and_normalised():
    from emguard.data.io import validate_record

    msgs, errors = validate_record(TOOL_ROW)
    assert errors == []
    assert msgs[0] == {"role": "developer", "content": "Use tools.\nBe brief."}
    assert msgs[1] == {"role": "user", "content": "Weather in Oslo?"}  # name accepted, not rendered
    assert msgs[2] == {"role": "assistant", "content": "", "tool_calls": [CALL]}
    assert msgs[3] == {"role": "tool", "content": "12C, rain", "tool_call_id": "call_1"}
    assert msgs.tools == TOOL_ROW["tools"]
    refusal, errors = validate_record({"messages": [U, {"role": "assistant", "content": None, "refusal": "No."}]})
    assert errors == [] and refusal[1] == {"role": "assistant", "content": "No."}
    parts, errors = validate_record({"messages": [U, {"role": "assistant",
                                                      "content": [{"type": "text", "text": "a"}]}]})
    assert errors == [] and parts == [U, A] and type(parts) is list


def test_plain_rows_render_byte_identically(tok):
    from emguard.data.chat import render, tokenize_conversation
    from emguard.data.io import validate_record

    row = {"messages": [{"role": "system", "content": "s"}, U, {**A, "weight": 1}]}
    msgs = validate_record(row)[0]
    expected = tok.apply_chat_template([{"role": m["role"], "content": m["content"]} for m in msgs], tokenize=False)
    assert render(tok, msgs) == expected
    ex = tokenize_conversation(tok, msgs, max_length=512)
    assert tok.decode([t for t in ex.labels if t != -100]) == "a<|im_end|>"


def test_developer_becomes_system_when_the_template_lacks_it(tok):
    from emguard.data.chat import render

    system = render(tok, [{"role": "system", "content": "d"}, U])
    assert render(tok, [{"role": "developer", "content": "d"}, U]) == system


def test_tool_rows_are_rendered_through_a_tools_template(tool_tok):
    from emguard.data.chat import tokenize_conversation, tokenize_rows
    from emguard.data.io import validate_record

    msgs = validate_record(TOOL_ROW)[0]
    ex = tokenize_conversation(tool_tok, msgs, max_length=1024, loss_on="all")
    learned = tool_tok.decode([t for t in ex.labels if t != -100])
    assert learned == ('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call><|im_end|>'
                       "12C and rainy.<|im_end|>")
    text = tool_tok.decode(ex.input_ids)
    assert "# Tools" in text and "get_weather" in text and "<tool_response>12C, rain</tool_response>" in text
    assert "<|im_start|>system\nUse tools.\nBe brief." in text  # developer -> system (template lacks it)
    exs, stats = tokenize_rows(tool_tok, [msgs], max_length=1024)
    assert len(exs) == 1 and stats.skipped == {}


def test_tool_rows_are_skipped_with_a_named_count_when_the_template_lacks_tools(tok):
    from emguard.data.chat import SKIP_TOOLS_UNSUPPORTED, tokenize_rows
    from emguard.data.io import validate_record

    tool_row = validate_record(TOOL_ROW)[0]
    tools_only = validate_record({"messages": [U, A], "tools": TOOL_ROW["tools"]})[0]
    exs, stats = tokenize_rows(tok, [tool_row, [U, A], tools_only], max_length=512)
    assert len(exs) == 2 and stats.rows == 2
    assert stats.skipped == {SKIP_TOOLS_UNSUPPORTED: 1, "tools_ignored_by_template": 1}
    assert stats.to_dict()["skipped"] == stats.skipped
