"""Prompt templates shipped as data files in ``cotscope/judges/prompts``."""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from importlib import resources
from typing import Any

#: The package whose ``prompts`` folder holds the judges' prompt files.
JUDGES_PACKAGE = "cotscope.judges"


@cache
def load_prompt(name: str, package: str = JUDGES_PACKAGE) -> str:
    """The text of a prompt file in ``<package>/prompts`` (default ``cotscope/judges/prompts``, e.g.
    ``harmbench_cls.txt``; the monitors keep theirs in ``cotscope/monitors/prompts``)."""
    return (resources.files(package) / "prompts" / name).read_text(encoding="utf-8")


@cache
def load_json(name: str, package: str = JUDGES_PACKAGE) -> Any:
    """A JSON data file in ``<package>/prompts``."""
    return json.loads(load_prompt(name, package))


def prompt_hash(*names: str, package: str = JUDGES_PACKAGE) -> str:
    """A short hash of prompt files, part of a judge's config so that editing a template invalidates results."""
    h = hashlib.blake2b(digest_size=6)
    for n in names:
        h.update(load_prompt(n, package).encode())
    return h.hexdigest()


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render(template: str, **values: str) -> str:
    """Fill ``{name}`` placeholders with ``values``.

    Unlike ``str.format`` this leaves unknown names and other braces alone, because model outputs and
    traces that get substituted (and some templates) contain braces of their own; substitution is a single
    pass, so a value that itself contains ``{name}`` is never expanded again.

    Raises:
        KeyError: a placeholder of the template has no value.
    """
    missing = {m for m in _PLACEHOLDER.findall(template) if m not in values}
    if missing:
        # A template's placeholders are part of its contract; a silent leftover would corrupt the prompt.
        raise KeyError(f"template placeholders without a value: {', '.join(sorted(missing))}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
