"""Hostile request bodies and query strings against a live server (issue 17, items 1, 5, 6 and 9): a customer
cannot weaken the operator's defenses, every defense option is type- and range-checked at job creation, the
validation file's purpose is checked, an unknown `after` cursor is an error, and request bodies are strict JSON
(no NaN/Infinity, no duplicate keys, no silent coercions). Raw HTTP on 127.0.0.1 where the official client
cannot send the input."""

from __future__ import annotations

import http.client
import json

import pytest

from test_server_util import LiveServer, chat_rows, tiny_policy, upload


def _raw(srv: LiveServer, key: str, method: str, path: str, body: bytes | str | None = None,
         content_type: str | None = "application/json") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    try:
        headers = {"Authorization": f"Bearer {key}"}
        if content_type:
            headers["Content-Type"] = content_type
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _error(status_body: tuple[int, dict], status: int = 400) -> dict:
    code, body = status_body
    assert code == status, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


@pytest.fixture(scope="module")
def live(tiny_model, tmp_path_factory):
    """One server for the module (no workers: nothing trains): policy kl lam 0.1, customers may add."""
    with LiveServer(tmp_path_factory.mktemp("hostile"), tiny_policy(tiny_model), workers=0) as srv:
        key = srv.key("org-h")
        f = upload(srv.client(key), chat_rows(6))
        yield srv, key, f.id


def _create(live, body: dict | str):
    srv, key, fid = live
    if isinstance(body, dict):
        body = json.dumps({"model": "tiny", "training_file": fid, **body})
    return _raw(srv, key, "POST", "/v1/fine_tuning/jobs", body)


# ---------------------------------------------------------------- item 1: defenses


@pytest.mark.parametrize("spec, words", [
    ({"name": "kl", "lam": 0}, "weaken"),  # plain SFT instead of the policy's kl
    ({"name": "kl", "lam": 0.05}, "weaken"),
    ({"name": "kl", "lam": -100}, ">= 0"),  # pushes away from the reference
    ({"name": "kl", "lam": 1e308}, "<="),
    ({"name": "kl", "lam": True}, "number"),
    ({"name": "kl", "lam": "0.5"}, "number"),
    ({"name": "kl", "tokens": "bogus"}, "one of"),
    ({"name": "ldifs", "lam": -1}, ">= 0"),
    ({"name": "ldifs", "lam": 1e300}, "<="),
    ({"name": "inoculate", "mode": "bogus"}, "one of"),
    ({"name": "inoculate", "mode": 3}, "string"),
])
def test_customer_defense_options_are_checked_and_cannot_weaken_the_policy(live, spec, words):
    err = _error(_create(live, {"emguard": {"defenses": [spec]}}))
    assert err["param"] == "emguard.defenses" and words in err["message"], err


def test_customer_may_strengthen_or_keep_the_policy_defense_and_add_others(live):
    code, job = _create(live, {"emguard": {"defenses": [{"name": "kl", "lam": 0.5}]}})
    assert code == 200 and job["emguard"]["defenses"] == [{"name": "kl", "lam": 0.5}], job
    code, job = _create(live, {"emguard": {"defenses": ["kl", {"name": "ldifs", "lam": 2},
                                                       {"name": "inoculate", "mode": "prepend"}]}})
    assert code == 200, job
    assert job["emguard"]["defenses"] == [{"name": "kl", "lam": 0.1}, {"name": "ldifs", "lam": 2},
                                          {"name": "inoculate", "mode": "prepend"}]
    code, job = _create(live, {"emguard": {"defenses": [{"name": "kl", "lam": 0.1, "tokens": "response"}]}})
    assert code == 200 and job["emguard"]["defenses"][0]["lam"] == 0.1, job


