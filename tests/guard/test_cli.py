"""``cotscope guard serve``: options are validated before anything starts, with errors naming the option."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cotscope.cli import app

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
