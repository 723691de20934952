"""One registry type for everything cotscope names: backends, strategies, judges, monitors, loaders, benchmarks.

A :class:`Registry` maps names to factories (classes or functions). ``@reg.register("name")`` registers
one; :meth:`Registry.get` builds an object and records on it *what* it was built from: the registry kind,
the name and the bound arguments with defaults applied (:class:`RegistryInfo`). From that record an
object's identity is derived (:func:`registry_config`) instead of being hand-kept next to the code, the
way Inspect AI's registry records the parameters of its solvers and scorers.

Built-ins are registered by importing the modules that define them. A registry takes a ``loader`` that
does those imports; it runs on the first lookup, so defining a registry never imports its members and
modules that register things never form import cycles with the registry's own module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import inspect
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Generic, TypeVar

from cotscope.errors import ConfigError

__all__ = [
    "REGISTRY_INFO_ATTR",
    "Registry",
    "RegistryInfo",
    "UnknownNameError",
    "registry_config",
    "registry_info",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: The attribute :meth:`Registry.get` sets on every object it builds.
REGISTRY_INFO_ATTR = "__registry_info__"


@dataclass(frozen=True)
class RegistryInfo:
    """What a registered object was built from.

    Attributes:
        kind: the registry's kind, e.g. ``judge`` or ``strategy``.
        name: the registered name.
        args: the factory's arguments, bound to its signature with defaults applied; the contents of a
            ``**kwargs`` catch-all are flattened into this dict and a ``*args`` one is kept as a list.
    """

    kind: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)


class UnknownNameError(ConfigError):
    """A name that is not registered. The message lists the known names.

    Attributes:
        kind: the registry's kind.
        name: the name asked for.
        known: the registered names.
    """

    def __init__(self, kind: str, name: str, known: list[str], hint: str = "") -> None:
        self.kind = kind
        self.name = name
        self.known = known
        listed = ", ".join(known) if known else "(none registered)"
        super().__init__(f"unknown {kind} {name!r}: expected one of {listed}{hint}")


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., Any]
    info: Mapping[str, Any]


class Registry(Generic[T]):
    """Names mapped to factories of ``T``, filled by a decorator, looked up by name.

    Args:
        kind: what the registry holds, in words (``judge``, ``model provider``); used in errors and in
            the :class:`RegistryInfo` of the objects it builds.
        loader: imports the modules that register the built-ins; called once, on the first lookup.

    Example:
        >>> judges: Registry[Judge] = Registry("judge", loader=_import_builtin_judges)
        >>> @judges.register("refusal-strings", label_meaning="refused")
        ... class RefusalStrings: ...
        >>> j = judges.get("refusal-strings", threshold=0.5)
        >>> registry_config(j)
        {'name': 'refusal-strings', 'args': {'threshold': 0.5}}
    """

    def __init__(self, kind: str, loader: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._loader = loader
        self._loaded = loader is None
        self._loading = False
        self._entries: dict[str, _Entry] = {}

    # -- filling -------------------------------------------------------------------------------------
    def register(self, name: str, /, **info: Any) -> Callable[[F], F]:
        """A decorator that registers a class or factory function under ``name``.

        Registering a name again replaces the earlier factory (tests and plugins override built-ins).

        Args:
            name: the name users give (CLI option, spec file, Python call).
            **info: anything to keep about the entry (a description, a data source); see :meth:`info`.
        """

        def deco(factory: F) -> F:
            self.add(name, factory, **info)
            return factory

        return deco

    def add(self, name: str, factory: Callable[..., T], /, **info: Any) -> None:
        """Register ``factory`` under ``name`` (the non-decorator form of :meth:`register`)."""
        if not name:
            raise ConfigError(f"a {self.kind} needs a non-empty name")
        self._entries[name] = _Entry(factory, dict(info))

    # -- looking up ----------------------------------------------------------------------------------
    def _load(self) -> None:
        # The flag is set before the loader runs: the modules it imports call register(), and a lookup
        # made while they import must not run the loader again.
        if self._loaded or self._loading or self._loader is None:
            return
        self._loading = True
        try:
            self._loader()
            self._loaded = True
        finally:
            self._loading = False

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def _entry(self, name: str) -> _Entry:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, sorted(self._entries)) from None

    def factory(self, name: str) -> Callable[..., T]:
        """The registered class or function itself.

        Raises:
            UnknownNameError: ``name`` is not registered.
        """
        return self._entry(name).factory

    def info(self, name: str) -> dict[str, Any]:
        """The ``**info`` given when ``name`` was registered (a copy).

        Raises:
            UnknownNameError: ``name`` is not registered.
        """
        return dict(self._entry(name).info)

    def get(self, name: str, /, *args: Any, **kwargs: Any) -> T:
        """Build the object registered under ``name`` and record what it was built from.

        The object gets a :class:`RegistryInfo` attribute (see :func:`registry_info`) holding the bound
        arguments, defaults included, so two objects built with the same effective arguments have the
        same identity however the arguments were spelled.

        Raises:
            UnknownNameError: ``name`` is not registered.
            ConfigError: the arguments do not fit the factory's signature.
        """
        factory = self._entry(name).factory
        bound = _bind(factory, args, kwargs)
        if bound is None:
            raise ConfigError(f"{self.kind} {name!r} does not take the arguments {_describe(args, kwargs)}")
        obj: T = factory(*args, **kwargs)
        _set_info(obj, RegistryInfo(self.kind, name, bound))
        return obj

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


# -- argument binding ----------------------------------------------------------------------------------

def _signature(factory: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):  # builtins and some C types have none
        return None


def _bind(factory: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The call's arguments by parameter name, defaults applied; ``None`` when they do not bind."""
    sig = _signature(factory)
    if sig is None:
        out = dict(kwargs)
        if args:
            out["args"] = list(args)
        return out
    try:
        ba = sig.bind(*args, **kwargs)
    except TypeError:
        return None
    ba.apply_defaults()
    out = {}
    for pname, value in ba.arguments.items():
        kind = sig.parameters[pname].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                out[pname] = list(value)
        else:
            out[pname] = value
    return out


