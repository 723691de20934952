"""``cotscope guard serve``: options are validated before anything starts, with errors naming the option."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from typer.testing import CliRunner

from cotscope.cli import app
from cotscope.store import Store

from .conftest import upstream

BASE = ["guard", "serve", "--upstream", "http://127.0.0.1:9/v1", "--upstream-model", "m", "--port", "0"]


@pytest.mark.parametrize(("extra", "says"), [
    (["--monitor", "phrase", "-o", "phrase=X", "--policy", "stop"], "--policy"),
    (["--monitor", "phrase", "-o", "phrase=X", "--release", "later"], "--release"),
    (["--monitor", "phrase", "-o", "phrase=X", "--check-every", "0"], "--check-every"),
    (["--monitor", "phrase", "-o", "phrase=X", "--threshold", "2"], "--threshold"),
    (["--monitor", "no-such-monitor"], "no-such-monitor"),
    (["--monitor", "phrase"], "needs phrase="),  # the phrase judge needs its phrase option
])
def test_bad_options_fail_clearly(extra: list[str], says: str) -> None:
    out = CliRunner().invoke(app, BASE + extra)
    assert out.exit_code == 2, out.output
    assert says in out.output


def test_upstream_must_be_a_url() -> None:
    out = CliRunner().invoke(app, ["guard", "serve", "--upstream", "localhost:8000", "--upstream-model", "m",
                                   "--monitor", "phrase", "-o", "phrase=X"])
    assert out.exit_code == 2 and "--upstream" in out.output and "http" in out.output


def test_serve_records_and_its_summary_reconciles(tmp_path: Path) -> None:
    """The real command in its own process: it serves, records, stops on Ctrl-C and says what it stored."""
    store = tmp_path / "g.duckdb"
    with upstream() as up:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "cotscope"), "guard", "serve", "--upstream", up.base_url,
             "--upstream-model", "fake", "--monitor", "phrase", "--option", "phrase=EVIL", "--check-every", "40",
             "--port", "0", "--store", str(store), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=os.environ | {"HF_HUB_OFFLINE": "1", "COLUMNS": "400"})
        try:
            assert proc.stderr is not None
            base = None
            for line in proc.stderr:
                if m := re.search(r"guard on (http://\S+/v1)", line):
                    base = m.group(1)
                    break
            assert base, "the guard did not start"
            client = openai.OpenAI(base_url=base, api_key="k", max_retries=0)
            finishes = [client.chat.completions.create(model="x", messages=[{"role": "user", "content": q}]
                                                       ).choices[0].finish_reason for q in ("benign", "turning")]
        finally:
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
    assert finishes == ["stop", "content_filter"]
    summary = json.loads(out)
    assert summary["requests"] == 2 and summary["actions"] == {"passed": 1, "blocked": 1}
    assert (summary["recorded"], summary["record_failures"], summary["not_written"], summary["record_errors"]) == \
        (2, 0, 0, [])
    with Store(store, read_only=True) as st:
        assert st.count() == 2 and len(st.results(evaluator="guard:phrase")) == 2
