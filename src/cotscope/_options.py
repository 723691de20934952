"""The one ``key=value`` option parser, shared by every command that takes ``-M``/``-J``-style options.

Values are typed the way YAML users expect: a value that parses as JSON takes that type (``2`` -> int,
``0.5`` -> float, ``true`` -> bool, ``null`` -> None, ``[1,2]`` -> list, ``{"a":1}`` -> dict); anything else
stays the string it was (``Qwen/QwQ-32B``, ``chat``, ``1e-3x``). So ``-M threads=2`` gives every backend
the int 2, whichever command parsed it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cotscope.errors import ConfigError

__all__ = ["parse_kv", "parse_value"]


def parse_value(text: str) -> Any:
    """A value typed by JSON when it parses as JSON, else the string itself.

    Surrounding whitespace is ignored for typing; a value that stays a string keeps it. ``NaN`` and
    ``Infinity`` stay strings (they are not JSON, and a backend option never means them).
    """
    stripped = text.strip()
    if not stripped:
        return text
    try:
        return json.loads(stripped, parse_constant=_reject_constant)
    except ValueError:
        return text


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_kv(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``, values typed by :func:`parse_value`.

    Keys are stripped; only the first ``=`` splits, so a value may contain ``=``. Dotted keys stay flat
    (``extra.top_k=5`` -> ``{"extra.top_k": 5}``); a later pair with the same key wins.

    Args:
        pairs: the option values as given, one ``key=value`` each.
        flag: the option's spelling (``-M/--model-arg``), named in errors.

    Raises:
        ConfigError: a pair without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"{flag} takes key=value, got {pair!r}")
        if not key:
            raise ConfigError(f"{flag} takes key=value with a non-empty key, got {pair!r}")
        out[key] = parse_value(value)
    return out
