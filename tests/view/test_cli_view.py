"""The `cotscope view` command: starts on 127.0.0.1 with a free port, says where (and the token), serves,
stops on Ctrl+C; clear errors for a missing store or a bad port."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cotscope.cli import app

Built = Any


def test_view_command_serves_and_stops(built: Built) -> None:
    env = os.environ | {"COTSCOPE_VIEW_TOKEN": "cli-token", "USER": "cli-user"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from cotscope.cli import main; main()", "view", "--store", str(built.path),
         "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        text = ""
        while True:  # one JSON object, printed over several lines once the socket is bound
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            text += line
            if line.startswith("}"):
                break
        info = json.loads(text)
        assert info["host"] == "127.0.0.1" and info["port"] > 0 and info["user"] == "cli-user"
        assert info["login_url"] == f"http://127.0.0.1:{info['port']}/?token=cli-token"
        conn = http.client.HTTPConnection("127.0.0.1", info["port"], timeout=30)
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 200 and b"27 of 27" in resp.read()
        conn.request("POST", "/api/labels", body=json.dumps({"trace_id": built.prm, "name": "cli", "value": "1"}),
                     headers={"Content-Type": "application/json", "X-Cotscope-Token": "cli-token"})
        resp = conn.getresponse()
        assert resp.status == 201 and json.loads(resp.read())["author"] == "cli-user"
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode in (0, 130, -signal.SIGINT)


def test_view_command_errors(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["view", "--store", str(tmp_path / "none.duckdb")])
    assert r.exit_code == 2 and "none.duckdb: no such store" in r.output
    (tmp_path / "s.duckdb").write_bytes(b"")
    r = CliRunner().invoke(app, ["view", "--store", str(tmp_path / "s.duckdb"), "--port", "70000"])
    assert r.exit_code == 2 and "--port 70000" in r.output
