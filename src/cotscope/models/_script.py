"""The scripted model ``script/PATH``: replays agent trajectories from a JSONL file.

Each line is ``{"task": ID, "actions": ["cmd", ...]}``; optional ``"final"`` (``DONE`` by default, or
``FAIL``/``WAIT``) and ``"text"`` (prose said with the final code, e.g. a refusal). An action is a command
string or ``{"command": ..., "reasoning": ...}``. Asked for step ``i`` of a task (the agent loop puts the task
id and the step in :attr:`GenerateRequest.metadata`), the model answers the ``i``-th action in a bash fence,
then the final code. It drives the tests and lets users replay stored or hand-written trajectories.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cotscope.errors import ConfigError, DataError
from cotscope.models._protocol import GenerateRequest, ModelOutput, modelapi

FINAL_CODES = ("DONE", "FAIL", "WAIT")


def _action(value: Any, where: str) -> tuple[str, str]:
    if isinstance(value, str):
        return value, ""
    if isinstance(value, dict) and isinstance(value.get("command"), str):
        reasoning = value.get("reasoning", "")
        if not isinstance(reasoning, str):
            raise DataError(f"{where}: 'reasoning' must be a string")
        return value["command"], reasoning
    raise DataError(f"{where}: an action must be a command string or {{'command': ..., 'reasoning': ...}}")


class ScriptedModel:
    """Answers each agent step with the next scripted action, then the final code.

    Args:
        path: the JSONL script.

    Raises:
        DataError: the file is missing, a line is not JSON, or a record is malformed (named by file and line).
    """

    batch_size = 64
    max_concurrency = 1

    def __init__(self, path: str | Path) -> None:
        from cotscope.traces import iter_records

        self.path = Path(path)
        self.name = f"script/{path}"
        self.scripts: dict[str, dict[str, Any]] = {}
        try:
            records = list(iter_records(self.path))
        except Exception as e:  # a missing file or an unparseable line: one clear message
            raise DataError(f"script {self.path}: {e}") from None
        for line, rec in records:
            where = f"{self.path}:{line}"
            if not isinstance(rec, dict) or not isinstance(rec.get("task"), str):
                raise DataError(f"{where}: a script line needs a string 'task' and a list 'actions'")
            acts = rec.get("actions", [])
            if not isinstance(acts, list):
                raise DataError(f"{where}: 'actions' must be a list")
            final = rec.get("final", "DONE")
            if final not in FINAL_CODES:
                raise DataError(f"{where}: 'final' must be one of {', '.join(FINAL_CODES)}, got {final!r}")
            if rec["task"] in self.scripts:
                raise DataError(f"{where}: task {rec['task']} is scripted twice")
            self.scripts[rec["task"]] = {"actions": [_action(a, where) for a in acts], "final": final,
                                         "text": str(rec.get("text", ""))}
        # Edits to the file change the outputs: the cache must not serve a previous version's answers.
        self.cache_id = f"script/{self.path.resolve()}@{self.path.stat().st_mtime_ns}"

    def respond(self, task: str, step: int) -> str:
        """The response to step ``step`` of ``task``."""
        s = self.scripts[task]
        if step < len(s["actions"]):
            cmd, reasoning = s["actions"][step]
            return f"{reasoning}\n```bash\n{cmd}\n```".lstrip()
        return f"{s['text']}\n```{s['final']}```".lstrip()

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        """One scripted response per request; a request without a task id or with an unscripted task is an
        error output naming the cause."""
        outs = []
        for r in requests:
            task, step = r.metadata.get("task_id"), r.metadata.get("step")
            if not isinstance(task, str) or not isinstance(step, int):
                outs.append(ModelOutput(error=f"{self.name}: the request carries no agent task id and step "
                                              "(the scripted model only drives the agent loop)"))
            elif task not in self.scripts:
                outs.append(ModelOutput(error=f"{self.name}: no script for task {task}"))
            else:
                text = self.respond(task, step)
                outs.append(ModelOutput(text=text, answer=text, finish_reason="stop", model=self.name,
                                        completion_tokens=len(text) // 4, prefill_applied="none"))
        return outs

    async def aclose(self) -> None:
        """Nothing to release."""
        return None


@modelapi("script")
def script_model(model: str, base_url: str | None = None, **model_args: Any) -> ScriptedModel:
    """``script/PATH``: the scripted agent model over a JSONL file."""
    if base_url is not None or model_args:
        raise ConfigError(f"script/{model} takes no base URL or model options")
    return ScriptedModel(model)
