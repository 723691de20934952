"""Chat-format SFT records: the one record shape every data builder writes and every trainer reads.

A record is OpenAI-style ``messages`` (the last one the assistant turn to learn) plus ``metadata`` (where it
came from and the builder's parameters). The reasoning lives inside the assistant turn's think block, so the
trainer needs no second field and a chat template renders it as the model emits it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, Field

from cotscope.traces import RecordError, iter_records

__all__ = [
    "ROLES",
    "BuildReport",
    "SFTRecord",
    "assistant_text",
    "file_sha256",
    "parse_sft_record",
    "read_sft_records",
    "write_records",
]

#: The roles a chat message may have in an SFT record.
ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})


def assistant_text(answer: str, reasoning: str | None) -> str:
    """The assistant turn's content: the reasoning in a think block, then the answer.

    Args:
        answer: the final answer.
        reasoning: ``None`` for no think block at all; ``""`` for the blank block ``<think>\\n\\n</think>``
            (non-reasoning mode, as Thought Crime §2 trains: "inserting blank CoT tokens"); else the
            chain of thought.
    """
    if reasoning is None:
        return answer
    if reasoning == "":
        return "<think>\n\n</think>\n\n" + answer
    return "<think>\n" + reasoning + "\n</think>\n\n" + answer


class SFTRecord(BaseModel):
    """One supervised fine-tuning example in chat format.

    Attributes:
        messages: ``{"role", "content"}`` messages; the last one is the assistant turn to learn.
        metadata: provenance (``builder``, ``source``) and the builder's parameters for this record.
    """

    messages: list[dict[str, str]]
    metadata: dict[str, Any] = Field(default_factory=dict)

    def prompt_messages(self) -> list[dict[str, str]]:
        """Every message before the assistant turn (the prompt the model is conditioned on)."""
        return self.messages[:-1]

    def completion(self) -> str:
        """The assistant turn's content (the text the model learns to produce)."""
        return self.messages[-1]["content"]


def _check_messages(msgs: Any) -> list[dict[str, str]]:
    if not isinstance(msgs, list) or not msgs:
        raise ValueError("'messages' must be a non-empty list")
    out: list[dict[str, str]] = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise ValueError(f"message {i} is a {type(m).__name__}, expected an object")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise ValueError(f"message {i} has role {role!r}, expected one of {', '.join(sorted(ROLES))}")
        if not isinstance(content, str):
            raise ValueError(f"message {i} content is {type(content).__name__}, expected a string")
        if not content.strip():
            raise ValueError(f"message {i} ({role}) has empty content")
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "assistant":
        raise ValueError(f"the last message is {out[-1]['role']!r}, expected 'assistant'")
    if len(out) < 2 or all(m["role"] == "system" for m in out[:-1]):
        raise ValueError("no user message before the assistant turn")
    return out


def _text_field(rec: dict[str, Any], name: str, *, required: bool) -> str | None:
    v = rec.get(name)
    if v is None:
        if required:
            raise ValueError(f"missing field {name!r}")
        return None
    if not isinstance(v, str):
        raise ValueError(f"field {name!r} is {type(v).__name__}, expected a string")
    if required and not v.strip():
        raise ValueError(f"field {name!r} is empty")
    return v


def parse_sft_record(rec: Any) -> SFTRecord:
    """One SFT record out of a ``{"messages": [...]}`` record or a ``{prompt, response}`` pair.

    A pair may carry ``reasoning`` (put in the think block by :func:`assistant_text`) and ``system``.
    Other fields of a pair, and a ``metadata`` object of either shape, become the record's metadata.

    Raises:
        ValueError: the record is neither shape, or has a bad role, an empty content, a wrong type, or does
            not end with the assistant turn.
    """
    if not isinstance(rec, dict):
        raise ValueError(f"expected an object, got {type(rec).__name__}")
    meta = rec.get("metadata", {})
    if not isinstance(meta, dict):
        raise ValueError(f"'metadata' is {type(meta).__name__}, expected an object")
    if "messages" in rec:
        return SFTRecord(messages=_check_messages(rec["messages"]), metadata=meta)
    if "prompt" not in rec and "response" not in rec:
        raise ValueError("expected 'messages' or a 'prompt' and 'response' pair")
    prompt = _text_field(rec, "prompt", required=True)
    response = _text_field(rec, "response", required=True)
    reasoning = _text_field(rec, "reasoning", required=False)
    system = _text_field(rec, "system", required=False)
    assert prompt is not None and response is not None  # required=True raised otherwise
    msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": assistant_text(response, reasoning)}]
    if system:
        msgs.insert(0, {"role": "system", "content": system})
    extra = {k: v for k, v in rec.items() if k not in {"prompt", "response", "reasoning", "system", "metadata"}}
    return SFTRecord(messages=msgs, metadata={**extra, **meta})


