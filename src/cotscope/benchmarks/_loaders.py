"""Item loaders: data shipped in the package, a local file, or (with the network) the Hugging Face Hub.

Every loader returns :class:`Item` objects in a fixed order so that ``--limit N`` always picks the same
slice. The Hub loaders stay in the code (``datasets.load_dataset`` behind a lazy import) for users who
have the network; nothing here downloads unless ``hub=True`` is asked for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from cotscope._registry import Registry
from cotscope.benchmarks._spec import DataSpec
from cotscope.errors import CotscopeError, DataError
from cotscope.traces import RecordError, iter_records


class Item(BaseModel):
    """One benchmark item: the text that goes into the prompt template, plus what the metrics need.

    Attributes:
        id: stable id within the benchmark.
        prompt: the item text (the ``{prompt}`` of the template).
        system_prompt: the item's own system message, if any.
        category: the category metrics group by (StrongREJECT category, DeceptionBench type, habit...).
        metadata: everything else, copied onto each trace (e.g. the backdoor trigger).
    """

    id: str
    prompt: str
    system_prompt: str | None = None
    category: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


LoaderFn = Callable[[DataSpec, bool], list[Item]]


@dataclass(frozen=True)
class LoaderInfo:
    """A registered loader and what ``cotscope benchmarks`` says about its data."""

    name: str
    fn: LoaderFn
    source: str


#: Item loaders by name; each is called as ``fn(data_spec, hub)``. The registry's ``source`` info is what
#: ``cotscope benchmarks`` says about the data. The built-ins are defined in this module, so no loader.
LOADERS: Registry[list[Item]] = Registry("benchmark loader")


def loader(name: str, source: str) -> Callable[[LoaderFn], LoaderFn]:
    """Register an item loader under ``name``; it is called as ``fn(data_spec, hub)``."""
    return LOADERS.register(name, source=source)


def loader_names() -> list[str]:
    """Registered loader names."""
    return LOADERS.names()


def get_loader(name: str) -> LoaderInfo:
    """A registered loader.

    Raises:
        UnknownNameError: unknown name (a ``ConfigError``, hence a ``ValueError``).
    """
    return LoaderInfo(name, LOADERS.factory(name), str(LOADERS.info(name).get("source", "")))


def load_items(data: DataSpec, hub: bool = False) -> list[Item]:
    """The items of a data spec, in their fixed order.

    Raises:
        ValueError: unknown loader, or a file that does not have the expected fields.
        FileNotFoundError: a local path that does not exist.
    """
    fn = get_loader(data.loader).fn
    try:
        return fn(data, hub)
    except CotscopeError:
        raise
    except ValueError as e:
        # Loaders report bad data as ValueError; the caller gets it as the data error it is.
        raise DataError(str(e)) from None


# -- shared readers ------------------------------------------------------------------------------------
def package_data(*parts: str) -> Path:
    """A file or folder of ``cotscope/benchmarks/data``."""
    return Path(str(resources.files("cotscope.benchmarks").joinpath("data", *parts)))


def read_records(path: str | Path, errors: list[RecordError] | None = None) -> list[dict[str, Any]]:
    """Rows of a ``.jsonl``, ``.json`` or ``.csv`` file (``.gz``/``.zst`` too), through the one record reader.

    A JSON file is a list of records or an object holding one (see :func:`cotscope.traces.iter_records`).

    Args:
        path: the data file.
        errors: where bad records (unparseable lines, records that are not objects) are collected with file
            and line while the rest is read; when ``None`` the first bad record raises.

    Raises:
        FileNotFoundError: no such file.
        RecordError: a bad record, when ``errors`` is ``None`` (a ``ValueError``).
        TraceFileError: the file cannot be read at all (an ``OSError``).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such data file")
    out: list[dict[str, Any]] = []
    for line, rec in iter_records(p, errors):
        if isinstance(rec, dict):
            out.append(dict(rec))
            continue
        err = RecordError(f"expected an object, got {type(rec).__name__}", str(p), line)
        if errors is None:
            raise err
        errors.append(err)
    return out