def test_unit_add_never_lowers_a_policy_defense():
    from emguard.server.policy import Policy, RequestError, job_defenses

    p = Policy.from_dict({"defenses": [{"name": "kl", "lam": 0.1}, {"name": "inoculate"}],
                          "customer": {"allowed_defenses": ["kl", "inoculate", "ldifs"]}})
    assert job_defenses(p, [{"name": "kl", "lam": 1}]) == [{"name": "kl", "lam": 1.0}, {"name": "inoculate"}]
    for bad in ({"name": "kl", "lam": 0.0999}, {"name": "kl", "tokens": "all"},
                {"name": "inoculate", "mode": "prepend"}, {"name": "kl", "lam": float("nan")}):
        with pytest.raises(RequestError):
            job_defenses(p, [bad])
    # replace: the operator chose to let customers replace the defaults; options are still range-checked
    r = Policy.from_dict({"defenses": [{"name": "kl", "lam": 0.1}], "customer": {"defenses": "replace"}})
    assert job_defenses(r, [{"name": "ldifs", "lam": 0.5}]) == [{"name": "ldifs", "lam": 0.5}]
    with pytest.raises(RequestError, match=">= 0"):
        job_defenses(r, [{"name": "kl", "lam": -1}])


# ---------------------------------------------------------------- item 5: validation file purpose


def test_validation_file_must_have_purpose_fine_tune(live):
    from emguard.server.db import File, new_id, now

    srv, key, fid = live
    with srv.state.sessions() as s, s.begin():  # a file of another purpose (e.g. one from an older service)
        row = s.query(File).filter_by(id=fid).one()
        other = File(id=new_id("file"), org="org-h", filename="v.jsonl", purpose="batch", bytes=row.bytes,
                     sha256=row.sha256, rows=row.rows, status="processed", created_at=now())
        s.add(other)
        other_id = other.id
    err = _error(_create(live, {"validation_file": other_id}))
    assert err["param"] == "validation_file" and "fine-tune" in err["message"]


# ---------------------------------------------------------------- item 6: `after` cursors


def test_unknown_after_cursor_is_an_error_and_a_deleted_one_continues(live):
    srv, key, _ = live
    c = srv.client(key)
    ids = [upload(c, chat_rows(2, seed=i), name=f"p{i}.jsonl").id for i in range(4)]  # newest last
    for path in ("/v1/files?after=file-doesnotexist", "/v1/fine_tuning/jobs?after=ftjob-doesnotexist"):
        err = _error(_raw(srv, key, "GET", path), 404)
        assert err["param"] == "after" and "doesnotexist" in err["message"]
    other = srv.key("org-other")  # another org's id is a cursor that does not exist, like any of its ids
    err = _error(_raw(srv, other, "GET", f"/v1/files?after={ids[2]}"), 404)
    assert err["param"] == "after"
    job = _create(live, {})[1]
    err = _error(_raw(srv, other, "GET", f"/v1/fine_tuning/jobs?after={job['id']}"), 404)
    err = _error(_raw(srv, key, "GET", f"/v1/fine_tuning/jobs/{job['id']}/events?after=ftevent-nope"), 404)
    # a deleted file is still a valid position: the listing continues after it instead of restarting
    c.files.delete(ids[2])
    code, body = _raw(srv, key, "GET", f"/v1/files?after={ids[2]}&limit=2")
    assert code == 200 and [f["id"] for f in body["data"]] == [ids[1], ids[0]], body
    code, body = _raw(srv, key, "GET", f"/v1/files?after={ids[2]}&order=asc&limit=100")
    assert code == 200 and [f["id"] for f in body["data"]] == [ids[3]], body


# ---------------------------------------------------------------- item 9: coercions and strict JSON