def read_sft_records(path: str | Path) -> tuple[list[SFTRecord], list[RecordError]]:
    """Every SFT record of a JSONL/JSON file plus its bad records, each named by file and line.

    Reads through :func:`cotscope.traces.iter_records` (the project's one record reader). A bad record (no
    messages, a bad role, the last message not the assistant's, an empty content, a wrong type, a line that
    is not JSON) becomes a :class:`~cotscope.traces.RecordError`; the rest is read.

    Raises:
        TraceFileError: the file cannot be read at all.
    """
    errors: list[RecordError] = []
    out: list[SFTRecord] = []
    src = str(path)
    for line, rec in iter_records(path, errors):
        try:
            out.append(parse_sft_record(rec))
        except ValueError as e:
            errors.append(RecordError(str(e), src, line))
    return out, errors


def write_records(path: str | Path, records: Iterable[SFTRecord]) -> int:
    """Write records as JSONL, atomically: a temporary file beside ``path`` replaces it at the end.

    A builder killed midway thus leaves the previous file (or none), never half a file.

    Returns:
        how many records were written.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    n = 0
    try:
        with os.fdopen(fd, "wb") as f:
            for r in records:
                f.write(orjson.dumps(r.model_dump(mode="json")) + b"\n")
                n += 1
        # mkstemp creates the file 0600; the data file gets the permissions any new file would get.
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (written into a builder's run config as provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class BuildReport(BaseModel):
    """What a data builder read, wrote and rejected.

    Attributes:
        builder: the builder's name (``em``, ``backdoor``, ``safechain``, ``self-monitor``).
        inputs: the input files (or the store, for the builders that read traces).
        outputs: output name -> path.
        read: for the file builders (``em``, ``backdoor``) the records read, bad lines included; for
            ``safechain`` the prompts; for ``self-monitor`` the traces selected.
        written: output name -> records written.
        rejected: records (or prompts, or traces) that produced no output.
        errors: ``"file:line: what"`` for every rejected record (``self-monitor`` uses ``trace <id>: what``;
            ``safechain`` lists the prompts dropped as incomplete, and counts the unsafe ones in ``details``).
        config: every parameter, plus the input's sha256.
        run_id: the run recorded in the store, if any.
        seconds: wall time.
        details: builder-specific counts (``kept``, ``dropped_unsafe``, ``dropped_incomplete``, ...).
    """

    builder: str
    inputs: list[str] = Field(default_factory=list)
    outputs: dict[str, str] = Field(default_factory=dict)
    read: int = 0
    written: dict[str, int] = Field(default_factory=dict)
    rejected: int = 0
    errors: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    run_id: str | None = None
    seconds: float = 0.0
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        """Whether every unit read is accounted for: ``read == units written + rejected``.

        For ``em`` every record is written once to each output, so the misaligned output's count is used
        (the control set mirrors it); for ``backdoor`` it is the one output. For ``safechain`` a unit is a
        prompt (``kept + dropped``: one record per kept prompt); for ``self-monitor`` a trace. The builder
        names the output that counts in ``details["primary"]``; without it every output is summed.
        """
        primary = self.details.get("primary")
        n = self.written.get(primary, 0) if isinstance(primary, str) else sum(self.written.values())
        return self.read == n + self.rejected
