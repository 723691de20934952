"""The benchmark registry: the specs shipped in the package, plus any registered at run time."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from cotscope._registry import Registry, UnknownNameError
from cotscope.benchmarks._loaders import get_loader
from cotscope.benchmarks._spec import BenchmarkSpec, load_spec


def _load_shipped() -> None:
    root = Path(str(resources.files("cotscope.benchmarks").joinpath("specs")))
    for p in sorted(root.glob("*.yaml")):
        s = load_spec(p)
        # A spec registered at run time before the first lookup keeps its name.
        if s.name not in BENCHMARKS:
            _add(s)


#: Benchmark specs by name: the YAML files shipped in ``benchmarks/specs`` (read on the first lookup)
#: and any registered at run time. ``get`` returns a deep copy, so callers may change it.
BENCHMARKS: Registry[BenchmarkSpec] = Registry("benchmark", loader=_load_shipped)


def _add(spec: BenchmarkSpec) -> None:
    def copy() -> BenchmarkSpec:
        return spec.model_copy(deep=True)

    BENCHMARKS.add(spec.name, copy, source=spec.source)


def register_benchmark(spec: BenchmarkSpec) -> BenchmarkSpec:
    """Make a spec nameable (``get_benchmark(spec.name)``) for the rest of the process."""
    _add(spec)
    return spec


def benchmark_names() -> list[str]:
    """Names of the shipped and registered benchmarks."""
    return BENCHMARKS.names()


def get_benchmark(name_or_path: str | Path) -> BenchmarkSpec:
    """A benchmark spec by registry name, or read from a YAML file path.

    A copy is returned, so callers may change it (e.g. ``data.path``) without touching the registry.

    Raises:
        UnknownNameError: neither a known name nor an existing ``.yaml``/``.yml`` file (a ``ConfigError``).
        ConfigError: the file is not a valid spec.
        FileNotFoundError: a ``.yaml`` path that does not exist.
    """
    key = str(name_or_path)
    if key in BENCHMARKS:
        return BENCHMARKS.get(key)
    p = Path(key)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        return load_spec(p)
    raise UnknownNameError("benchmark", key, BENCHMARKS.names(), hint=" or a path to a spec .yaml file")


def describe(spec: BenchmarkSpec) -> dict[str, Any]:
    """What ``cotscope benchmarks --json`` prints for one spec; ``items`` is null when data must be given."""
    try:
        from cotscope.benchmarks._runner import RunOptions, select_items

        n: int | None = len(select_items(spec, RunOptions()))
        note = None
    except (ValueError, FileNotFoundError) as e:
        n, note = None, str(e)
    from cotscope.benchmarks._kinds import get_kind

    d: dict[str, Any] = {
        "name": spec.name,
        "items": n,
        "source": spec.source or get_loader(spec.data.loader).source,
        "kind": spec.kind,
        "description": spec.description,
        "loader": spec.data.loader,
        "hub": (spec.data.hf or {}).get("path"),
        "strategies": _strategies(spec),
        "samples": get_kind(spec.kind).samples(spec, None),
        "judges": [f"{j.name}:{j.part}" for j in spec.judges],
        "metrics": spec.metrics,
    }
    if note:
        d["note"] = note
    return d


def _strategies(spec: BenchmarkSpec) -> list[str]:
    # The spec's strategy strings as written (``morethink`` keeps no budget suffix); a kind that decodes
    # nothing (judge agreement) says what it stores instead.
    from cotscope.benchmarks._kinds import GIVEN, get_kind

    return [GIVEN] if get_kind(spec.kind).strategies(spec, None) == [GIVEN] else spec.generation.strategy_specs()


def list_benchmarks() -> list[dict[str, Any]]:
    """:func:`describe` of every benchmark, by name."""
    return [describe(get_benchmark(n)) for n in benchmark_names()]