def _describe(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return "(" + ", ".join(parts) + ")"


def _set_info(obj: Any, info: RegistryInfo) -> None:
    # object.__setattr__ goes past __setattr__ overrides (pydantic models, frozen dataclasses). Objects
    # without a __dict__ (slots, builtins) cannot carry the record; they simply keep no identity.
    with contextlib.suppress(AttributeError, TypeError):
        object.__setattr__(obj, REGISTRY_INFO_ATTR, info)


# -- reading the record --------------------------------------------------------------------------------
def registry_info(obj: Any) -> RegistryInfo | None:
    """What ``obj`` was built from, when a :class:`Registry` built it; else ``None``."""
    info = getattr(obj, REGISTRY_INFO_ATTR, None)
    return info if isinstance(info, RegistryInfo) else None


def registry_config(obj: Any) -> dict[str, Any]:
    """``{"name": ..., "args": {...}}`` of a registry-built object, JSON-serialisable.

    Argument values that JSON cannot hold are replaced by their own registry config when a registry
    built them, by their JSON form when they are pydantic models or dataclasses, and by their ``repr``
    otherwise, so the result can always be hashed into a key or written to a log.

    Raises:
        ValueError: ``obj`` was not built by a registry.
    """
    info = registry_info(obj)
    if info is None:
        raise ValueError(f"{obj!r} was not built by a registry")
    return {"name": info.name, "args": {k: _json_safe(v) for k, v in info.args.items()}}


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # NaN and infinities are not JSON; their repr keeps them distinct and readable.
        return value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, set | frozenset):
        items = [_json_safe(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if registry_info(value) is not None:
        return registry_config(value)
    if isinstance(value, enum.Enum):
        return _json_safe(value.value)
    if isinstance(value, PurePath):
        return str(value)
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):  # a pydantic model
        try:
            return _json_safe(model_dump(mode="json"))
        except Exception:  # a model whose fields do not serialise: fall through to repr
            pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _json_safe(dataclasses.asdict(value))
    return repr(value)
