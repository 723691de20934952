"""What the data builders share: reading paired records with file:line errors, and recording a run."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cotscope.store import Store
from cotscope.traces import RecordError, iter_records
from cotscope.train._records import BuildReport

__all__ = [
    "Paired",
    "RunRecorder",
    "check_meaning",
    "error_lines",
    "read_paired",
    "recorded_run",
    "source_meta",
    "stored_results",
    "verdict_of",
]


@dataclass
class Paired:
    """One record of a paired file: the prompt, an optional system prompt, and the named response fields.

    Attributes:
        line: where it is in its file.
        prompt: the user turn.
        system: the system prompt, if the record has one.
        fields: response field name -> text.
    """

    line: int
    prompt: str
    system: str | None
    fields: dict[str, str] = field(default_factory=dict)

    def messages(self) -> list[dict[str, str]]:
        """The prompt as chat messages (system first when there is one)."""
        msgs = [{"role": "user", "content": self.prompt}]
        if self.system:
            msgs.insert(0, {"role": "system", "content": self.system})
        return msgs


def _text(rec: dict[str, Any], name: str) -> str:
    if name not in rec or rec[name] is None:
        raise ValueError(f"missing field {name!r}")
    v = rec[name]
    if not isinstance(v, str):
        raise ValueError(f"field {name!r} is {type(v).__name__}, expected a string")
    if not v.strip():
        raise ValueError(f"field {name!r} is empty")
    return v


def read_paired(path: str | Path, *, prompt_field: str, fields: Sequence[str],
                system_field: str | None = None) -> tuple[list[Paired], list[RecordError], int]:
    """The records of ``path`` that hold a non-empty text under ``prompt_field`` and every one of ``fields``.

    A record that does not (a missing or empty field, a wrong type, a line that is not JSON) becomes a
    :class:`~cotscope.traces.RecordError` naming file and line; the rest is read. ``system_field``, when given,
    is optional per record but must be a string where present.

    Returns:
        The good records, the bad ones, and how many records were read in all (good + bad).
    """
    errors: list[RecordError] = []
    good: list[Paired] = []
    src = str(path)
    for line, rec in iter_records(path, errors):
        try:
            if not isinstance(rec, dict):
                raise ValueError(f"expected an object, got {type(rec).__name__}")
            system = None
            if system_field is not None and rec.get(system_field) not in (None, ""):
                system = _text(rec, system_field)
            good.append(Paired(line=line, prompt=_text(rec, prompt_field), system=system,
                               fields={f: _text(rec, f) for f in fields}))
        except ValueError as e:
            errors.append(RecordError(str(e), src, line))
    # iter_records reports unparseable lines in the same list, in file order with the rest.
    errors.sort(key=lambda e: e.line or 0)
    return good, errors, len(good) + len(errors)


@dataclass
class RunRecorder:
    """The store run of one builder call: its id, and the report to record when it ends."""

    run_id: str | None
    report: BuildReport | None = None
    started: float = field(default_factory=time.perf_counter)


@contextmanager
def recorded_run(store: Store | None, builder: str, config: dict[str, Any]) -> Iterator[RunRecorder]:
    """Record a ``data`` run in ``store`` (when given) around a builder's work.

    The run ends ``done`` with the report the builder set on the recorder, ``interrupted`` when the work
    raised (a killed builder leaves a run that says so), and ``failed`` when it finished without a report.
    The report's ``run_id`` and ``seconds`` are filled in here.
    """
    run_id = store.start_run("data", builder, config) if store is not None else None
    rec = RunRecorder(run_id)
    status = "interrupted"
    try:
        yield rec
        status = "done" if rec.report is not None else "failed"
    finally:
        if rec.report is not None:
            rec.report.run_id = run_id
            rec.report.seconds = time.perf_counter() - rec.started
        if store is not None and run_id is not None:
            store.finish_run(run_id, status, rec.report.model_dump(mode="json") if rec.report else None)


def source_meta(path: str | Path, line: int) -> dict[str, Any]:
    """A record's ``source`` metadata for a file builder."""
    return {"file": str(path), "line": line}


def error_lines(errors: Sequence[RecordError]) -> list[str]:
    """``"file:line: what"`` for each error (the report's ``errors``)."""
    return [str(e) for e in errors]


def stored_results(store: Store, evaluator: Any, trace_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The stored result of ``evaluator`` (a pipeline ``Evaluator``: name, config hash, part) per trace id."""
    chash = evaluator.config_hash
    return {r["trace_id"]: r for r in store.results(evaluator.name, trace_ids=trace_ids)
            if r["config_hash"] == chash and r["part"] == evaluator.part}


def check_meaning(name: str, meaning: str | None) -> None:
    """Fail early when a judge's label has no safe/unsafe reading (the builders filter on safe).

    Raises:
        ConfigError: the label means something else (``harmful_request`` rates the prompt), or nothing.
    """
    from cotscope.errors import ConfigError
    from cotscope.metrics import SAFE_IF_TRUE, UNSAFE_IF_TRUE

    if meaning not in SAFE_IF_TRUE | UNSAFE_IF_TRUE:
        raise ConfigError(f"judge {name}: its label means {meaning!r}, which has no safe/unsafe reading; use a "
                          "safety judge (llama-guard, refusal-strings, local-harm, ...)")


def verdict_of(result: dict[str, Any] | None, meaning: str | None) -> tuple[bool | None, str]:
    """``(safe, why)`` of one stored result: ``safe`` is ``None`` when there is no verdict (no result, a parse
    error, no label), with ``why`` saying which."""
    from cotscope.metrics import safe_from_label

    if result is None:
        return None, "no result (a backend error; rerun to retry)"
    if result.get("parse_error"):
        return None, f"judge parse error: {result['parse_error']}"
    if result.get("label") is None:
        return None, "no label"
    return safe_from_label(bool(result["label"]), meaning), ""
