"""The one registry type: registration, lazy built-ins, recorded arguments and the registries built on it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from cotscope._registry import Registry, RegistryInfo, UnknownNameError, registry_config, registry_info
from cotscope.errors import ConfigError, CotscopeError


class Thing:
    def __init__(self, size: int, colour: str = "red", **extra: Any) -> None:
        self.size = size
        self.colour = colour
        self.extra = extra


def test_register_class_and_function_and_look_up() -> None:
    reg: Registry[Thing] = Registry("thing")
    reg.register("cls", doc="a class")(Thing)

    @reg.register("fn")
    def make(size: int = 3) -> Thing:
        return Thing(size, "blue")

    assert reg.names() == ["cls", "fn"]
    assert "cls" in reg and "nope" not in reg
    assert len(reg) == 2 and list(reg) == ["cls", "fn"]
    assert reg.info("cls") == {"doc": "a class"} and reg.info("fn") == {}
    assert reg.factory("fn") is make
    t = reg.get("fn")
    assert isinstance(t, Thing) and (t.size, t.colour) == (3, "blue")


def test_get_records_bound_arguments_with_defaults_and_flattened_kwargs() -> None:
    reg: Registry[Thing] = Registry("thing")
    reg.register("t")(Thing)
    a = reg.get("t", 2, shade="dark")
    b = reg.get("t", size=2, colour="red", shade="dark")
    assert registry_info(a) == RegistryInfo("thing", "t", {"size": 2, "colour": "red", "shade": "dark"})
    # However the arguments were spelled, the same effective call has the same identity.
    assert registry_config(a) == registry_config(b) == {
        "name": "t", "args": {"size": 2, "colour": "red", "shade": "dark"}}


def test_var_positional_is_kept_as_a_list() -> None:
    reg: Registry[tuple[Any, ...]] = Registry("tuple")

    @reg.register("t")
    def make(*items: int) -> Any:
        return Thing(len(items))

    assert registry_info(reg.get("t", 1, 2)) == RegistryInfo("tuple", "t", {"items": [1, 2]})


def test_unknown_name_is_a_config_error_listing_the_known_names() -> None:
    reg: Registry[Thing] = Registry("thing")
    reg.register("b")(Thing)
    reg.register("a")(Thing)
    with pytest.raises(UnknownNameError, match=r"unknown thing 'zz': expected one of a, b") as ei:
        reg.get("zz")
    assert isinstance(ei.value, ConfigError) and isinstance(ei.value, ValueError)
    assert isinstance(ei.value, CotscopeError)
    assert ei.value.known == ["a", "b"]
    with pytest.raises(UnknownNameError):
        reg.info("zz")


def test_arguments_that_do_not_bind_are_a_config_error() -> None:
    reg: Registry[Thing] = Registry("thing")

    @reg.register("t")
    def make(size: int) -> Thing:
        return Thing(size)

    with pytest.raises(ConfigError, match=r"thing 't' does not take the arguments \(colour='x'\)"):
        reg.get("t", colour="x")


def test_loader_runs_once_on_first_lookup_and_may_look_up_while_loading() -> None:
    calls = []
    reg: Registry[Thing]

    def load() -> None:
        calls.append(1)
        reg.register("builtin")(Thing)
        assert "builtin" in reg  # a lookup during loading does not recurse

    reg = Registry("thing", loader=load)
    reg.register("early")(Thing)
    assert calls == []
    assert reg.names() == ["builtin", "early"]
    assert reg.names() == ["builtin", "early"]
    assert calls == [1]


def test_registering_again_replaces() -> None:
    reg: Registry[Thing] = Registry("thing")
    reg.register("t")(Thing)

    @reg.register("t")
    def other() -> Thing:
        return Thing(9)

    assert reg.get("t").size == 9


def test_registry_config_is_json_safe() -> None:
    reg: Registry[Any] = Registry("thing")
    inner_reg: Registry[Thing] = Registry("inner")
    inner_reg.register("i")(Thing)

    class Opts(BaseModel):
        k: int = 1

    @dataclass
    class DC:
        x: float

    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    @reg.register("t")
    def make(**kw: Any) -> Thing:
        return Thing(1)

    inner = inner_reg.get("i", 4)
    obj = reg.get("t", inner=inner, model=Opts(), dc=DC(0.5), path=Path("/a/b"), tup=(1, "x"),
                  nan=float("nan"), other=Opaque(), nested={"o": Opaque(), 3: [inner]})
    cfg = registry_config(obj)
    json.dumps(cfg)  # serialisable
    args = cfg["args"]
    assert args["inner"] == {"name": "i", "args": {"size": 4, "colour": "red"}}
    assert args["model"] == {"k": 1}
    assert args["dc"] == {"x": 0.5}
    assert args["path"] == "/a/b"
    assert args["tup"] == [1, "x"]
    assert args["nan"] == "nan"
    assert args["other"] == "<opaque>"
    assert args["nested"] == {"o": "<opaque>", "3": [args["inner"]]}


def test_objects_not_built_by_a_registry_have_no_info() -> None:
    assert registry_info(Thing(1)) is None
    with pytest.raises(ValueError, match="not built by a registry"):
        registry_config(Thing(1))


def test_pydantic_objects_carry_info_and_still_compare_by_fields() -> None:
    class Spec(BaseModel):
        a: int = 1

    reg: Registry[Spec] = Registry("spec")
    reg.register("s")(Spec)
    s = reg.get("s", a=2)
    assert registry_info(s) == RegistryInfo("spec", "s", {"a": 2})
    assert s == Spec(a=2)
    assert s.model_dump() == {"a": 2}


# -- the registries built on it ------------------------------------------------------------------------
def test_judges_record_their_arguments() -> None:
    from cotscope.judges import get_judge, judge_names

    assert "refusal-strings" in judge_names()
    j = get_judge("refusal-strings")
    info = registry_info(j)
    assert info is not None and (info.kind, info.name) == ("judge", "refusal-strings")
    assert info.args["model"] is None


def test_strategies_record_their_argument() -> None:
    from cotscope.thinking import get_strategy

    s = get_strategy("morethink:64")
    assert registry_info(s) == RegistryInfo("strategy", "morethink", {"arg": "64"})
    with pytest.raises(ConfigError, match="unknown strategy 'bogus:1'"):
        get_strategy("bogus:1")


def test_model_providers_and_models() -> None:
    from cotscope.models import get_model, model_providers

    assert {"openai", "local", "llamacpp", "vllm"} <= set(model_providers())
    m = get_model("openai/gpt-x", base_url="http://127.0.0.1:1/v1", api_key="k")
    info = registry_info(m)
    assert info is not None and info.kind == "model provider" and info.name == "openai"
    assert info.args["model"] == "gpt-x" and info.args["api_key"] == "k"
    with pytest.raises(UnknownNameError, match="unknown model provider 'nope'"):
        get_model("nope/x")
    with pytest.raises(ConfigError, match="must look like provider/model"):
        get_model("noslash")


def test_monitors_fall_back_to_judges() -> None:
    from cotscope.monitors import get_monitor, monitor_names

    assert "tc-cot-monitor" in monitor_names()
    with pytest.raises(UnknownNameError, match="unknown monitor 'nope'") as ei:
        get_monitor("nope")
    assert "refusal-strings" in ei.value.known


def test_loaders_and_benchmarks() -> None:
    from cotscope.benchmarks import benchmark_names, get_benchmark
    from cotscope.benchmarks._loaders import get_loader, loader_names

    assert "prompts" in loader_names()
    assert get_loader("prompts").source.startswith("a local")
    with pytest.raises(UnknownNameError, match="unknown benchmark loader"):
        get_loader("nope")
    names = benchmark_names()
    assert names
    a, b = get_benchmark(names[0]), get_benchmark(names[0])
    assert a == b and a is not b
    with pytest.raises(ConfigError, match=r"or a path to a spec \.yaml file"):
        get_benchmark("no-such-benchmark")
