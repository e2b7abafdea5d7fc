"""``emguard keys`` and ``emguard serve`` as commands: a key printed once, hashed at rest, revocable; the served
API answers the official client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import yaml

from test_server_util import free_port, openai, tiny_policy_dict


def test_keys_and_serve_commands(tiny_model, tmp_path, capsys):
    import pytest

    from emguard.cli import main

    data = tmp_path / "data"
    assert main(["keys", "create", "--org", "acme", "--name", "ci", "--data-dir", str(data)]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("emg-") and len(key) > 40
    assert main(["keys", "list", "--json", "--data-dir", str(data)]) == 0
    listing = capsys.readouterr().out
    assert '"org": "acme"' in listing and key not in listing  # only a short prefix is ever shown again
    key_id = __import__("json").loads(listing.splitlines()[0])["id"]
    assert main(["keys", "create", "--org", "../etc", "--data-dir", str(data)]) == 2  # org names are checked

    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(tiny_policy_dict(tiny_model)))
    port = free_port()
    proc = subprocess.Popen(["nice", "-n", "19", sys.executable, "-m", "emguard.cli", "serve", "--data-dir", str(data),
                             "--policy", str(policy), "--port", str(port), "--workers", "0"],
                            stdout=open(tmp_path / "serve.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=30)
        for _ in range(1200):
            try:
                models = [m.id for m in c.models.list()]
                break
            except openai.APIConnectionError:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
                time.sleep(0.1)
        assert models == ["tiny"]
        assert main(["keys", "revoke", key_id, "--data-dir", str(data)]) == 0
        with pytest.raises(openai.AuthenticationError):
            c.models.list()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