@pytest.mark.parametrize("hp, field", [
    ({"n_epochs": True}, "n_epochs"), ({"batch_size": "16"}, "batch_size"), ({"n_epochs": 2.0}, "n_epochs"),
    ({"learning_rate_multiplier": "1.0"}, "learning_rate_multiplier"),
    ({"learning_rate_multiplier": False}, "learning_rate_multiplier"), ({"batch_size": "auto "}, "batch_size"),
])
def test_hyperparameters_are_not_coerced(live, hp, field):
    for body in ({"hyperparameters": hp},
                 {"method": {"type": "supervised", "supervised": {"hyperparameters": hp}}}):
        err = _error(_create(live, body))
        assert field in err["param"] and field in err["message"], err
    err = _error(_create(live, {"seed": True}))
    assert err["param"] == "seed"


def test_hyperparameters_of_the_right_type_pass(live):
    code, job = _create(live, {"hyperparameters": {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 2}})
    assert code == 200 and job["hyperparameters"]["n_epochs"] == 2, job
    code, job = _create(live, {"hyperparameters": {"n_epochs": "auto", "learning_rate_multiplier": 0.5}})
    assert code == 200, job


@pytest.mark.parametrize("text, words", [
    ('{{"model": "tiny", "training_file": "{fid}", "seed": NaN}}', "NaN"),
    ('{{"model": "tiny", "training_file": "{fid}", "hyperparameters": {{"learning_rate_multiplier": Infinity}}}}',
     "Infinity"),
    ('{{"model": "tiny", "training_file": "{fid}", "seed": -Infinity}}', "-Infinity"),
    ('{{"model": "tiny", "training_file": "{fid}", "emguard": {{"defenses": [{{"name": "kl", "lam": NaN}}]}}}}',
     "NaN"),
    ('{{"model": "tiny", "training_file": "{fid}", "model": "tiny"}}', "duplicate key 'model'"),
    ('{{"model": "tiny", "training_file": "{fid}", "emguard": {{"defenses": [{{"name": "kl", "lam": 1, '
     '"lam": 0}}]}}}}', "duplicate key 'lam'"),
    ('{{"model": "tiny", "training_file": "{fid}", "metadata": {{"a": "1", "a": "2"}}}}', "duplicate key 'a'"),
    ('{{"model": "tiny", "training_file": "{fid}"', "JSON"),
])
def test_request_bodies_are_strict_json(live, text, words):
    srv, key, fid = live
    before = len(srv.client(key).fine_tuning.jobs.list(limit=1000).data)
    err = _error(_raw(srv, key, "POST", "/v1/fine_tuning/jobs", text.format(fid=fid)))
    assert words in err["message"] and err["code"] == "invalid_json", err
    assert len(srv.client(key).fine_tuning.jobs.list(limit=1000).data) == before  # nothing was created
    # without a content type the body is read as JSON too, with the same checks
    err = _error(_raw(srv, key, "POST", "/v1/fine_tuning/jobs", text.format(fid=fid), content_type=None))
    assert err["code"] == "invalid_json"


def test_strict_loads_unit():
    from emguard.server.strictjson import StrictJSONError, strict_loads

    assert strict_loads(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    for bad, words in ((b'{"a": NaN}', "NaN"), (b'[Infinity]', "Infinity"), (b'{"a": 1, "a": 1}', "duplicate"),
                       (b'{"a": ' + b"9" * 5000 + b"}", "4300 digits"), (b"\xff\xfe{", "UTF-8"),
                       (b"[" * 100_000, None), (b'{"a": 1', "line 1")):
        with pytest.raises(StrictJSONError, match=words):
            strict_loads(bad)


def test_operator_policy_defense_options_are_range_checked_at_load():
    from emguard.server.policy import Policy, PolicyError

    with pytest.raises(PolicyError, match="'lam' must be >= 0"):
        Policy.from_dict({"defenses": [{"name": "kl", "lam": -1}]})
    with pytest.raises(PolicyError, match="one of"):
        Policy.from_dict({"defenses": [{"name": "inoculate", "mode": "bogus"}]})
    assert Policy.from_dict({"defenses": [{"name": "kl", "lam": 0}]}).defenses == [{"name": "kl", "lam": 0}]
