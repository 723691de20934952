"""Prompt templates shipped as data files in ``cotscope/judges/prompts``."""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from importlib import resources
from typing import Any


@cache
def load_prompt(name: str) -> str:
    """The text of a prompt file in ``cotscope/judges/prompts`` (e.g. ``harmbench_cls.txt``)."""
    return (resources.files("cotscope.judges") / "prompts" / name).read_text(encoding="utf-8")


@cache
def load_json(name: str) -> Any:
    """A JSON data file in ``cotscope/judges/prompts``."""
    return json.loads(load_prompt(name))


def prompt_hash(*names: str) -> str:
    """A short hash of prompt files, part of a judge's config so that editing a template invalidates results."""
    h = hashlib.blake2b(digest_size=6)
    for n in names:
        h.update(load_prompt(n).encode())
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