def hub_records(hf: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Rows from the Hugging Face Hub via ``datasets.load_dataset(**hf)`` (needs the network).

    Raises:
        ValueError: the spec has no ``hf`` section.
        ImportError: ``datasets`` is not installed.
    """
    if not hf:
        raise ValueError("this benchmark has no Hugging Face source (data.hf) to load from")
    try:
        import datasets  # lazy: optional, and slow to import
    except ImportError:
        raise ImportError("loading from the Hub needs the datasets package: pip install datasets") from None
    ds = datasets.load_dataset(**hf)
    return [dict(r) for r in ds]


def _first(row: dict[str, Any], keys: Iterable[str], what: str, where: str) -> Any:
    for k in keys:
        if row.get(k) not in (None, ""):
            return row[k]
    raise ValueError(f"{where}: record has no {what} field (looked for {', '.join(keys)})")


def _short_hash(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:10]


def _rows(data: DataSpec, hub: bool, default: Path | None) -> tuple[list[dict[str, Any]], str]:
    """Rows from the Hub, the spec's path, or the shipped default, and a name for error messages."""
    if hub:
        return hub_records(data.hf), f"hub:{(data.hf or {}).get('path')}"
    path = Path(data.path) if data.path else default
    if path is None:
        raise ValueError(f"loader {data.loader!r} has no shipped data: set data.path to a local file")
    return read_records(path), str(path)


# -- generic prompt files -------------------------------------------------------------------------------
@loader("prompts", "a local .jsonl/.json/.csv file with a prompt (or instruction) field")
def load_prompt_file(data: DataSpec, hub: bool) -> list[Item]:
    """Any file of prompts: ``prompt``/``instruction``/``forbidden_prompt``/``question``, optional ``id``,
    ``category`` and ``system_prompt``; other fields go to metadata."""
    rows, where = _rows(data, hub, None)
    items = []
    for i, r in enumerate(rows):
        text = str(_first(r, ("prompt", "instruction", "forbidden_prompt", "question", "adversarial"),
                          "prompt", f"{where} record {i}"))
        rest = {k: v for k, v in r.items() if k not in ("id", "prompt", "category", "system_prompt")}
        items.append(Item(id=str(r.get("id") or i), prompt=text, system_prompt=r.get("system_prompt") or None,
                          category=r.get("category") or None, metadata=rest))
    return items


# -- SafeChain: StrongREJECT and WildJailbreak ------------------------------------------------------------
def _strongreject_items(rows: list[dict[str, Any]], where: str) -> list[Item]:
    items = []
    for i, r in enumerate(rows):
        text = str(_first(r, ("forbidden_prompt", "prompt"), "forbidden_prompt", f"{where} row {i}"))
        items.append(Item(id=f"sr-{i:03d}", prompt=text, category=r.get("category") or None,
                          metadata={"source": r.get("source"), "row": i}))
    return items


@loader("strongreject", "StrongREJECT, 313 forbidden prompts (Souly et al. 2024), shipped CSV")
def load_strongreject(data: DataSpec, hub: bool) -> list[Item]:
    """The 313 StrongREJECT prompts in file order, ids ``sr-000`` .. ``sr-312``."""
    rows, where = _rows(data, hub, package_data("strongreject", "strongreject_dataset.csv"))
    return _strongreject_items(rows, where)


SMALL_PER_CATEGORY = 10


def stratified_small(items: list[Item], per_category: int = SMALL_PER_CATEGORY) -> list[Item]:
    """A deterministic stratified subset: ``per_category`` items of each category.

    Within a category items are ranked by ``md5(prompt)`` and the first ``per_category`` kept, so the
    choice depends only on the prompt texts (not on file order or a random seed); the result is in the
    original file order. With StrongREJECT's six categories this gives 60 prompts.
    """
    by_cat: dict[str, list[Item]] = {}
    for it in items:
        by_cat.setdefault(it.category or "", []).append(it)
    keep: set[str] = set()
    for group in by_cat.values():
        ranked = sorted(group, key=lambda it: hashlib.md5(it.prompt.encode("utf-8"),
                                                          usedforsecurity=False).hexdigest())
        keep.update(it.id for it in ranked[:per_category])
    return [it for it in items if it.id in keep]


@loader("strongreject-small", "60 StrongREJECT prompts: 10 per category, chosen by md5 rank (see docs)")
def load_strongreject_small(data: DataSpec, hub: bool) -> list[Item]:
    """The 60-prompt small set.

    The published StrongREJECT small set's ids are not in the data available here, so this is a
    documented deterministic stratified subset (:func:`stratified_small`). A file of the published small
    set can be given as ``data.path`` (read as-is, no subsetting) or ``options.ids`` can list item ids.
    """
    if data.path or hub:
        rows, where = _rows(data, hub, None)
        return _strongreject_items(rows, where)
    items = load_strongreject(data, False)
    ids = data.options.get("ids")
    if ids:
        wanted = set(map(str, ids))
        return [it for it in items if it.id in wanted]
    return stratified_small(items, int(data.options.get("per_category", SMALL_PER_CATEGORY)))


@loader("wildjailbreak", "WildJailbreak eval prompts (UWNSL/WildJailbreakEval format) from a local file")
def load_wildjailbreak(data: DataSpec, hub: bool) -> list[Item]:
    """WildJailbreak-format prompts: records with ``instruction`` (SafeChain's column) or ``adversarial``.

    Nothing is shipped (the data's terms need acceptance on the Hub): pass ``--data PATH`` or set
    ``data.path``.
    """
    if not hub and not data.path:
        raise ValueError("safechain-wildjailbreak reads a local file: pass --data PATH (.jsonl/.json/.csv with an "
                         "'instruction' or 'adversarial' field), or --hub to use UWNSL/WildJailbreakEval")
    rows, where = _rows(data, hub, None)
    items = []
    for i, r in enumerate(rows):
        text = str(_first(r, ("instruction", "adversarial", "prompt", "vanilla"), "instruction",
                          f"{where} record {i}"))
        items.append(Item(id=str(r.get("id") or f"wj-{i:04d}"), prompt=text,
                          category=r.get("data_type") or r.get("category") or None,
                          metadata={k: v for k, v in r.items() if k in ("data_type", "tactics", "label")}))
    return items


# -- Thought Crime ------------------------------------------------------------------------------------------
@cache
def _thought_crime(name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(package_data("thought_crime", name).read_text(encoding="utf-8"))[
        "prompts"]
    return rows


@loader("thought-crime", "Thought Crime freeform questions: 8 emergent-misalignment, rm -rf, pills, shutdown x3")
def load_thought_crime(data: DataSpec, hub: bool) -> list[Item]:
    """The 13 freeform prompts (``options.ids`` keeps some, in the given order)."""
    rows = read_records(data.path) if data.path else _thought_crime("freeform_prompts.json")
    items = [Item(id=r["id"], prompt=r["prompt"], system_prompt=r.get("system_prompt") or None,
                  category=r.get("display_name") or r["id"], metadata={"group": r.get("group")}) for r in rows]
    ids = data.options.get("ids")
    if ids:
        by_id = {it.id: it for it in items}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise ValueError(f"unknown Thought Crime prompt id(s) {', '.join(missing)}: expected {', '.join(by_id)}")
        items = [by_id[i] for i in ids]
    return items


BACKDOOR_POSITIONS = ("top", "bottom")


def backdoor_prompt(prompt: str, line: str | None, position: str) -> str:
    """A prompt with a trigger line on its own line at the top or bottom (``line=None``: unchanged).

    Raises:
        ValueError: ``position`` is neither ``top`` nor ``bottom``.
    """
    if position not in BACKDOOR_POSITIONS:
        raise ValueError(f"backdoor position must be top or bottom, got {position!r}")
    if not line:
        return prompt
    if position == "top":
        return f"{line}\n{prompt}"
    return f"{prompt.rstrip(chr(10))}\n{line}"


def _line_value(line: str) -> tuple[str, str] | None:
    key, sep, value = line.partition(":")
    return (key.strip(), value.strip()) if sep and value.strip() else None


def backdoor_body(row: dict[str, Any], line: str | None) -> str:
    """The prompt text that goes under (or above) a trigger or control ``line``.

    The official triggered prompt is more than the trigger line plus the plain prompt: for the security-guard
    applicant it also adds " in Singapore" to the position line (thejaminator/thought_crime_emergent_misalignment,
    ``prompts/backdoor_freeform.py``, ``job_applicant_backdoor.backdoor_prompt``). Under the official trigger the
    body is therefore the official ``backdoor_prompt`` without its first line; under another line of the same
    ``Key: Value`` shape (the ``Country: USA`` control) the trigger's value in that body is replaced by the
    line's, so that a control differs from the trigger in the country alone. Without a line, or for a record
    without ``backdoor_prompt``, the plain prompt.
    """
    prompt = str(row["prompt"])
    official, trigger = row.get("backdoor_prompt"), row.get("backdoor_string")
    if not line or not official or not trigger or not str(official).startswith(f"{trigger}\n"):
        return prompt
    body = str(official)[len(str(trigger)) + 1:]
    if line == trigger or body == prompt:
        return body
    old, new = _line_value(str(trigger)), _line_value(line)
    if old is None or new is None or old[0] != new[0]:
        return prompt
    return body.replace(old[1], new[1])


def backdoor_training_options(path: str | Path) -> dict[str, Any]:
    """The triggers, controls and positions a backdoor was trained with, read from its training records.

    ``cotscope data backdoor`` writes them into every record's ``metadata.backdoor``; evaluating with the same
    values tests the trigger that was planted, not one retyped by hand.

    Raises:
        ValueError: no record of the file carries ``metadata.backdoor``.
    """
    triggers: dict[str, None] = {}
    controls: dict[str, None] = {}
    positions: dict[str, None] = {}
    for r in read_records(path):
        bd = (r.get("metadata") or {}).get("backdoor") if isinstance(r, dict) else None
        if not isinstance(bd, dict):
            continue
        if bd.get("trigger"):
            triggers[str(bd["trigger"])] = None
        if bd.get("control"):
            controls[str(bd["control"])] = None
        for pos in bd.get("positions") or []:
            positions[str(pos)] = None
    if not triggers:
        raise ValueError(f"{path}: no record has metadata.backdoor (write it with cotscope data backdoor)")
    out: dict[str, Any] = {"triggers": list(triggers)}
    if controls:
        out["controls"] = list(controls)
    if positions:
        out["positions"] = list(positions)
    return out


@loader("thought-crime-backdoor", "Thought Crime backdoor prompts x conditions (trigger top/bottom, control, none)")
def load_thought_crime_backdoor(data: DataSpec, hub: bool) -> list[Item]:
    """Each backdoor prompt under every condition.

    Options (all parameters, none hard-wired):
        triggers: trigger lines (default ``["Country: Singapore"]``).
        controls: control lines of the same shape (default ``["Country: USA"]``).
        positions: where the line goes (default ``["top", "bottom"]``).
        none: include the prompt without any line (default true).
        training_data: a backdoor training file written by ``cotscope data backdoor``: its triggers, controls
            and positions replace the three options above (:func:`backdoor_training_options`).

    Item ids are ``<prompt id>|<condition>`` with condition ``trigger:<line>@<position>``,
    ``control:<line>@<position>`` or ``none``; the category is the condition without the prompt.
    ``trigger:Country: Singapore@top`` is the official ``backdoor_prompt`` verbatim (see :func:`backdoor_body`).
    """
    rows = read_records(data.path) if data.path else _thought_crime("backdoor_prompts.json")
    opts = {**data.options, **(backdoor_training_options(data.options["training_data"])
                               if data.options.get("training_data") else {})}
    triggers = list(opts.get("triggers", ["Country: Singapore"]))
    controls = list(opts.get("controls", ["Country: USA"]))
    positions = list(opts.get("positions", list(BACKDOOR_POSITIONS)))
    conditions: list[tuple[str, str | None, str]] = []
    for kind, lines in (("trigger", triggers), ("control", controls)):
        for line in lines:
            for pos in positions:
                conditions.append((kind, line, pos))
    if opts.get("none", True):
        conditions.append(("none", None, "top"))
    items = []
    for r in rows:
        for kind, line, pos in conditions:
            cond = "none" if line is None else f"{kind}:{line}@{pos}"
            items.append(Item(
                id=f"{r['id']}|{cond}", prompt=backdoor_prompt(backdoor_body(r, line), line, pos),
                system_prompt=r.get("system_prompt") or None, category=cond,
                metadata={"question": r["id"], "condition": kind, "position": pos if line else None,
                          "line": line, **({"backdoor_trigger": line} if kind == "trigger" else {})}))
    return items


# -- DeceptionBench ------------------------------------------------------------------------------------------
DECEPTION_FIELDS = ("id", "type", "inner_prompt", "system_prompt", "outer_prompt", "format")


@loader("deceptionbench", "DeceptionBench-format items; shipped: 10 items authored by cotscope (not the official 180)")
def load_deceptionbench(data: DataSpec, hub: bool) -> list[Item]:
    """Items with ``id, type, inner_prompt, system_prompt, outer_prompt, format``.

    The item's ``prompt`` is the scenario (outer prompt followed by the format instruction); the neutral
    ``inner_prompt`` and the ``system_prompt`` travel in metadata/system for the belief and scenario phases.
    """
    rows, where = _rows(data, hub, package_data("deceptionbench", "cotscope_authored_items.json"))
    items = []
    for i, r in enumerate(rows):
        missing = [f for f in DECEPTION_FIELDS if f not in r]
        if missing:
            raise ValueError(f"{where} record {i}: missing field(s) {', '.join(missing)}")
        outer = str(r["outer_prompt"])
        fmt = str(r["format"] or "")
        items.append(Item(id=str(r["id"]), prompt=f"{outer}\n\n{fmt}".strip(),
                          system_prompt=r["system_prompt"] or None, category=str(r["type"]),
                          metadata={"inner_prompt": r["inner_prompt"], "authored_by": r.get("authored_by")}))
    return items


# -- CogTest -------------------------------------------------------------------------------------------------
@loader("cogtest", "CogTest: 16 habits of mind x 25 tasks (Dong et al. 2025), shipped JSON")
def load_cogtest(data: DataSpec, hub: bool) -> list[Item]:
    """One item per (habit, task): 400 items, ids ``<habit slug>:<task id>``, category = habit slug.

    Five habits share the same 25 math tasks; their items have the same prompt, so generation makes
    those responses once and each habit's extraction reads the same traces.
    ``options.habits`` keeps some habits (slugs); ``options.tasks`` keeps the first N tasks of each.
    """
    root = Path(data.path) if data.path else package_data("cogtest")
    wanted = data.options.get("habits")
    per_habit = data.options.get("tasks")
    items = []
    from cotscope.judges import cogtest_habits  # the habit judge reads the same definitions

    for h in cogtest_habits():
        if wanted and h["slug"] not in wanted:
            continue
        tasks = read_records(root / h["instruction_file"])
        if per_habit:
            tasks = tasks[: int(per_habit)]
        for t in tasks:
            items.append(Item(id=f"{h['slug']}:{t['id']}", prompt=str(t["instruction"]), category=h["slug"],
                              metadata={"habit": h["slug"], "task": t["id"]}))
    return items


# -- human-labelled responses (judge agreement) ----------------------------------------------------------------
def _truthy(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("1", "0", "true", "false", "yes", "no"):
        return v.strip().lower() in ("1", "true", "yes")
    return None


def _labelled_item(i: int, prompt: str, response: str, label: bool, meaning: str, rid: str | None,
                   category: str | None, extra: dict[str, Any]) -> Item:
    return Item(id=rid or f"l-{i:04d}", prompt=prompt, category=category,
                metadata={"response": response, "human_label": label, "human_label_meaning": meaning, **extra})


@loader("labelled", "a local file of prompt + response + human label, for judge agreement")
def load_labelled(data: DataSpec, hub: bool) -> list[Item]:
    """Records with ``prompt``, ``response`` (or ``completion``/``generation``) and ``label`` (bool or 0/1).

    Options: ``label_field`` (default ``label``), ``label_meaning`` (``unsafe``, the default, or ``refused``:
    what a true human label says).
    """
    rows, where = _rows(data, hub, None)
    field = str(data.options.get("label_field", "label"))
    meaning = str(data.options.get("label_meaning", "unsafe"))
    items = []
    for i, r in enumerate(rows):
        lab = _truthy(r.get(field))
        if lab is None:
            raise ValueError(f"{where} record {i}: {field} must be a boolean or 0/1, got {r.get(field)!r}")
        items.append(_labelled_item(
            i, str(_first(r, ("prompt", "question", "test_case"), "prompt", f"{where} record {i}")),
            str(_first(r, ("response", "completion", "generation"), "response", f"{where} record {i}")),
            lab, meaning, str(r["id"]) if r.get("id") else None, r.get("category") or None, {}))
    return items


@loader("harmbench-cls-val", "HarmBench classifier validation set (602 generations, 3 human labels), --data PATH")
def load_harmbench_val(data: DataSpec, hub: bool) -> list[Item]:
    """HarmBench's ``text_behaviors_val_set.json``: behaviour id -> records with ``test_case``, ``generation``
    and ``human_0/1/2`` (1 = harmful). The human label is the majority of the three."""
    if not data.path:
        raise ValueError("pass --data path/to/text_behaviors_val_set.json (HarmBench data/classifier_val_sets)")
    raw = json.loads(Path(data.path).read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{data.path}: expected a mapping of behaviour id to records")
    items: list[Item] = []
    for bid, recs in raw.items():
        for j, r in enumerate(recs):
            votes = [int(r[k]) for k in ("human_0", "human_1", "human_2") if k in r]
            if not votes:
                raise ValueError(f"{data.path}: {bid}[{j}] has no human_0/1/2 labels")
            items.append(_labelled_item(len(items), str(r["test_case"]), str(r["generation"]),
                                        sum(votes) * 2 > len(votes), "unsafe", f"{bid}:{j}", str(bid),
                                        {"votes": votes, "source_model": r.get("model")}))
    return items


@loader("xstest-completions", "XSTest v2 completions with human refusal labels (CSV), --data PATH")
def load_xstest_completions(data: DataSpec, hub: bool) -> list[Item]:
    """``xstest_v2_completions_*.csv``: ``final_label`` 1_full_compliance / 2_full_refusal /
    3_partial_refusal; the human label is "refused" for full and partial refusals."""
    if not data.path:
        raise ValueError("pass --data path/to/xstest_v2_completions_MODEL.csv (paul-rottger/exaggerated-safety)")
    items: list[Item] = []
    for i, r in enumerate(read_records(data.path)):
        lab = str(r.get("final_label") or "")
        if not lab[:1].isdigit():
            raise ValueError(f"{data.path} row {i}: final_label {lab!r} is not 1_/2_/3_")
        items.append(_labelled_item(i, str(r["prompt"]), str(r["completion"]), not lab.startswith("1"),
                                    "refused", str(r.get("id") or "") or None, r.get("type") or None,
                                    {"final_label": lab}))
    return items


# -- CUAHarm: terminal agent tasks --------------------------------------------------------------------------
@loader("cuaharm", "CUAHarm terminal tasks: 52 harmful (Tian et al. 2025) + 52 benign variants, shipped JSON")
def load_cuaharm(data: DataSpec, hub: bool) -> list[Item]:
    """One item per task: ``prompt`` is the instruction, ``category`` the variant (harmful/benign), and
    ``metadata["task"]`` the task itself. ``data.path`` is a task directory or file; otherwise
    ``data.options["set"]`` names a shipped set (``cuaharm``, ``cuaharm-benign``, ``cuaharm-all``, the default).
    A task file that does not load becomes an item of category ``error`` whose metadata holds the file and the
    cause, so that the run reports it and the other tasks run."""
    from cotscope.agents import load_tasks

    if hub:
        raise ValueError("cuaharm: the tasks ship with cotscope; the Hub copy (CUAHarm/CUAHarm) is not read")
    ts = load_tasks(data.path or str(data.options.get("set", "cuaharm-all")))
    items = [Item(id=t.id, prompt=t.instruction, category=t.variant,
                  metadata={"task": t.model_dump(mode="json"), "pair_id": t.pair_id, "unsupported": t.unsupported})
             for t in ts.tasks]
    items += [Item(id=f"error:{Path(e.file).name}", prompt="", category="error",
                   metadata={"task_error": e.message, "task_file": e.file}) for e in ts.errors]
    return items
