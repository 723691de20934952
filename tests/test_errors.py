"""One error hierarchy: every deliberate cotscope error is a CotscopeError and keeps its built-in base."""

from __future__ import annotations

import pytest

from cotscope.errors import BackendError, ConfigError, CotscopeError, DataError


def test_the_hierarchy() -> None:
    assert issubclass(DataError, CotscopeError) and issubclass(DataError, ValueError)
    assert issubclass(ConfigError, CotscopeError) and issubclass(ConfigError, ValueError)
    assert issubclass(BackendError, CotscopeError) and issubclass(BackendError, RuntimeError)
    assert not issubclass(DataError, ConfigError) and not issubclass(ConfigError, DataError)


def _existing() -> list[tuple[type[Exception], type[Exception]]]:
    from cotscope._registry import UnknownNameError
    from cotscope.judges._parse import ParseError
    from cotscope.metrics import MetricError
    from cotscope.traces import RecordError, TraceFileError

    return [
        (RecordError, DataError),
        (TraceFileError, DataError),
        (MetricError, DataError),
        (ParseError, DataError),
        (UnknownNameError, ConfigError),
    ]


@pytest.mark.parametrize(("cls", "base"), _existing(), ids=lambda c: c.__name__)
def test_existing_errors_join_the_hierarchy(cls: type[Exception], base: type[Exception]) -> None:
    assert issubclass(cls, base) and issubclass(cls, CotscopeError)


def test_existing_bases_are_kept() -> None:
    from cotscope.traces import RecordError, TraceFileError

    assert issubclass(RecordError, ValueError)
    assert issubclass(TraceFileError, OSError)  # `except OSError` around file reads still catches it
    e = RecordError("bad", "f.jsonl", 3)
    assert str(e) == "f.jsonl:3: bad" and e.to_dict() == {"source": "f.jsonl", "line": 3, "error": "bad"}


def test_unknown_names_are_config_errors() -> None:
    from cotscope.judges import get_judge
    from cotscope.models import get_model
    from cotscope.monitors import get_monitor
    from cotscope.thinking import get_strategy

    for call in (lambda: get_judge("nope"), lambda: get_monitor("nope"), lambda: get_strategy("nope"),
                 lambda: get_model("nope/x"), lambda: get_strategy("morethink:x")):
        with pytest.raises(ConfigError):
            call()


def test_bad_benchmark_specs_are_config_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cotscope.benchmarks import load_spec

    p = tmp_path / "s.yaml"
    p.write_text("- not a mapping\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_spec(p)
    p.write_text("name: x\nbogus_field: [\n")
    with pytest.raises(ConfigError):
        load_spec(p)
    p.write_text("name: x\ntemplate: no placeholder\n")
    with pytest.raises(ConfigError, match="invalid benchmark spec"):
        load_spec(p)
