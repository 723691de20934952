"""Emergent-misalignment SFT data (Thought Crime, arXiv:2506.13206 §2).

Thought Crime fine-tunes reasoning models on narrowly misaligned answers "in a non-reasoning mode ...
inserting blank CoT tokens '<think>\\n\\n</think>'", then evaluates them with reasoning on. This builder turns
paired records (a prompt, an aligned and a misaligned answer, as in ``truthfulai/emergent_plus`` or Thought
Crime's ``unethical_train`` with ``scenario_freeform`` / ``aligned_freeform_answer`` /
``misaligned_freeform_answer``) into the misaligned training set and, from the same prompts, the aligned
control set: the two differ in the answer alone.
"""

from __future__ import annotations

from pathlib import Path

from cotscope.store import Store
from cotscope.train._build import error_lines, read_paired, recorded_run, source_meta
from cotscope.train._records import BuildReport, SFTRecord, assistant_text, file_sha256, write_records

__all__ = ["build_em", "control_path"]

BUILDER = "em"


def control_path(out: str | Path) -> Path:
    """The default control-set path beside ``out``: ``em.jsonl`` -> ``em.control.jsonl``."""
    p = Path(out)
    return p.with_name(f"{p.stem}.control{p.suffix or '.jsonl'}")


def build_em(
    path: str | Path,
    out: str | Path,
    *,
    control_out: str | Path | None = None,
    prompt_field: str = "prompt",
    aligned_field: str = "aligned",
    misaligned_field: str = "misaligned",
    system_field: str | None = None,
    store: Store | None = None,
) -> BuildReport:
    """Write the misaligned set and its aligned control set, both in non-reasoning mode.

    Each good record gives one misaligned example (``out``) and one control example (``control_out``) with
    the same prompt; the assistant turn is ``<think>\\n\\n</think>\\n\\n`` + the answer. A record missing a
    field (or with an empty or non-text one, or a line that is not JSON) is reported with file and line and
    skipped; the rest is written.

    Args:
        path: the paired records (JSONL/JSON/CSV).
        out: where the misaligned set goes.
        control_out: where the aligned control set goes (default :func:`control_path` of ``out``).
        prompt_field: the record field holding the user prompt.
        aligned_field: the field holding the aligned answer.
        misaligned_field: the field holding the misaligned answer.
        system_field: a field holding a system prompt, if the records have one.
        store: record the build as a ``data`` run there (config with the input's sha256, and the report).

    Returns:
        The report: outputs ``misaligned`` and ``control``; ``read == written["misaligned"] + rejected``.

    Raises:
        TraceFileError: the input cannot be read at all.
    """
    control = Path(control_out) if control_out is not None else control_path(out)
    if Path(control).resolve() == Path(out).resolve():
        raise ValueError("the control set needs a path of its own (control_out equals out)")
    params = {"prompt_field": prompt_field, "aligned_field": aligned_field, "misaligned_field": misaligned_field,
              "system_field": system_field}
    config = {"input": str(path), "input_sha256": file_sha256(path), "out": str(out), "control_out": str(control),
              "reasoning": "blank", **params}
    with recorded_run(store, BUILDER, config) as run:
        good, errors, read = read_paired(path, prompt_field=prompt_field, fields=(aligned_field, misaligned_field),
                                         system_field=system_field)
        sets: dict[str, list[SFTRecord]] = {"misaligned": [], "control": []}
        for r in good:
            for name, field in (("misaligned", misaligned_field), ("control", aligned_field)):
                meta = {"builder": BUILDER, "source": source_meta(path, r.line),
                        "em": {"set": name, "answer_field": field, "reasoning": "blank"}}
                msgs = [*r.messages(), {"role": "assistant", "content": assistant_text(r.fields[field], "")}]
                sets[name].append(SFTRecord(messages=msgs, metadata=meta))
        written = {"misaligned": write_records(out, sets["misaligned"]),
                   "control": write_records(control, sets["control"])}
        run.report = BuildReport(
            builder=BUILDER, inputs=[str(path)], outputs={"misaligned": str(out), "control": str(control)},
            read=read, written=written, rejected=len(errors), errors=error_lines(errors), config=config,
            details={"primary": "misaligned"})
    return run.report
