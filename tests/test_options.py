"""The one key=value option parser: typed values, clear errors naming the flag."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cotscope._options import parse_kv, parse_value
from cotscope.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2", 2),
        ("-3", -3),
        ("0.5", 0.5),
        ("1e-3", 1e-3),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[1,2]", [1, 2]),
        ('{"a":1}', {"a": 1}),
        ('"quoted"', "quoted"),
        ("Qwen/QwQ-32B", "Qwen/QwQ-32B"),
        ("chat", "chat"),
        ("True", "True"),  # YAML-ish, but JSON's spelling only: a capitalised word stays a string
        ("1e-3x", "1e-3x"),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("", ""),
        (" 2 ", 2),
        ("a=b", "a=b"),
    ],
)
def test_values_are_typed_json_first(text: str, value: Any) -> None:
    got = parse_value(text)
    assert got == value and type(got) is type(value)


def test_pairs_to_a_flat_dict() -> None:
    assert parse_kv([" threads =2", "endpoint=chat", "extra.top_k=5", "url=http://x/?a=b", "threads=4"],
                    "-M") == {"threads": 4, "endpoint": "chat", "extra.top_k": 5, "url": "http://x/?a=b"}
    assert parse_kv([], "-M") == {}


@pytest.mark.parametrize("pair", ["novalue", "=3", "  =x"])
def test_a_bad_pair_names_the_flag_and_the_pair(pair: str) -> None:
    with pytest.raises(ConfigError, match=r"-M/--model-arg") as ei:
        parse_kv(["ok=1", pair], "-M/--model-arg")
    assert repr(pair) in str(ei.value)
    assert isinstance(ei.value, ValueError)


@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_.]{0,8}", fullmatch=True),
                       st.one_of(st.integers(), st.booleans(), st.none(),
                                 st.floats(allow_nan=False, allow_infinity=False),
                                 st.lists(st.integers(), max_size=3))))
def test_json_values_round_trip(d: dict[str, Any]) -> None:
    import json

    assert parse_kv([f"{k}={json.dumps(v)}" for k, v in d.items()], "-X") == d
